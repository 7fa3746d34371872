"""One subflow as the engine sees it: its state, buffers, keys and flight (no I/O).

A subflow owns what only concerns itself: the control records waiting to be sealed, its
sealer and opener and their key update (SPEC section 6.2), the bytes to write and the
counters. The connection decides *when*; the subflow knows *how*.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..crypto.aead import Opener, Sealer
from ..crypto.keyschedule import DirectionKeys
from ..wire.fastpath import DATA_DSN_OFFSET, DATA_LEN_OFFSET, U64_MASK
from ..wire.header import RecordType
from ..wire.records import RecordSpec, build_record, key_update_spec
from .joins import JoinState
from .states import SubflowState, check_subflow_transition
from .stream import Range

Address = tuple[str, int]

__all__ = ["Address", "Subflow", "SubflowState", "format_address"]


def format_address(addr: Address) -> str:
    """host:port, with IPv6 hosts in brackets."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Subflow:
    """One TCP connection of the multipath connection, seen by the engine."""

    id: int
    local: Address
    remote: Address
    state: SubflowState
    backup: bool = False
    initial: bool = False  # takes part in the key exchange (no JOIN)
    protected: bool = True  # False in the plain comparison modes (no keys, no sealer)
    address_id: int = 0
    rx: bytearray = field(default_factory=bytearray)  # received, not yet processed
    out: bytearray = field(default_factory=bytearray)  # to be written to the socket (tail)
    #: Sealed buffers before `out`, in order: taken over as they are and joined once in
    #: take_output, instead of growing `out` by a copy per chunk.
    sealed: list[bytearray] = field(default_factory=list)
    control: list[RecordSpec] = field(default_factory=list)  # records waiting to be sealed
    sealer: Sealer | None = None
    opener: Opener | None = None
    send_keys: DirectionKeys | None = None
    recv_keys: DirectionKeys | None = None
    early_send: bool = False  # client: sealing with join early keys
    early_recv: bool = False  # server: opening with join early keys
    join: JoinState = field(default_factory=JoinState)
    handshake_options_sent: bool = False  # client: MP_CAPABLE + SUBFLOW on the first record
    # recovery.py keeps these: flight, RTT, progress and join deadline.
    inflight: deque[Range] = field(default_factory=deque)  # DSN ranges not yet DATA_ACKed
    fin_inflight: bool = False
    rtt: float = 0.0  # what the scheduler uses: max(kernel RTT, engine-measured RTT)
    kernel_rtt: float = 0.0  # TCP_INFO of this socket (blind to relays that ACK at once)
    srtt: float | None = None  # from data sent here to the DATA_ACK that covers it
    rtt_probe: tuple[int, float] | None = None  # (DSN end, send time) being timed
    send_space: int = 1 << 20  # what the socket accepts now; the adapter keeps it current
    join_deadline: float | None = None
    last_progress: float = 0.0  # last time bytes arrived (for the progress timeout)
    reason: str = ""
    close_sent: bool = False
    close_received: bool = False
    action: str | None = None  # "close" or "reset", for the adapter
    action_taken: bool = False
    bytes_sent: int = 0  # application bytes sealed here (re-injections included)
    bytes_received: int = 0  # application bytes opened here
    records_sent: int = 0
    records_received: int = 0
    reinjected_bytes: int = 0  # bytes of this subflow's flight re-sent elsewhere
    key_generation_send: int = 0
    key_generation_recv: int = 0

    @property
    def usable(self) -> bool:
        """Can carry connection data now (SPEC section 10.2 for 0-RTT join data)."""
        if self.state is SubflowState.JOINING:
            return self.early_send and self.sealer is not None  # 0-RTT join data
        return (self.state is SubflowState.ESTABLISHED and not self.close_sent
                and (self.sealer is not None or not self.protected))

    @property
    def can_seal(self) -> bool:
        """Established with a way to send records (fallback path for reports and acks).

        SPEC section 10.
        """
        return self.state is SubflowState.ESTABLISHED and (self.sealer is not None
                                                           or not self.protected)

    def set_state(self, new: SubflowState, reason: str | None = None) -> None:
        """Move to `new` as the transition table allows (SPEC section 10)."""
        check_subflow_transition(self.state, new)
        self.state = new
        if reason is not None:
            self.reason = reason

    # ------------------------------------------------------------------ sending

    def queue(self, spec: RecordSpec) -> None:
        """A control record to seal before this subflow's next data (SPEC section 3)."""
        self.control.append(spec)

    def flush_control(self) -> None:
        """Seal the queued control records into `out`, in order (SPEC section 4)."""
        if not self.control:
            return
        specs, self.control = self.control, []
        if self.state.ended:
            return
        if not self.protected:
            for rtype, flags, opts, pt in specs:
                self.out += build_record(rtype, flags, opts, pt)
            self.records_sent += len(specs)
            return
        if self.sealer is None:
            return
        self.out += self.sealer.seal_records(specs)
        self.records_sent += len(specs)

    def seal_data(self, dsn: int, data: bytes | memoryview, template: bytes,
                  max_record: int) -> None:
        """DATA records of at most `max_record` bytes from `dsn` on (SPEC sections 4, 5.2)."""
        self.flush_control()
        if self.protected:
            assert self.sealer is not None
            wire = self.sealer.seal_chunks(data, max_record, RecordType.DATA, 0, template,
                                           seq_off=DATA_DSN_OFFSET, seq_base=dsn,
                                           len_off=DATA_LEN_OFFSET)
            nrec = -(-len(data) // max_record)
        else:
            wire = bytearray()
            nrec = 0
            for off in range(0, len(data), max_record):
                piece = data[off:off + max_record]
                opts = bytearray(template)
                opts[DATA_DSN_OFFSET:DATA_DSN_OFFSET + 8] = ((dsn + off) & U64_MASK).to_bytes(
                    8, "big")
                opts[DATA_LEN_OFFSET:DATA_LEN_OFFSET + 2] = len(piece).to_bytes(2, "big")
                wire += build_record(RecordType.DATA, 0, bytes(opts), bytes(piece))
                nrec += 1
        if self.out and wire:
            self.sealed.append(self.out)
            self.out = wire  # a fresh buffer of ours: no copy needed
        elif not self.out:
            self.out = wire
        self.send_space = max(0, self.send_space - len(wire))
        self.records_sent += nrec
        self.bytes_sent += len(data)

    def take_output(self) -> bytearray:
        """Hand the bytes to write over to the adapter (SPEC section 10)."""
        out, self.out = self.out, bytearray()
        if self.sealed:
            self.sealed.append(out)
            joined = bytearray().join(self.sealed)
            self.sealed.clear()
            return joined
        return out

    # ------------------------------------------------------------------ keys

    def install_send(self, sealer: Sealer, keys: DirectionKeys, early: bool = False) -> None:
        """Seal from now on with `keys` (SPEC sections 6.1, 6.3)."""
        if self.sealer is not None:
            self.sealer.close()
        self.sealer = sealer
        self.send_keys = keys
        self.key_generation_send = keys.generation
        self.early_send = early

    def install_recv(self, opener: Opener, keys: DirectionKeys, early: bool = False) -> None:
        """Open from now on with `keys` (SPEC sections 6.1, 6.3)."""
        if self.opener is not None:
            self.opener.close()
        self.opener = opener
        self.recv_keys = keys
        self.key_generation_recv = keys.generation
        self.early_recv = early

    def seal_key_update(self) -> DirectionKeys:
        """Send KEY_UPDATE under the current keys; returns them, to be advanced (SPEC 6.2)."""
        assert self.sealer is not None and self.send_keys is not None
        self.flush_control()
        self.out += self.sealer.seal_records([key_update_spec(False)])
        self.records_sent += 1
        self.send_keys.update()
        return self.send_keys

    def wipe_keys(self) -> None:
        """Erase the subflow's keys and free its AEAD contexts (SPEC section 6.4)."""
        for obj in (self.sealer, self.opener):
            if obj is not None:
                obj.close()
        for keys in (self.send_keys, self.recv_keys):
            if keys is not None:
                keys.wipe()
        self.sealer = self.opener = None

    def stop(self, reset: bool) -> list[Range]:
        """Stop using the subflow: buffers dropped, keys wiped; returns its flight.

        SPEC section 10.
        """
        self.rx.clear()
        self.control.clear()
        if reset:
            self.out.clear()
            self.sealed.clear()
        self.action = "reset" if reset else "close"
        self.join_deadline = None
        self.wipe_keys()
        ranges = list(self.inflight)
        self.inflight.clear()
        return ranges

    def stats(self) -> dict[str, Any]:
        """Counters for `mptcpsec` reports and traces (SPEC section 10)."""
        return {
            "id": self.id,
            "local": format_address(self.local),
            "remote": format_address(self.remote),
            "state": self.state.value,
            "reason": self.reason,
            "backup": self.backup,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "records_sent": self.records_sent,
            "records_received": self.records_received,
            "reinjected_bytes": self.reinjected_bytes,
            "rtt_ms": round(self.rtt * 1000, 3),
            "key_generation": max(self.key_generation_send, self.key_generation_recv),
        }

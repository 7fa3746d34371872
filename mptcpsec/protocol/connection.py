"""The sans-I/O multipath connection engine.

It is fed bytes per subflow and the current time, and returns bytes per subflow, timer
deadlines, commands for the adapter (open or close a subflow) and events. It never
touches a socket or a clock, so experiments can drive it over a simulated network.

Record handling follows papers/SPEC.md: every byte after the key exchange is in a
protected record; the first record on a subflow that fails authentication or parsing
poisons that subflow (section 3.5 of the design): it is reset, the peer is told on a
clean subflow, its unacknowledged data is re-sent elsewhere, and nothing it carried
after the last good record is delivered.
"""

from __future__ import annotations

import ipaddress
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from ..crypto import get_backend
from ..crypto.aead import FailureReason, OpenedRecord
from ..crypto.keyschedule import (
    ConnectionKeys,
    DirectionKeys,
    KeySchedule,
    Role,
    join_mac,
)
from ..crypto.kx import KeyExchange, KeyExchangeResult, Step
from ..crypto.rfc8684 import (
    add_addr_hmac,
    idsn_from_key,
    join_ack_hmac,
    join_synack_hmac,
    token_from_key,
    verify,
)
from ..errors import KeyExchangeError, MptcpsecError, WireError
from ..wire import fastpath
from ..wire.header import HEADER_LEN, RecordHeader, RecordType, type_mask
from ..wire.options import (
    AddAddr,
    Dss,
    MpCapable,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpsSubflow,
    MpsWindow,
    MptcpOption,
    MpTcpRst,
    PoisonReason,
    RemoveAddr,
    encode_options,
)
from ..wire.records import (
    ALL_TYPES,
    DEFAULT_MAX_BODY,
    HandshakeFlags,
    KeyUpdateFlags,
    build_record,
    check_header,
    check_record,
    clear_handshake,
    close_spec,
    control_spec,
    data_spec,
    join_record,
    key_update_spec,
    subflow_reset_spec,
)
from .config import ConfigError, ConnectionConfig
from .events import (
    AddressAnnounced,
    ConnectionTerminated,
    DataReinjected,
    Event,
    HandshakeCompleted,
    KeyUpdated,
    StreamEnded,
    SubflowClosed,
    SubflowEstablished,
    SubflowPoisoned,
)
from .pathmanager import make_path_manager
from .scheduler import SubflowView, make_scheduler
from .stream import Range, ReassemblyBuffer, SendBuffer
from .subflow import Address, Subflow, SubflowState
from .subflow import format_address as _fmt
from .tls_stream import TlsOverStream, TlsStreamError

JOIN_NONCE_LEN = 32
#: Ended subflows a connection remembers (for statistics) before forgetting the oldest.
MAX_ENDED_SUBFLOWS = 4
MAC_LEN = 32
_PROTECTED = type_mask([RecordType.DATA, RecordType.CONTROL, RecordType.KEY_UPDATE,
                        RecordType.CLOSE])
_STOP_AFTER = type_mask([RecordType.KEY_UPDATE, RecordType.CLOSE])
_STOP_BEFORE = type_mask([RecordType.HANDSHAKE, RecordType.JOIN])
_U64 = (1 << 64) - 1
#: Records opened per batch call. The opener keeps a result array of this many rows per
#: subflow (12 bytes each) for its lifetime; the default 4096 made it 48 KiB per subflow
#: of every idle connection, and the loop in `_process` takes any number of batches.
_OPEN_BATCH = 256

_FAILURE_TO_POISON = {
    FailureReason.AUTH: PoisonReason.AUTHENTICATION,
    FailureReason.VERSION: PoisonReason.MALFORMED_RECORD,
    FailureReason.TYPE: PoisonReason.UNEXPECTED_RECORD,
    FailureReason.TOO_LARGE: PoisonReason.RECORD_TOO_LARGE,
    FailureReason.SHORT_BODY: PoisonReason.MALFORMED_RECORD,
    FailureReason.COUNTER: PoisonReason.KEY_EXHAUSTED,
    FailureReason.FAILED: PoisonReason.AUTHENTICATION,
}


def reason_name(reason: PoisonReason | int) -> str:
    try:
        return PoisonReason(reason).name.lower().replace("_", "-")
    except ValueError:
        return f"reason-{int(reason)}"


def _join_fields(syn: MpJoinSyn) -> bytes:
    """The JOIN SYN fields both join MACs bind: address ID and backup flag."""
    return bytes([syn.address_id, int(syn.backup)])


class ConnectionState(str, Enum):
    HANDSHAKE = "handshake"
    ESTABLISHED = "established"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


class ConnectionError_(MptcpsecError):
    """The connection failed; the message says why (no clean subflow left, peer abort...)."""


@dataclass(frozen=True)
class OpenSubflow:
    """Command: open a TCP connection to `remote` (from `local` if given) and add it."""

    remote: Address
    local: Address | None = None
    backup: bool = False
    address_id: int = 0


@dataclass(frozen=True)
class CloseSubflow:
    """Command: close (FIN after the queued bytes) or reset the subflow's socket."""

    subflow_id: int
    reset: bool


Command = OpenSubflow | CloseSubflow


class Connection:
    """One multipath connection, client or server role."""

    def __init__(self, config: ConnectionConfig, role: Role, now: float,
                 handshake_id: int | None = None) -> None:
        config.validate()
        self.config = config
        self.role = role
        self.mode = config.mode
        self.protected = config.mode == "mptcpsec"
        self._now = now
        self._backend = get_backend() if self.protected else None
        self.state = ConnectionState.HANDSHAKE
        self.error: str | None = None
        self.handshake_id = handshake_id if handshake_id is not None else (
            int.from_bytes(os.urandom(8), "big"))
        self.subflows: dict[int, Subflow] = {}
        self._events: deque[Event] = deque()
        self._commands: deque[Command] = deque()
        self._next_subflow_id = 0
        self._kx: KeyExchange | None = None
        self._kx_started = False
        self.kx_result: KeyExchangeResult | None = None
        self._schedule: KeySchedule | None = None
        self.keys: ConnectionKeys | None = None
        self._plain_keys: tuple[int, int] | None = None  # (client key, server key), plain mode
        self._local_key = int.from_bytes(os.urandom(8), "big")
        self._prebuffer = bytearray()
        self._write_closed = False
        self.sendbuf: SendBuffer | None = None
        self.recvbuf: ReassemblyBuffer | None = None
        self._peer_window_edge = 0
        self._window_sent = 0
        self._ack_sent = 0
        self._ack_deadline: float | None = None
        self._ack_via: Subflow | None = None  # where the data being acknowledged arrived
        self._fin_sent = False
        self._fin_delivered = False
        self._scheduler = make_scheduler(config.scheduler)
        self.path_manager = make_path_manager(config.path_manager_name, config.announce)
        self._blocked_pairs: set[tuple[str, str]] = set()
        self._join_nonces: set[bytes] = set()
        self._join_failures = 0  # failed joins (bad MAC, replay, malformed): bounded
        self.handshake_deadline: float | None = now + config.handshake_timeout
        self._peer_addresses: dict[int, tuple[str, int | None]] = {}
        self.peer_identity: str | None = None
        self.early_data_received = 0
        self._tls: TlsOverStream | None = None
        self._app_buf = bytearray()  # tls-over-plain: decrypted, not yet read

    # ------------------------------------------------------------------ public API

    @property
    def established(self) -> bool:
        return self.state is ConnectionState.ESTABLISHED

    @property
    def ended(self) -> bool:
        return self.state in (ConnectionState.CLOSED, ConnectionState.FAILED)

    @property
    def send_buffer_space(self) -> int:
        """Bytes the application may write before it should wait (drain)."""
        if self.sendbuf is None:
            return max(0, self.config.send_buffer - len(self._prebuffer))
        return self.sendbuf.writable

    @property
    def kx_paths(self) -> int:
        if not self.protected:
            return 1
        return 2 if self.config.key_exchange == "split-path" else 1

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_command(self) -> Command | None:
        return self._commands.popleft() if self._commands else None

    def add_subflow(self, local: Address, remote: Address, now: float,
                    backup: bool = False, address_id: int = 0) -> int:
        """Client: a TCP connection to the server is up; returns its subflow id."""
        if self.role is not Role.CLIENT:
            raise ConfigError("add_subflow is for the client; a server attaches subflows")
        self._now = now
        if self.ended:
            raise ConnectionError_(f"connection is {self.state.value}")
        sid = self._next_subflow_id
        self._next_subflow_id += 1
        if self.state is ConnectionState.HANDSHAKE and sid < self.kx_paths:
            sub = Subflow(sid, local, remote, SubflowState.HANDSHAKE, backup=backup,
                          initial=True, protected=self.protected, last_progress=now)
            self.subflows[sid] = sub
            if sid == self.kx_paths - 1:
                self._start_key_exchange()
            return sid
        if self.state is not ConnectionState.ESTABLISHED:
            raise ConnectionError_("joins need an established connection")
        if (local[0], remote[0]) in self._blocked_pairs:
            raise ConnectionError_(f"address pair {local[0]} -> {remote[0]} was poisoned on this "
                                   "connection and may not join again")
        sub = Subflow(sid, local, remote, SubflowState.JOINING, backup=backup,
                      address_id=address_id, protected=self.protected)
        sub.join_deadline = now + self.config.handshake_timeout
        sub.last_progress = now
        self.subflows[sid] = sub
        self._client_join(sub)
        return sid

    def attach_subflow(self, sid: int, local: Address, remote: Address, now: float,
                       initial: bool) -> Subflow:
        """Server: the endpoint routed a new TCP connection here (from its first record)."""
        self._now = now
        if sid in self.subflows:
            raise WireError(f"subflow id {sid} is already in use on this connection")
        state = SubflowState.HANDSHAKE if initial else SubflowState.JOINING
        sub = Subflow(sid, local, remote, state, initial=initial, protected=self.protected,
                      last_progress=now)
        if not initial:
            sub.join_deadline = now + self.config.handshake_timeout
        self.subflows[sid] = sub
        return sub

    def receive(self, sid: int, data: bytes | bytearray | memoryview, now: float) -> None:
        """Bytes arrived on a subflow."""
        self._now = now
        sub = self.subflows.get(sid)
        if sub is None or sub.state.ended or self.ended:
            return
        sub.rx += data
        sub.last_progress = now
        self._process(sub)
        self._after_receive()

    def transport_closed(self, sid: int, now: float, reset: bool = False) -> None:
        """The subflow's TCP connection ended (FIN or RST)."""
        self._now = now
        sub = self.subflows.get(sid)
        if sub is None or sub.state.ended:
            return
        if sub.close_received:
            self._end_subflow(sub, SubflowState.CLOSED, "closed", clean=True)
        else:
            what = "reset" if reset else "FIN"
            self._end_subflow(sub, SubflowState.FAILED,
                              f"path failure: TCP {what} without an authenticated CLOSE",
                              clean=False)
        self._check_alive()

    def update_path(self, sid: int, rtt: float | None = None,
                    send_space: int | None = None) -> None:
        """The adapter's view of a subflow's socket: smoothed RTT and free send buffer."""
        sub = self.subflows.get(sid)
        if sub is None:
            return
        if rtt is not None:
            sub.kernel_rtt = rtt
            sub.rtt = max(rtt, sub.srtt or 0.0)
        if send_space is not None:
            sub.send_space = send_space

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue application bytes (the adapter applies back-pressure with send_buffer_space)."""
        if self._write_closed:
            raise ConnectionError_("the stream was closed for writing")
        if self.ended:
            raise ConnectionError_(f"connection {self.state.value}: {self.error or 'closed'}")
        if self._tls is not None:
            try:
                data = self._tls.send(bytes(data))
            except TlsStreamError as exc:
                self._fail(str(exc), error=str(exc))
                raise ConnectionError_(str(exc)) from None
        if self.sendbuf is None:
            self._prebuffer += data
        else:
            self.sendbuf.write(data)

    def read(self, max_bytes: int = -1) -> bytes:
        if self.recvbuf is None:
            return b""
        if self._tls is not None:
            n = len(self._app_buf) if max_bytes < 0 else min(max_bytes, len(self._app_buf))
            out = bytes(self._app_buf[:n])
            del self._app_buf[:n]
            self._pump_tls()
            if not self._app_buf and self.recvbuf.at_eof and not self._fin_delivered:
                self._fin_delivered = True
                self._events.append(StreamEnded(self._now))
                self._maybe_close_subflows()
            return out
        data = self.recvbuf.read(max_bytes)
        if data and self.recvbuf.window_edge - self._window_sent >= self.config.receive_window // 4:
            self._queue_ack(force=True)  # window update for a sender that was blocked
        if not self.recvbuf.readable and self.recvbuf.at_eof and not self._fin_delivered:
            self._fin_delivered = True
            self._events.append(StreamEnded(self._now))
            self._maybe_close_subflows()
        return data

    @property
    def readable(self) -> int:
        if self._tls is not None:
            return len(self._app_buf)
        return self.recvbuf.readable if self.recvbuf is not None else 0

    @property
    def at_eof(self) -> bool:
        if self._tls is not None and self._app_buf:
            return False
        return self.recvbuf is not None and self.recvbuf.at_eof

    def _pump_tls(self) -> None:
        """tls-over-plain: stream bytes into the TLS session, plaintext out (bounded)."""
        tls, rb, sb = self._tls, self.recvbuf, self.sendbuf
        if tls is None or rb is None or sb is None or self.ended:
            return
        room = self.config.receive_window - len(self._app_buf)
        raw = rb.read(max(0, room)) if room > 0 else b""
        try:
            plain, out = tls.receive(raw)
        except TlsStreamError as exc:
            self._fail(str(exc), error=str(exc))
            return
        self._app_buf += plain
        if out and sb.fin_dsn is None:  # after our DATA_FIN nothing more can be sent
            sb.write(out)

    def close(self) -> None:
        """Close the sending direction: DATA_FIN after the last byte."""
        if self._write_closed:
            return
        if self._tls is not None and self.sendbuf is not None and not self.ended:
            self.sendbuf.write(self._tls.close())  # close_notify before DATA_FIN
        self._write_closed = True
        if self.sendbuf is not None:
            self.sendbuf.close()

    def abort(self, reason: str = "aborted by the application") -> None:
        """MP_FASTCLOSE: tell the peer on every subflow, then reset them all."""
        if self.ended:
            return
        if self.state is ConnectionState.ESTABLISHED:
            peer_key = self._peer_key64()
            for sub in self.subflows.values():
                if sub.usable:
                    sub.control.append(control_spec([MpFastclose(receiver_key=peer_key)]))
                    self._flush_control(sub)
        self._fail(reason, error=f"aborted: {reason}", notify=False)

    def set_backup(self, sid: int, backup: bool) -> None:
        """MP_PRIO: mark our side of a subflow as backup (used when no primary is left)."""
        sub = self.subflows.get(sid)
        if sub is None or not sub.usable:
            raise ConnectionError_(f"subflow {sid} is not established")
        sub.backup = backup
        sub.control.append(control_spec([MpPrio(backup=backup)]))

    def request_key_update(self, sid: int) -> None:
        """Move the subflow's sending direction to the next key now."""
        sub = self.subflows.get(sid)
        if sub is None or not sub.usable or not self.protected:
            raise ConnectionError_(f"subflow {sid} cannot update its key now")
        self._key_update(sub)

    def data_to_send(self, now: float) -> list[tuple[int, bytes | bytearray]]:
        """Bytes to write per subflow (records sealed just now), in order.

        Each buffer is handed over (the engine keeps no reference to it), not copied.
        """
        self._now = now
        if self.state in (ConnectionState.ESTABLISHED, ConnectionState.CLOSING):
            self._schedule_data()
        self._maybe_send_fin()
        out = []
        for sub in self.subflows.values():
            self._flush_control(sub)
            if sub.out:
                out.append((sub.id, sub.out))
                sub.out = bytearray()
            if sub.action and not sub.action_taken:
                sub.action_taken = True
                self._commands.append(CloseSubflow(sub.id, reset=sub.action == "reset"))
        self._prune_ended()
        return out

    def _prune_ended(self) -> None:
        """Forget all but the last MAX_ENDED_SUBFLOWS ended subflows.

        A long-lived connection whose paths fail and come back would otherwise keep every
        dead subflow (and the adapter its socket object) for its whole life.
        """
        ended = [s for s in self.subflows.values()
                 if s.state.ended and s.action_taken and not s.out and not s.inflight]
        for sub in ended[:max(0, len(ended) - MAX_ENDED_SUBFLOWS)]:
            del self.subflows[sub.id]

    def get_timer(self) -> float | None:
        deadlines = [d for d in (self._ack_deadline, self.handshake_deadline) if d is not None]
        deadlines += [s.join_deadline for s in self.subflows.values()
                      if s.join_deadline is not None and not s.state.ended]
        # A DATA_FIN in flight counts as data: its loss must end the path, not hang it.
        deadlines += [s.last_progress + self.config.subflow_timeout
                      for s in self.subflows.values()
                      if (s.inflight or s.fin_inflight) and not s.state.ended]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        self._now = now
        if self.handshake_deadline is not None and now >= self.handshake_deadline:
            self.handshake_deadline = None
            if self.state is ConnectionState.HANDSHAKE:
                self._fail("handshake timed out",
                           error=f"key exchange did not finish within "
                                 f"{self.config.handshake_timeout:g} s")
                return
        for sub in list(self.subflows.values()):
            if sub.join_deadline is not None and now >= sub.join_deadline:
                sub.join_deadline = None
                if sub.state is SubflowState.JOINING:
                    self._join_failures += 1
                    self._end_subflow(sub, SubflowState.FAILED, "join timed out", clean=False,
                                      reset=True)
                    self._check_alive()  # it may have been the last subflow
        for sub in list(self.subflows.values()):
            if ((sub.inflight or sub.fin_inflight) and not sub.state.ended
                    and now >= sub.last_progress + self.config.subflow_timeout):
                quiet = self.config.subflow_timeout
                self._end_subflow(sub, SubflowState.FAILED,
                                  f"path failure: no progress for {quiet:g} s",
                                  clean=False, reset=True)
                self._check_alive()
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._ack_deadline = None
            self._queue_ack(force=True)

    def connection_info(self) -> dict[str, object] | None:
        """Public facts for captures and key logs: connection id, algorithm, nonces."""
        r = self.kx_result
        if r is None:
            return None
        return {"connection_id": r.connection_id.hex(), "mode": self.mode,
                "key_exchange": self.config.key_exchange,
                "algorithm": self.config.algorithm.value,
                "client_nonce": r.client_nonce.hex(), "server_nonce": r.server_nonce.hex(),
                "kx_subflows": [s.id for s in self.subflows.values() if s.initial]}

    def subflow_stats(self) -> list[dict[str, object]]:
        return [s.stats() for s in self.subflows.values()]

    def close_keys(self) -> None:
        """Erase every key this connection holds (called when it ends)."""
        for sub in self.subflows.values():
            sub.wipe_keys()
        if self._schedule is not None:
            self._schedule.wipe()
        if self.kx_result is not None:
            self.kx_result.wipe()
        if self._kx is not None:
            self._kx.close()

    # ------------------------------------------------------------------ key exchange

    def _make_kx(self) -> KeyExchange:
        cfg = self.config
        kind = cfg.key_exchange
        if kind == "psk":
            from ..crypto.psk import PskConfig, PskKeyExchange

            if cfg.psk is None:
                raise ConfigError("key exchange psk needs a pre-shared key (config.psk)")
            return PskKeyExchange(PskConfig(self.role, cfg.psk.psk, cfg.psk.identity,
                                            cfg.psk.keylog_file))
        if kind == "tls":
            from dataclasses import replace

            from ..crypto.tls_keys import TlsKeyExchange

            if cfg.tls is None:
                raise ConfigError("key exchange tls needs certificates (config.tls)")
            return TlsKeyExchange(replace(cfg.tls, role=self.role))
        from dataclasses import replace

        from ..crypto.splitpath import SplitPathConfig, split_path

        sp = cfg.split_path or SplitPathConfig(self.role)
        return split_path(replace(sp, role=self.role))

    def _start_key_exchange(self) -> None:
        self._kx_started = True
        if not self.protected:
            sub = self.subflows[0]
            cap = MpCapable(sender_key=self._local_key)
            sub.out += clear_handshake(b"", [cap])
            return
        try:
            self._kx = self._make_kx()
            step = self._kx.start()
        except MptcpsecError as exc:
            self._fail(str(exc), error=f"key exchange failed: {exc}")
            return
        self._apply_step(step)

    def _hs_options(self, path: int) -> list[MptcpOption]:
        return [MpCapable(sender_key=self.handshake_id), MpsSubflow(path)]

    def _apply_step(self, step: Step) -> None:
        for path, message in step.send:
            sub = self.subflows.get(path)
            if sub is None or sub.state.ended:
                continue
            opts = self._hs_options(path) if (self.role is Role.CLIENT
                                              and not sub.extra.get("hs_sent")) else []
            sub.extra["hs_sent"] = True
            sub.out += clear_handshake(message, opts)
        if step.error is not None:
            self._fail(str(step.error), error=f"key exchange failed: {step.error}", notify=False)
            return
        if step.result is not None:
            self._install_keys(step.result)

    def _install_keys(self, result: KeyExchangeResult) -> None:
        self.kx_result = result
        self.peer_identity = result.peer_identity
        alg = self.config.algorithm.value
        self._schedule = result.schedule(alg)
        self.keys = self._schedule.connection
        for sub in self.subflows.values():
            if sub.initial and not sub.state.ended:
                keys = self._schedule.subflow_keys(sub.id, result.client_nonce,
                                                   result.server_nonce)
                self._set_send_keys(sub, keys.send_keys(self.role))
                self._set_recv_keys(sub, keys.recv_keys(self.role))
                sub.state = SubflowState.ESTABLISHED
        local_idsn = self.keys.client_idsn if self.role is Role.CLIENT else self.keys.server_idsn
        peer_idsn = self.keys.server_idsn if self.role is Role.CLIENT else self.keys.client_idsn
        self._establish(local_idsn, peer_idsn)
        self._events.append(HandshakeCompleted(self._now, self.mode, self.config.key_exchange,
                                               alg))
        for sub in self.subflows.values():
            if sub.state is SubflowState.ESTABLISHED:
                self._events.append(SubflowEstablished(self._now, sub.id, _fmt(sub.local),
                                                       _fmt(sub.remote), sub.backup))
        # Records that arrived behind the last handshake message can be opened now.
        for sub in list(self.subflows.values()):
            if sub.rx and not sub.state.ended:
                self._process(sub)

    def _establish(self, local_idsn: int, peer_idsn: int) -> None:
        self.state = ConnectionState.ESTABLISHED
        self.handshake_deadline = None
        self.sendbuf = SendBuffer(local_idsn, self.config.send_buffer)
        self.recvbuf = ReassemblyBuffer(peer_idsn, self.config.receive_window)
        self._ack_sent = peer_idsn
        self._window_sent = self.recvbuf.window_edge
        # Until the peer advertises its window, assume one as large as ours.
        self._peer_window_edge = local_idsn + self.config.receive_window
        if self.mode == "tls-over-plain":
            self._tls = TlsOverStream(self.role, self.config.tls)
            self.sendbuf.write(self._tls.start())
        if self._prebuffer:
            self.sendbuf.write(self._prebuffer)
            self._prebuffer.clear()
        if self._write_closed:
            self.sendbuf.close()
        if self.role is Role.SERVER:
            self._announce_addresses()

    def _set_send_keys(self, sub: Subflow, keys: DirectionKeys) -> None:
        if sub.sealer is not None:
            sub.sealer.close()
        sub.send_keys = keys
        assert self._backend is not None
        sub.sealer = self._backend.sealer(self.config.algorithm, bytes(keys.key), bytes(keys.iv))
        sub.key_generation_send = keys.generation

    def _set_recv_keys(self, sub: Subflow, keys: DirectionKeys) -> None:
        if sub.opener is not None:
            sub.opener.close()
        sub.recv_keys = keys
        assert self._backend is not None
        sub.opener = self._backend.opener(self.config.algorithm, bytes(keys.key), bytes(keys.iv))
        sub.key_generation_recv = keys.generation

    def _peer_key64(self) -> int:
        if self.protected and self.keys is not None:
            return int.from_bytes(self.keys.key64(self.role.peer), "big")
        if self._plain_keys is not None:
            c, s = self._plain_keys
            return s if self.role is Role.CLIENT else c
        return 0

    def _own_key64(self) -> int:
        if self.protected and self.keys is not None:
            return int.from_bytes(self.keys.key64(self.role), "big")
        return self._local_key

    # ------------------------------------------------------------------ joins

    def _client_join(self, sub: Subflow) -> None:
        nonce = os.urandom(JOIN_NONCE_LEN)
        sub.client_nonce = nonce
        if self.protected:
            assert self.keys is not None and self._schedule is not None
            token = self.keys.token(Role.SERVER)
            syn = MpJoinSyn(address_id=sub.address_id, token=token,
                            nonce=int.from_bytes(nonce[:4], "big"), backup=sub.backup)
            sub.extra["join_fields"] = _join_fields(syn)
            sub.out += join_record(syn, sub.id, nonce)
            early = self._schedule.early_keys(sub.id, nonce)
            self._set_send_keys(sub, early)
            sub.early_send = True
        else:
            token = token_from_key(self._peer_key64())
            syn = MpJoinSyn(address_id=sub.address_id, token=token,
                            nonce=int.from_bytes(nonce[:4], "big"), backup=sub.backup)
            sub.out += join_record(syn, sub.id, b"")

    def server_join(self, sub: Subflow, syn: MpJoinSyn, nonce: bytes) -> str | None:
        """Server: check a JOIN SYN routed here; returns a refusal reason or None."""
        if self._join_failures >= self.config.max_join_attempts:
            return (f"too many failed join attempts on this connection "
                    f"({self._join_failures})")
        live = [s for s in self.subflows.values() if not s.state.ended and s is not sub]
        if len(live) >= self.config.max_subflows:
            return f"subflow limit ({self.config.max_subflows}) reached"
        if (sub.remote[0], sub.local[0]) in self._blocked_pairs:
            return "address pair was poisoned on this connection"
        if self.state is not ConnectionState.ESTABLISHED:
            return "connection not established"
        sub.backup = syn.backup
        sub.address_id = syn.address_id
        if not self.protected:
            sub.client_nonce = syn.nonce.to_bytes(4, "big")
            sub.server_nonce = os.urandom(4)
            mac = join_synack_hmac(self._local_key, self._peer_key64(), sub.server_nonce,
                                   sub.client_nonce)
            ack = MpJoinSynAck(address_id=0, hmac=mac,
                               nonce=int.from_bytes(sub.server_nonce, "big"), backup=False)
            sub.out += join_record(ack)
            return None
        if len(nonce) != JOIN_NONCE_LEN or syn.nonce != int.from_bytes(nonce[:4], "big"):
            self._join_failures += 1
            return "malformed join nonce"
        if nonce in self._join_nonces:
            self._join_failures += 1
            return "replayed join (client nonce seen before)"
        self._join_nonces.add(nonce)
        assert self.keys is not None and self._schedule is not None
        sub.client_nonce = nonce
        sub.server_nonce = os.urandom(JOIN_NONCE_LEN)
        token = self.keys.token(Role.SERVER)
        sub.extra["join_fields"] = _join_fields(syn)
        mac = join_mac(self.keys.join_key(Role.SERVER), Role.SERVER, token, sub.id,
                       sub.client_nonce, sub.server_nonce, sub.extra["join_fields"])
        ack = MpJoinSynAck(address_id=0, hmac=mac[:8],
                           nonce=int.from_bytes(sub.server_nonce[:4], "big"))
        sub.out += join_record(ack, None, sub.server_nonce + mac)
        keys = self._schedule.subflow_keys(sub.id, sub.client_nonce, sub.server_nonce)
        self._set_send_keys(sub, keys.send_keys(Role.SERVER))
        self._set_recv_keys(sub, self._schedule.early_keys(sub.id, nonce))
        sub.extra["c2s"] = keys.c2s
        sub.early_recv = True
        return None

    def _handle_join_record(self, sub: Subflow, opts: list[MptcpOption], body: bytes) -> None:
        join = opts[0]
        if self.role is Role.CLIENT and isinstance(join, MpJoinSynAck):
            if sub.state is not SubflowState.JOINING or sub.server_nonce:
                self._poison(sub, PoisonReason.UNEXPECTED_RECORD, "JOIN SYN/ACK out of place")
                return
            if not self.protected:
                sn = join.nonce.to_bytes(4, "big")
                want = join_synack_hmac(self._peer_key64(), self._local_key, sn,
                                        sub.client_nonce[:4])
                if not verify(want, join.hmac):
                    self._poison(sub, PoisonReason.JOIN_FAILED, "MP_JOIN SYN/ACK HMAC mismatch")
                    return
                sub.server_nonce = sn
                mac = join_ack_hmac(self._local_key, self._peer_key64(), sub.client_nonce[:4], sn)
                sub.out += join_record(MpJoinAck(hmac=mac))
                self._join_done(sub)
                return
            assert self.keys is not None and self._schedule is not None
            if len(body) != JOIN_NONCE_LEN + MAC_LEN:
                self._poison(sub, PoisonReason.JOIN_FAILED, "malformed JOIN SYN/ACK body")
                return
            sn, mac = body[:JOIN_NONCE_LEN], body[JOIN_NONCE_LEN:]
            token = self.keys.token(Role.SERVER)
            fields = sub.extra.get("join_fields", b"")
            want = join_mac(self.keys.join_key(Role.SERVER), Role.SERVER, token, sub.id,
                            sub.client_nonce, sn, fields)
            if (not verify(want, mac) or not verify(want[:8], join.hmac)
                    or join.nonce != int.from_bytes(sn[:4], "big")):
                self._poison(sub, PoisonReason.JOIN_FAILED, "server join MAC mismatch")
                return
            sub.server_nonce = sn
            cmac = join_mac(self.keys.join_key(Role.CLIENT), Role.CLIENT, token, sub.id,
                            sub.client_nonce, sn, fields)
            sub.out += join_record(MpJoinAck(hmac=cmac[:20]), None, cmac)
            keys = self._schedule.subflow_keys(sub.id, sub.client_nonce, sn)
            self._set_send_keys(sub, keys.send_keys(Role.CLIENT))
            self._set_recv_keys(sub, keys.recv_keys(Role.CLIENT))
            sub.early_send = False
            self._join_done(sub)
            return
        if self.role is Role.SERVER and isinstance(join, MpJoinAck):
            if sub.state is not SubflowState.JOINING or not sub.server_nonce:
                self._poison(sub, PoisonReason.UNEXPECTED_RECORD, "JOIN ACK out of place")
                return
            if not self.protected:
                want = join_ack_hmac(self._peer_key64(), self._local_key, sub.client_nonce,
                                     sub.server_nonce)
                if not verify(want, join.hmac):
                    self._poison(sub, PoisonReason.JOIN_FAILED, "MP_JOIN ACK HMAC mismatch")
                    return
                self._join_done(sub)
                return
            assert self.keys is not None
            token = self.keys.token(Role.SERVER)
            want = join_mac(self.keys.join_key(Role.CLIENT), Role.CLIENT, token, sub.id,
                            sub.client_nonce, sub.server_nonce,
                            sub.extra.get("join_fields", b""))
            if len(body) != MAC_LEN or not verify(want, body) or not verify(want[:20], join.hmac):
                self._join_failures += 1
                self._poison(sub, PoisonReason.JOIN_FAILED, "client join MAC mismatch")
                return
            c2s = sub.extra.pop("c2s")
            self._set_recv_keys(sub, c2s)
            sub.early_recv = False
            self._join_done(sub)
            return
        self._poison(sub, PoisonReason.UNEXPECTED_RECORD,
                     f"unexpected {type(join).__name__} on subflow {sub.id}")

    def _join_done(self, sub: Subflow) -> None:
        sub.state = SubflowState.ESTABLISHED
        sub.join_deadline = None
        self._events.append(SubflowEstablished(self._now, sub.id, _fmt(sub.local),
                                               _fmt(sub.remote), sub.backup, join=True))

    # ------------------------------------------------------------------ receiving

    def _process(self, sub: Subflow) -> None:
        """Consume every complete record in sub.rx; stop at the first failure."""
        while sub.rx and not sub.state.ended and not self.ended:
            first_type = sub.rx[1] if len(sub.rx) > 1 else None
            clear_next = first_type in (RecordType.HANDSHAKE, RecordType.JOIN)
            if (self.protected and sub.opener is None and not clear_next
                    and self.state is ConnectionState.HANDSHAKE
                    and sub.state is SubflowState.HANDSHAKE):
                # Sealed records right behind the peer's last handshake message on this
                # path, while ours on the other path is still on its way: they open once
                # the keys are installed. Bounded like the receive window.
                if len(sub.rx) > self.config.receive_window + self._max_body():
                    self._poison(sub, PoisonReason.UNEXPECTED_RECORD,
                                 "too many records before the key exchange completed")
                return
            if sub.opener is None or clear_next or not self.protected:
                if not self._process_clear(sub):
                    return
                continue
            res = sub.opener.open_records(sub.rx, max_body=self._max_body(),
                                          allowed_types=_PROTECTED, stop_after=_STOP_AFTER,
                                          stop_before=_STOP_BEFORE,
                                          max_records=_OPEN_BATCH)
            buf = sub.rx
            records = res.records
            i, n = 0, len(records)
            while i < n:
                if sub.state.ended or self.ended:
                    return
                i = self._data_run(sub, buf, records, i)
                if i >= n or sub.state.ended or self.ended:
                    break
                rec = records[i]
                opts = buf[rec.opt_offset:rec.pt_offset]
                pt = buf[rec.pt_offset:rec.pt_offset + rec.pt_len]
                sub.records_received += 1
                self._handle_record(sub, rec.type, rec.flags, bytes(opts), pt)
                i += 1
            if sub.state.ended or self.ended:
                return
            del sub.rx[:res.consumed]
            if res.failed:
                reason = _FAILURE_TO_POISON.get(res.reason, PoisonReason.MALFORMED_RECORD)
                self._poison(sub, reason, f"record {sub.records_received + 1} received on this "
                             f"subflow failed: {res.reason.value if res.reason else res.error}")
                return
            if res.consumed == 0:
                if len(sub.rx) >= HEADER_LEN and sub.rx[1] in (RecordType.HANDSHAKE,
                                                               RecordType.JOIN):
                    continue
                return

    def _data_run(self, sub: Subflow, buf: bytearray, records: Sequence[OpenedRecord],
                  i: int) -> int:
        """Take the run of plain DATA records from index i on in one go; returns the index
        of the first record left for `_handle_record`.

        Plain: our option layout (`fastpath.DATA_OPTS`), no flags, no DATA_FIN, contiguous DSNs,
        inside the receive window. The outcome is what `_handle_record` gives record by
        record (data in order, then the DATA_ACKs in order, then the largest window edge);
        anything else, including a record that breaks a rule, ends the run.
        """
        rb = self.recvbuf
        if rb is None or not (sub.state is SubflowState.ESTABLISHED
                              or sub.state is SubflowState.CLOSING
                              or (sub.state is SubflowState.JOINING and sub.early_recv)):
            return i
        run = fastpath.data_run(buf, records, i)
        if run is None:
            return i
        total = run.total
        try:
            rb.receive_run(run.first_dsn, run.pieces, total)
        except ValueError:
            return i  # past the window: record by record, to poison at the right one
        sub.records_received += len(run.pieces)
        sub.bytes_received += total
        if sub.early_recv:
            self.early_data_received += total
        self._queue_ack(force=False, via=sub)
        for ack in run.acks:
            self._on_data_ack(ack)
        if run.window_edge > self._peer_window_edge:
            self._peer_window_edge = run.window_edge
        return run.end

    def _max_body(self) -> int:
        return max(DEFAULT_MAX_BODY, self.config.max_record + 16)

    def _process_clear(self, sub: Subflow) -> bool:
        """Parse one unprotected record (handshake, join, or any record in plain mode)."""
        if len(sub.rx) < HEADER_LEN:
            return False
        try:
            header = RecordHeader.unpack(sub.rx)
            allowed = ALL_TYPES if not self.protected else (RecordType.HANDSHAKE,
                                                             RecordType.JOIN)
            check_header(header, max_body=self._max_body(), allowed_types=allowed,
                         protected=self.protected)
        except MptcpsecError as exc:
            self._poison(sub, PoisonReason.MALFORMED_RECORD
                         if "type" not in str(exc) else PoisonReason.UNEXPECTED_RECORD, str(exc))
            return False
        if len(sub.rx) < header.record_len:
            return False
        opts = bytes(sub.rx[HEADER_LEN:HEADER_LEN + header.opt_len])
        body = bytes(sub.rx[HEADER_LEN + header.opt_len:header.record_len])
        del sub.rx[:header.record_len]
        sub.records_received += 1
        if header.type == RecordType.HANDSHAKE:
            self._handle_handshake(sub, header.flags, opts, body)
        elif header.type == RecordType.JOIN:
            try:
                decoded = check_record(header.type, header.flags, opts, len(body))
            except MptcpsecError as exc:
                self._poison(sub, PoisonReason.MALFORMED_RECORD, str(exc))
                return False
            self._handle_join_record(sub, decoded, body)
        else:
            self._handle_record(sub, header.type, header.flags, opts, body)
        return True

    def _handle_handshake(self, sub: Subflow, flags: int, opts: bytes, body: bytes) -> None:
        if not flags & HandshakeFlags.CLEAR or sub.state is not SubflowState.HANDSHAKE:
            self._poison(sub, PoisonReason.UNEXPECTED_RECORD,
                         f"HANDSHAKE record on a subflow in state {sub.state.value}")
            return
        if opts and self.role is Role.SERVER and not sub.extra.get("hs_checked"):
            sub.extra["hs_checked"] = True  # the endpoint already routed on these options
        if not self.protected:
            self._plain_handshake(sub, opts)
            return
        try:  # SPEC section 3: version 1 MP_CAPABLE with H set, SUBFLOW reason 0, no others
            check_record(RecordType.HANDSHAKE, flags, opts, len(body))
        except MptcpsecError as exc:
            self._poison(sub, PoisonReason.MALFORMED_RECORD, str(exc))
            return
        if self._kx is None:
            if self.role is Role.CLIENT:
                self._poison(sub, PoisonReason.UNEXPECTED_RECORD, "handshake before start")
                return
            try:
                self._kx = self._make_kx()
            except MptcpsecError as exc:
                self._fail(str(exc), error=f"key exchange failed: {exc}")
                return
        try:
            step = self._kx.receive(sub.id, body)
        except KeyExchangeError as exc:
            self._fail(str(exc), error=f"key exchange failed: {exc}")
            return
        self._apply_step(step)

    def _plain_handshake(self, sub: Subflow, opts: bytes) -> None:
        try:
            decoded = check_record(RecordType.HANDSHAKE, HandshakeFlags.CLEAR, opts, 0)
        except MptcpsecError as exc:
            self._fail(str(exc), error=f"handshake failed: {exc}")
            return
        caps = [o for o in decoded if isinstance(o, MpCapable)]
        if not caps or caps[0].sender_key is None:
            self._fail("no MP_CAPABLE key", error="handshake failed: no MP_CAPABLE key")
            return
        peer_key = caps[0].sender_key
        if self.role is Role.SERVER:
            sub.out += clear_handshake(b"", [MpCapable(sender_key=self._local_key)])
            self._plain_keys = (peer_key, self._local_key)
        else:
            self._plain_keys = (self._local_key, peer_key)
        sub.state = SubflowState.ESTABLISHED
        c, s = self._plain_keys
        local_idsn = idsn_from_key(c if self.role is Role.CLIENT else s)
        peer_idsn = idsn_from_key(s if self.role is Role.CLIENT else c)
        self._establish(local_idsn, peer_idsn)
        self._events.append(HandshakeCompleted(self._now, self.mode, "none", "none"))
        self._events.append(SubflowEstablished(self._now, sub.id, _fmt(sub.local),
                                               _fmt(sub.remote), sub.backup))

    def _handle_record(self, sub: Subflow, rtype: int, flags: int, opts: bytes,
                       pt: bytes | bytearray) -> None:
        if rtype == RecordType.DATA:
            # CLOSING: our CLOSE ended our direction only; the peer's may still carry data.
            if sub.state not in (SubflowState.ESTABLISHED, SubflowState.CLOSING) and not (
                    sub.state is SubflowState.JOINING and sub.early_recv):
                self._poison(sub, PoisonReason.UNEXPECTED_RECORD,
                             f"DATA on a subflow in state {sub.state.value}")
                return
            edge: int | None = None
            fast = fastpath.parse_data(opts)
            if fast is not None and fast.data_len == len(pt) + fast.data_fin and (
                    len(pt) or fast.data_fin):
                data_ack, dsn, fin, edge = fast.data_ack, fast.dsn, fast.data_fin, fast.window_edge
                extra: list[MptcpOption] = []
            else:
                try:
                    decoded = check_record(rtype, flags, opts, len(pt))
                except MptcpsecError as exc:
                    self._poison(sub, PoisonReason.MALFORMED_RECORD, str(exc))
                    return
                dss = decoded[0]
                assert isinstance(dss, Dss) and dss.dsn is not None
                data_ack, dsn, fin, extra = dss.data_ack, dss.dsn, dss.data_fin, decoded[1:]
            if flags:
                self._poison(sub, PoisonReason.MALFORMED_RECORD, "DATA record with flags set")
                return
            self._on_data(sub, dsn, pt, fin)
            if data_ack is not None:
                self._on_data_ack(data_ack)
            if edge is not None and edge > self._peer_window_edge:
                self._peer_window_edge = edge  # as _on_signal does for a WINDOW option
            for o in extra:
                self._on_signal(sub, o)
            return
        if rtype == RecordType.CONTROL and not flags and not pt:
            ack_edge = fastpath.parse_ack(opts)
            if ack_edge is not None:
                self._on_data_ack(ack_edge[0])  # what the general path below does, in its order
                if ack_edge[1] > self._peer_window_edge:
                    self._peer_window_edge = ack_edge[1]
                return
        try:
            decoded = check_record(rtype, flags, opts, len(pt))
        except MptcpsecError as exc:
            self._poison(sub, PoisonReason.MALFORMED_RECORD, str(exc))
            return
        if sub.state is SubflowState.JOINING and rtype != RecordType.CONTROL:
            self._poison(sub, PoisonReason.UNEXPECTED_RECORD,
                         f"{RecordType(rtype).name} before the join completed")
            return
        if rtype == RecordType.CONTROL:
            reset: MpTcpRst | None = None
            for o in decoded:
                if isinstance(o, Dss) and o.data_ack is not None:
                    self._on_data_ack(o.data_ack)
                elif isinstance(o, MpTcpRst):
                    reset = o
                elif isinstance(o, MpsSubflow) and reset is not None:
                    self._on_peer_reset(o.subflow_id, o.reason)
                elif isinstance(o, MpFastclose):
                    if o.receiver_key != self._own_key64():
                        self._poison(sub, PoisonReason.MALFORMED_RECORD,
                                     "MP_FASTCLOSE with the wrong key")
                        return
                    self._fail("peer sent MP_FASTCLOSE",
                               error="connection aborted by the peer (MP_FASTCLOSE)",
                               notify=False)
                    return
                else:
                    self._on_signal(sub, o)
        elif rtype == RecordType.KEY_UPDATE:
            if not self.protected or sub.recv_keys is None:
                self._poison(sub, PoisonReason.UNEXPECTED_RECORD, "KEY_UPDATE without keys")
                return
            sub.recv_keys.update()
            self._set_recv_keys(sub, sub.recv_keys)
            self._events.append(KeyUpdated(self._now, sub.id, "receive",
                                           sub.recv_keys.generation))
            if flags & KeyUpdateFlags.UPDATE_REQUESTED:
                self._key_update(sub)
        elif rtype == RecordType.CLOSE:
            for o in decoded:
                if isinstance(o, Dss) and o.data_ack is not None:
                    self._on_data_ack(o.data_ack)
            sub.close_received = True
            if not sub.close_sent:
                sub.control.append(close_spec(self._ack_value()))
                sub.close_sent = True
                self._flush_control(sub)
            self._end_subflow(sub, SubflowState.CLOSED, "closed", clean=True)
            self._check_alive()
        else:
            self._poison(sub, PoisonReason.UNEXPECTED_RECORD, f"record type {rtype}")

    def _on_data(self, sub: Subflow, dsn: int, pt: bytes | bytearray, fin: bool) -> None:
        assert self.recvbuf is not None
        sub.bytes_received += len(pt)
        if sub.early_recv:
            self.early_data_received += len(pt)
        try:
            self.recvbuf.receive(dsn, pt)  # pt is already a copy out of the receive buffer
        except ValueError as exc:
            self._poison(sub, PoisonReason.MALFORMED_RECORD, str(exc))
            return
        if fin:
            self.recvbuf.set_fin(dsn + len(pt))
            self._queue_ack(force=True, via=sub)
        else:
            self._queue_ack(force=False, via=sub)

    def _on_data_ack(self, data_ack: int) -> None:
        sb = self.sendbuf
        if sb is None:
            return
        sb.ack(data_ack)
        base = sb.base
        for s in self.subflows.values():
            while s.inflight and s.inflight[0].end <= base:
                s.inflight.popleft()
            if s.rtt_probe is not None and s.rtt_probe[0] <= base:
                # Round trip of this path as the sender sees it, relays and queues included.
                sample = self._now - s.rtt_probe[1]
                s.srtt = sample if s.srtt is None else 0.875 * s.srtt + 0.125 * sample
                s.rtt = max(s.kernel_rtt, s.srtt)
                s.rtt_probe = None
            if s.fin_inflight and sb.fin_acked(data_ack):
                s.fin_inflight = False
        self._maybe_close_subflows()

    def _on_signal(self, sub: Subflow, o: MptcpOption) -> None:
        if isinstance(o, MpsWindow):
            if o.edge > self._peer_window_edge:
                self._peer_window_edge = o.edge
        elif isinstance(o, AddAddr):
            if o.echo:
                return
            if self.role is not Role.CLIENT:
                return  # a client announces nothing in this version; ignore
            want = add_addr_hmac(self._peer_key64(), self._own_key64(), o.address_id,
                                 o.address, o.port)
            if o.hmac is None or not verify(want, o.hmac):
                self._poison(sub, PoisonReason.MALFORMED_RECORD, "ADD_ADDR HMAC mismatch")
                return
            port = o.port if o.port is not None else sub.remote[1]
            self._peer_addresses[o.address_id] = (str(o.address), port)
            self._events.append(AddressAnnounced(self._now, o.address_id, str(o.address), port))
            sub.control.append(control_spec([AddAddr(o.address_id, o.address, o.port,
                                                     echo=True)]))
            if self.path_manager.join_announced(o.address_id, (str(o.address), port)):
                self._commands.append(OpenSubflow((str(o.address), port), None, False,
                                                  o.address_id))
        elif isinstance(o, RemoveAddr):
            for aid in o.address_ids:
                addr = self._peer_addresses.pop(aid, None)
                self._events.append(AddressAnnounced(self._now, aid, addr[0] if addr else "",
                                                     addr[1] if addr else None, removed=True))
                for s in self.subflows.values():
                    if s.address_id == aid and s.usable and s is not sub:
                        self._close_subflow(s)
        elif isinstance(o, MpPrio):
            sub.backup = o.backup
        # Other options (MP_FAIL, ...) carry nothing this version acts on.

    def _on_peer_reset(self, sid: int, reason: int) -> None:
        target = self.subflows.get(sid)
        if target is None:
            return
        if target.state.ended:
            # The subflow's RST may overtake this report on another path: it still says
            # the path was tampered with (and the pair must not rejoin).
            if reason != PoisonReason.NONE and target.state is SubflowState.FAILED:
                self._events.append(SubflowPoisoned(self._now, sid, reason_name(reason),
                                                    "reported by the peer over a clean "
                                                    "subflow", reported_by_peer=True))
                target.state = SubflowState.POISONED
                target.reason = reason_name(reason)
                if reason != PoisonReason.JOIN_FAILED:
                    self._block(target)
            return
        if reason != PoisonReason.NONE:
            self._events.append(SubflowPoisoned(self._now, sid, reason_name(reason),
                                                "reported by the peer over a clean subflow",
                                                reported_by_peer=True))
            was_joining = target.state is SubflowState.JOINING
            target.state = SubflowState.POISONED
            target.reason = reason_name(reason)
            if reason != PoisonReason.JOIN_FAILED and not was_joining:
                self._block(target)  # a failed join proves nothing about the pair
            self._teardown(target, reset=True)
        else:
            self._end_subflow(target, SubflowState.FAILED, "reset by the peer", clean=False,
                              reset=True)
        self._check_alive()

    def _after_receive(self) -> None:
        if self._tls is not None:
            self._pump_tls()
        self._maybe_close_subflows()

    # ------------------------------------------------------------------ sending

    def _ack_value(self) -> int:
        rb = self.recvbuf
        if rb is None:
            return 0
        ack = rb.next_dsn
        if rb.fin_dsn is not None and rb.next_dsn >= rb.fin_dsn:
            ack = rb.fin_dsn + 1
        return ack & _U64

    def _queue_ack(self, force: bool, via: Subflow | None = None) -> None:
        if self.recvbuf is None:
            return
        if via is not None:
            self._ack_via = via
        pending = self.recvbuf.next_dsn - self._ack_sent
        if force or pending >= self.config.ack_every:
            # Acknowledge on the path the data came in on while it is usable: a path that
            # swallows records then stalls only its own flight, never a clean path's.
            via = self._ack_via
            best = via if via is not None and via.usable else self._best_subflow()
            if best is None:
                return
            edge = self.recvbuf.window_edge
            best.control.append(fastpath.ack_spec(self._ack_value(), edge))
            self._ack_sent = self.recvbuf.next_dsn
            self._window_sent = edge
            self._ack_deadline = None
        elif pending > 0 and self._ack_deadline is None:
            self._ack_deadline = self._now + self.config.ack_delay

    def _best_subflow(self) -> Subflow | None:
        usable = [s for s in self.subflows.values() if s.usable]
        if not usable:
            usable = [s for s in self.subflows.values()
                      if s.state is SubflowState.ESTABLISHED
                      and (s.sealer is not None or not s.protected)]
        if not usable:
            return None
        primaries = [s for s in usable if not s.backup] or usable
        return min(primaries, key=lambda s: (s.rtt, s.id))

    def _flush_control(self, sub: Subflow) -> None:
        if not sub.control:
            return
        specs, sub.control = sub.control, []
        if sub.state.ended:
            return
        if not self.protected:
            for rtype, flags, opts, pt in specs:
                sub.out += build_record(rtype, flags, opts, pt)
                sub.records_sent += 1
            return
        if sub.sealer is None:
            return
        sub.out += sub.sealer.seal_records(specs)
        sub.records_sent += len(specs)

    def _data_template(self) -> tuple[bytes, int, int]:
        if self.recvbuf is None:
            return encode_options([Dss(data_ack=self._ack_value(), dsn=0, ssn=0,
                                       data_len=0)]), 12, 24
        edge = self.recvbuf.window_edge
        # encode_options([Dss(data_ack, dsn=0, ssn=0, data_len=0), MpsWindow(edge)]),
        # packed directly: this runs for every chunk sent.
        template = fastpath.data_template(self._ack_value(), edge)
        self._window_sent = edge
        self._ack_sent = self.recvbuf.next_dsn
        self._ack_deadline = None
        return template, fastpath.DATA_DSN_OFFSET, fastpath.DATA_LEN_OFFSET

    def _schedule_data(self) -> None:
        sb = self.sendbuf
        if sb is None:
            return
        cfg = self.config
        for _ in range(10_000):  # bounded: each pass moves at least one byte or stops
            if not sb.pending_reinjection and sb.unsent == 0:
                return
            views = [SubflowView(s.id, s.rtt, s.backup, s.send_space)
                     for s in self.subflows.values() if s.usable]
            picks = self._scheduler.pick(views)
            if not picks:
                return
            space = min(self.subflows[i].send_space for i in picks)
            max_len = max(1, min(cfg.batch_bytes, space))
            new_room = self._peer_window_edge - sb.next_dsn
            if not sb.pending_reinjection:
                if new_room <= 0:
                    return
                max_len = min(max_len, new_room)
            chunk = sb.next_chunk(max_len)
            if chunk is None:
                return
            dsn, data = chunk
            for sid in picks:
                self._send_chunk(self.subflows[sid], dsn, data)

    def _send_chunk(self, sub: Subflow, dsn: int, data: bytes) -> None:
        template, seq_off, len_off = self._data_template()
        rec = self.config.max_record
        if self.protected:
            self._flush_control(sub)
            assert sub.sealer is not None
            wire = sub.sealer.seal_chunks(data, rec, RecordType.DATA, 0, template,
                                          seq_off=seq_off, seq_base=dsn, len_off=len_off)
            nrec = -(-len(data) // rec)
        else:
            self._flush_control(sub)
            wire = bytearray()
            nrec = 0
            for off in range(0, len(data), rec):
                piece = data[off:off + rec]
                opts = bytearray(template)
                opts[seq_off:seq_off + 8] = ((dsn + off) & _U64).to_bytes(8, "big")
                opts[len_off:len_off + 2] = len(piece).to_bytes(2, "big")
                wire += build_record(RecordType.DATA, 0, bytes(opts), piece)
                nrec += 1
        if sub.out:
            sub.out += wire
        else:
            sub.out = wire  # a fresh buffer of ours: no copy needed
        sub.send_space = max(0, sub.send_space - len(wire))
        sub.records_sent += nrec
        sub.bytes_sent += len(data)
        if sub.rtt_probe is None and self.sendbuf is not None \
                and dsn + len(data) > self.sendbuf.base:
            sub.rtt_probe = (dsn + len(data), self._now)
        if not sub.inflight and not sub.fin_inflight:
            sub.last_progress = self._now  # an idle path's progress clock starts now
        sub.inflight.append(Range(dsn, dsn + len(data)))
        self._after_seal(sub)

    def _after_seal(self, sub: Subflow) -> None:
        # Early (0-RTT join) keys are never updated: the peer accepts only data under them,
        # and the join replaces them with the subflow's keys one round trip later.
        if (self.protected and sub.sealer is not None and not sub.early_send
                and sub.sealer.counter >= self.config.update_after):
            self._key_update(sub)

    def _key_update(self, sub: Subflow) -> None:
        assert sub.sealer is not None and sub.send_keys is not None
        self._flush_control(sub)
        sub.out += sub.sealer.seal_records([key_update_spec(False)])
        sub.records_sent += 1
        sub.send_keys.update()
        self._set_send_keys(sub, sub.send_keys)
        self._events.append(KeyUpdated(self._now, sub.id, "send", sub.send_keys.generation))

    def _maybe_send_fin(self) -> None:
        sb = self.sendbuf
        if (sb is None or sb.fin_dsn is None or self._fin_sent or sb.next_dsn < sb.fin_dsn
                or sb.pending_reinjection):
            return
        best = self._best_subflow()
        if best is None:
            return
        best.control.append(data_spec(sb.fin_dsn, b"", self._ack_value(), data_fin=True))
        if not best.inflight:
            best.last_progress = self._now  # an idle path's progress clock starts now
        best.fin_inflight = True
        self._fin_sent = True
        if self.state is ConnectionState.ESTABLISHED:
            self.state = ConnectionState.CLOSING

    def _maybe_close_subflows(self) -> None:
        """Both DATA_FINs done: send CLOSE on every subflow (then TCP FIN)."""
        if self.ended or not self._streams_done():
            return
        for sub in self.subflows.values():
            if sub.state is SubflowState.ESTABLISHED:
                self._close_subflow(sub)
        self._check_done()

    def _streams_done(self) -> bool:
        """Both directions finished: our DATA_FIN acknowledged, the peer's received."""
        sb, rb = self.sendbuf, self.recvbuf
        return (sb is not None and rb is not None and self._fin_sent and sb.unacked == 0
                and not any(s.fin_inflight for s in self.subflows.values())
                and rb.fin_dsn is not None and rb.next_dsn >= rb.fin_dsn)

    def _check_done(self) -> None:
        if (all(s.state.ended for s in self.subflows.values()) and self._streams_done()
                and not self.ended):
            self.state = ConnectionState.CLOSED
            self._events.append(ConnectionTerminated(self._now, None, "closed"))
            self.close_keys()

    def _close_subflow(self, sub: Subflow) -> None:
        if sub.usable:
            sub.control.append(close_spec(self._ack_value()))
            sub.close_sent = True
            sub.state = SubflowState.CLOSING
            self._flush_control(sub)

    # ------------------------------------------------------------------ failure handling

    def _block(self, sub: Subflow) -> None:
        if self.config.rejoin_poisoned == "never":
            if self.role is Role.CLIENT:
                self._blocked_pairs.add((sub.local[0], sub.remote[0]))
            else:
                self._blocked_pairs.add((sub.remote[0], sub.local[0]))

    def _poison(self, sub: Subflow, reason: PoisonReason, detail: str) -> None:
        if sub.state.ended:
            return
        name = reason_name(reason)
        was_joining = sub.state is SubflowState.JOINING
        sub.state = SubflowState.POISONED
        sub.reason = f"{name}: {detail}"
        self._events.append(SubflowPoisoned(self._now, sub.id, name, detail))
        if not was_joining:
            # A join that never completed proves nothing about the pair: anyone on the
            # path can forge one, and blocking would lock the real client out.
            self._block(sub)
        self._teardown(sub, reset=True)
        if self.state is ConnectionState.HANDSHAKE and sub.initial:
            self._fail(f"handshake subflow {sub.id} poisoned: {detail}",
                       error=f"key exchange failed: subflow {sub.id} poisoned ({name}: "
                             f"{detail})")
            return
        clean = self._best_subflow()
        if clean is not None:
            clean.control.append(subflow_reset_spec(sub.id, reason))
        self._check_alive()

    def _teardown(self, sub: Subflow, reset: bool) -> None:
        """Stop using a subflow: keys wiped, buffers dropped, its flight re-injected."""
        sub.rx.clear()
        sub.control.clear()
        if reset:
            sub.out.clear()
        sub.action = "reset" if reset else "close"
        sub.join_deadline = None
        sub.wipe_keys()
        self._reinject_from(sub)

    def _reinject_from(self, sub: Subflow) -> None:
        if self.sendbuf is None:
            sub.inflight.clear()
            return
        ranges = list(sub.inflight)
        sub.inflight.clear()
        queued = self.sendbuf.reinject(ranges)
        if sub.fin_inflight:
            sub.fin_inflight = False
            self._fin_sent = False  # the DATA_FIN goes out again on a clean subflow
        if queued:
            sub.reinjected_bytes += queued
            self._events.append(DataReinjected(self._now, sub.id, queued,
                                               [(r.start, r.end) for r in ranges]))

    def _end_subflow(self, sub: Subflow, state: SubflowState, reason: str, clean: bool,
                     reset: bool = False) -> None:
        if sub.state.ended:
            return
        sub.state = state
        sub.reason = reason
        self._events.append(SubflowClosed(self._now, sub.id, reason, clean))
        self._teardown(sub, reset=reset)
        if self.state is ConnectionState.HANDSHAKE and sub.initial:
            self._fail(f"subflow {sub.id} ended during the handshake",
                       error=f"key exchange failed: subflow {sub.id} {reason}")

    def _check_alive(self) -> None:
        if self.ended:
            return
        live = [s for s in self.subflows.values() if not s.state.ended]
        if self.state is ConnectionState.HANDSHAKE:
            return
        if any(s.state is SubflowState.ESTABLISHED or s.state is SubflowState.CLOSING
               for s in live):
            self._check_done()
            return
        if live and all(s.state is SubflowState.JOINING for s in live):
            return  # a join may still bring a clean path
        if self._streams_done():
            self._check_done()
            return
        poisoned = [s for s in self.subflows.values() if s.state is SubflowState.POISONED]
        what = ("every subflow was poisoned or failed" if poisoned
                else "every subflow failed")
        self._fail("no clean subflow left", error=f"no clean subflow left: {what} "
                   f"({', '.join(f'subflow {s.id}: {s.reason}' for s in self.subflows.values())})",
                   notify=False)

    def _fail(self, reason: str, error: str, notify: bool = True) -> None:
        if self.ended:
            return
        self.state = ConnectionState.FAILED
        self.error = error
        self.handshake_deadline = None
        for sub in self.subflows.values():
            if not sub.state.ended:
                sub.state = SubflowState.FAILED
                sub.reason = sub.reason or reason
                sub.rx.clear()
                sub.control.clear()
                sub.action = "reset" if not sub.out else "close"
        self._events.append(ConnectionTerminated(self._now, error, reason))
        self.close_keys()

    # ------------------------------------------------------------------ path manager

    def _announce_addresses(self) -> None:
        announce = self.path_manager.addresses_to_announce()
        sub = self._best_subflow()
        if not announce or sub is None:
            return
        for i, (host, port) in enumerate(announce, start=1):
            addr = ipaddress.ip_address(host)
            mac = add_addr_hmac(self._own_key64(), self._peer_key64(), i, addr, port)
            sub.control.append(control_spec([AddAddr(i, addr, port, hmac=mac)]))

    def withdraw_address(self, address_id: int) -> None:
        """Server: REMOVE_ADDR for an announced address."""
        sub = self._best_subflow()
        if sub is not None:
            sub.control.append(control_spec([RemoveAddr((address_id,))]))


"""Per-subflow state of the connection engine (no I/O: the adapter owns the sockets)."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..crypto.aead import Opener, Sealer
from ..crypto.keyschedule import DirectionKeys
from ..wire.records import RecordSpec
from .stream import Range

Address = tuple[str, int]


def format_address(addr: Address) -> str:
    """host:port, with IPv6 hosts in brackets."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SubflowState(str, enum.Enum):
    HANDSHAKE = "handshake"  # carries the key exchange (initial subflows)
    JOINING = "joining"  # JOIN sent or received, not yet confirmed
    ESTABLISHED = "established"
    CLOSING = "closing"  # CLOSE sent, waiting for the peer's CLOSE
    CLOSED = "closed"  # authenticated CLOSE both ways
    FAILED = "failed"  # path failure: FIN/RST without CLOSE, timeout
    POISONED = "poisoned"  # a record failed authentication or parsing

    @property
    def ended(self) -> bool:
        return self in (SubflowState.CLOSED, SubflowState.FAILED, SubflowState.POISONED)


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
    rx: bytearray = field(default_factory=bytearray)  # received, not yet processed
    out: bytearray = field(default_factory=bytearray)  # to be written to the socket
    control: list[RecordSpec] = field(default_factory=list)  # records waiting to be sealed
    sealer: Sealer | None = None
    opener: Opener | None = None
    send_keys: DirectionKeys | None = None
    recv_keys: DirectionKeys | None = None
    early_send: bool = False  # client: sealing with join early keys
    early_recv: bool = False  # server: opening with join early keys
    inflight: deque[Range] = field(default_factory=deque)  # DSN ranges not yet DATA_ACKed
    fin_inflight: bool = False
    rtt: float = 0.0  # what the scheduler uses: max(kernel RTT, engine-measured RTT)
    kernel_rtt: float = 0.0  # TCP_INFO of this socket (blind to relays that ACK at once)
    srtt: float | None = None  # from data sent here to the DATA_ACK that covers it
    rtt_probe: tuple[int, float] | None = None  # (DSN end, send time) being timed
    send_space: int = 1 << 20  # what the socket accepts now; the adapter keeps it current
    reason: str = ""
    close_sent: bool = False
    close_received: bool = False
    action: str | None = None  # "close" or "reset", for the adapter
    action_taken: bool = False
    client_nonce: bytes = b""
    server_nonce: bytes = b""
    join_deadline: float | None = None
    last_progress: float = 0.0  # last time bytes arrived (for the progress timeout)
    address_id: int = 0
    bytes_sent: int = 0  # application bytes sealed here (re-injections included)
    bytes_received: int = 0  # application bytes opened here
    records_sent: int = 0
    records_received: int = 0
    reinjected_bytes: int = 0  # bytes of this subflow's flight re-sent elsewhere
    key_generation_send: int = 0
    key_generation_recv: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """Can carry connection data now."""
        if self.state is SubflowState.JOINING:
            return self.early_send and self.sealer is not None  # 0-RTT join data
        return (self.state is SubflowState.ESTABLISHED and not self.close_sent
                and (self.sealer is not None or not self.protected))

    def stats(self) -> dict[str, Any]:
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

    def wipe_keys(self) -> None:
        for obj in (self.sealer, self.opener):
            if obj is not None:
                obj.close()
        for keys in (self.send_keys, self.recv_keys):
            if keys is not None:
                keys.wipe()
        self.sealer = self.opener = None

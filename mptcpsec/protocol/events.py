"""Protocol events: what the engine reports, as dataclasses (also written as JSON lines)."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TextIO


@dataclass(frozen=True)
class Event:
    """Base class; `time` is the engine's clock when the event happened."""

    kind: ClassVar[str] = "event"
    time: float

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict, `event` naming its kind (trace lines)."""
        d = {"event": self.kind}
        d.update(asdict(self))
        return d


@dataclass(frozen=True)
class HandshakeCompleted(Event):
    kind: ClassVar[str] = "handshake_completed"
    mode: str
    key_exchange: str
    algorithm: str


@dataclass(frozen=True)
class SubflowEstablished(Event):
    kind: ClassVar[str] = "subflow_established"
    subflow_id: int
    local: str
    remote: str
    backup: bool = False
    join: bool = False


@dataclass(frozen=True)
class SubflowPoisoned(Event):
    """A record failed authentication or parsing: the subflow was dropped."""

    kind: ClassVar[str] = "subflow_poisoned"
    subflow_id: int
    reason: str
    detail: str
    reported_by_peer: bool = False


@dataclass(frozen=True)
class SubflowClosed(Event):
    """A subflow ended: authenticated CLOSE (`clean`) or a path failure (FIN/RST, timeout)."""

    kind: ClassVar[str] = "subflow_closed"
    subflow_id: int
    reason: str
    clean: bool


@dataclass(frozen=True)
class DataReinjected(Event):
    kind: ClassVar[str] = "data_reinjected"
    from_subflow: int
    bytes: int
    ranges: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class KeyUpdated(Event):
    kind: ClassVar[str] = "key_updated"
    subflow_id: int
    direction: str  # "send" or "receive"
    generation: int


class RefusalReason(str, enum.Enum):
    """Why a server refused a socket's first record or a join (SPEC sections 10.1, 10.2)."""

    # routing (SPEC section 10.1)
    UNKNOWN_SOCKET = "unknown-socket"
    MALFORMED_FIRST_RECORD = "malformed-first-record"
    NO_HANDSHAKE_ID = "no-handshake-id"
    CONNECTION_LIMIT = "connection-limit"
    PAST_HANDSHAKE = "past-handshake"
    HANDSHAKE_PATH = "handshake-path"
    NOT_A_JOIN_SYN = "not-a-join-syn"
    PARKED_OVERFLOW = "parked-overflow"
    # joins (SPEC section 10.2)
    UNKNOWN_TOKEN = "unknown-token"
    SUBFLOW_ID_IN_USE = "subflow-id-in-use"
    TOO_MANY_FAILED_JOINS = "too-many-failed-joins"
    SUBFLOW_LIMIT = "subflow-limit"
    PAIR_POISONED = "pair-poisoned"
    NOT_ESTABLISHED = "not-established"
    MALFORMED_NONCE = "malformed-nonce"
    REPLAYED_NONCE = "replayed-nonce"


@dataclass(frozen=True)
class Refusal:
    """A refusal: its reason for programs, its detail for people."""

    code: RefusalReason
    detail: str

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class JoinRefused(Event):
    kind: ClassVar[str] = "join_refused"
    reason: str
    remote: str = ""
    code: RefusalReason | None = None


@dataclass(frozen=True)
class AddressAnnounced(Event):
    kind: ClassVar[str] = "address_announced"
    address_id: int
    address: str
    port: int | None
    removed: bool = False


@dataclass(frozen=True)
class StreamEnded(Event):
    """The peer's DATA_FIN arrived and every byte before it was delivered."""

    kind: ClassVar[str] = "stream_ended"


@dataclass(frozen=True)
class ConnectionTerminated(Event):
    kind: ClassVar[str] = "connection_terminated"
    error: str | None  # None for a clean close
    reason: str = ""


class TraceWriter:
    """Writes events as JSON lines (one object per line, `event` names the kind)."""

    def __init__(self, stream: TextIO, **context: Any) -> None:
        self._stream = stream
        self._context = context

    def write(self, event: Event) -> None:
        """One JSON line for `event` with the writer's context (the trace format)."""
        record = dict(self._context)
        record.update(event.to_dict())
        self._stream.write(json.dumps(record, default=str) + "\n")
        self._stream.flush()

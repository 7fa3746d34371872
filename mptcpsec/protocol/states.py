"""The engine's two state machines, each as one transition table (SPEC section 10).

A connection moves HANDSHAKE -> ESTABLISHED -> (CLOSING ->) CLOSED, or to FAILED from any
live state; a subflow moves from HANDSHAKE or JOINING to ESTABLISHED -> CLOSING, and to one
of the ended states (CLOSED, FAILED, POISONED) from any live one. The only move out of an
ended state is FAILED -> POISONED: a peer's report that a subflow whose RST arrived first
had been tampered with (SPEC section 10.4). Anything else is a bug and raises.
"""

from __future__ import annotations

import enum

from ..errors import StateTransitionError


class ConnectionState(str, enum.Enum):
    HANDSHAKE = "handshake"
    ESTABLISHED = "established"
    CLOSING = "closing"  # our DATA_FIN sent
    CLOSED = "closed"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        """No further records are sent or accepted (SPEC section 10)."""
        return self in (ConnectionState.CLOSED, ConnectionState.FAILED)


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
        """Nothing more is read from or sent on the subflow (SPEC section 10)."""
        return self in (SubflowState.CLOSED, SubflowState.FAILED, SubflowState.POISONED)


_C = ConnectionState
CONNECTION_TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    _C.HANDSHAKE: frozenset({_C.ESTABLISHED, _C.FAILED}),
    _C.ESTABLISHED: frozenset({_C.CLOSING, _C.CLOSED, _C.FAILED}),
    _C.CLOSING: frozenset({_C.CLOSED, _C.FAILED}),
    _C.CLOSED: frozenset(),
    _C.FAILED: frozenset(),
}

_S = SubflowState
_ENDED = frozenset({_S.CLOSED, _S.FAILED, _S.POISONED})
SUBFLOW_TRANSITIONS: dict[SubflowState, frozenset[SubflowState]] = {
    _S.HANDSHAKE: frozenset({_S.ESTABLISHED}) | _ENDED,
    _S.JOINING: frozenset({_S.ESTABLISHED}) | _ENDED,
    _S.ESTABLISHED: frozenset({_S.CLOSING}) | _ENDED,
    _S.CLOSING: _ENDED,
    _S.CLOSED: frozenset(),
    _S.FAILED: frozenset({_S.POISONED}),
    _S.POISONED: frozenset(),
}


def check_connection_transition(old: ConnectionState, new: ConnectionState) -> None:
    """Raise StateTransitionError unless CONNECTION_TRANSITIONS allows old -> new."""
    if new not in CONNECTION_TRANSITIONS[old]:
        raise StateTransitionError(f"connection state {old.value} -> {new.value}")


def check_subflow_transition(old: SubflowState, new: SubflowState) -> None:
    """Raise StateTransitionError unless SUBFLOW_TRANSITIONS allows old -> new."""
    if new not in SUBFLOW_TRANSITIONS[old]:
        raise StateTransitionError(f"subflow state {old.value} -> {new.value}")

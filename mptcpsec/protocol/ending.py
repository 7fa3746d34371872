"""How subflows and the connection end: close, path failure, poisoning, failure.

Closing (SPEC section 10.5): once both DATA_FINs are done every subflow sends CLOSE, and
the connection is closed when every subflow is. A path failure (FIN or RST without CLOSE,
a timeout) drops a subflow without blame; poisoning (SPEC section 10.4) also reports it
to the peer and refuses its address pair. Either way the subflow's flight is re-injected
(recovery.py). When no clean subflow is left the connection fails with an error naming
every subflow's fate. `Connection` inherits this mixin.
"""

from __future__ import annotations

from collections import deque

from ..crypto.keyschedule import Role
from ..wire.options import PoisonReason
from ..wire.records import close_spec, subflow_reset_spec
from .acks import ack_value
from .config import ConnectionConfig
from .events import ConnectionTerminated, DataReinjected, Event, SubflowClosed, SubflowPoisoned
from .poison import reason_name
from .recovery import Timers, reinject
from .states import ConnectionState
from .stream import ReassemblyBuffer, SendBuffer
from .subflow import Subflow, SubflowState


class Ending:
    """The ending paths of `Connection` (SPEC sections 10.4, 10.5)."""

    config: ConnectionConfig
    role: Role
    state: ConnectionState
    error: str | None
    subflows: dict[int, Subflow]
    sendbuf: SendBuffer | None
    recvbuf: ReassemblyBuffer | None
    timers: Timers
    _now: float
    _events: deque[Event]
    _fin_sent: bool
    _blocked_pairs: set[tuple[str, str]]

    @property
    def ended(self) -> bool:  # pragma: no cover - Connection's
        """Connection's: closed or failed (SPEC section 10.5)."""
        raise NotImplementedError

    def _set_state(self, new: ConnectionState,
                   event: Event | None = None) -> None:  # pragma: no cover - Connection's
        raise NotImplementedError

    def _best_subflow(self) -> Subflow | None:  # pragma: no cover - Connection's
        raise NotImplementedError

    def close_keys(self) -> None:  # pragma: no cover - Connection's
        """Connection's: erase every key (SPEC section 6.4)."""
        raise NotImplementedError

    def _maybe_close_subflows(self) -> None:
        """Both DATA_FINs done: send CLOSE on every subflow, then TCP FIN (SPEC 10.5)."""
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
            self._set_state(ConnectionState.CLOSED,
                            ConnectionTerminated(self._now, None, "closed"))
            self.close_keys()

    def _close_subflow(self, sub: Subflow) -> None:
        """CLOSE on a usable subflow (SPEC section 10.5)."""
        if sub.usable:
            sub.queue(close_spec(ack_value(self.recvbuf)))
            sub.close_sent = True
            sub.set_state(SubflowState.CLOSING)
            sub.flush_control()

    # ------------------------------------------------------------------ failure handling

    def _block(self, sub: Subflow) -> None:
        """The pair of a poisoned subflow may not join again, by policy (SPEC 10.4)."""
        if self.config.rejoin_poisoned == "never":
            if self.role is Role.CLIENT:
                self._blocked_pairs.add((sub.local[0], sub.remote[0]))
            else:
                self._blocked_pairs.add((sub.remote[0], sub.local[0]))

    def _poison(self, sub: Subflow, reason: PoisonReason, detail: str) -> None:
        """Drop the subflow, tell the peer on a clean one, re-send its flight (SPEC 10.4)."""
        if sub.state.ended:
            return
        name = reason_name(reason)
        was_joining = sub.state is SubflowState.JOINING
        sub.set_state(SubflowState.POISONED, f"{name}: {detail}")
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
            clean.queue(subflow_reset_spec(sub.id, reason))
        self._check_alive()

    def _teardown(self, sub: Subflow, reset: bool) -> None:
        """Stop using a subflow: keys wiped, buffers dropped, its flight re-injected."""
        r = reinject(sub, sub.stop(reset), self.sendbuf)
        if r.fin:
            self._fin_sent = False  # the DATA_FIN goes out again on a clean subflow
        if r.queued:
            self._events.append(DataReinjected(self._now, sub.id, r.queued,
                                               [(x.start, x.end) for x in r.ranges]))

    def _end_subflow(self, sub: Subflow, state: SubflowState, reason: str, clean: bool,
                     reset: bool = False) -> None:
        """A subflow ends without tampering: CLOSE, path failure (SPEC 10.5)."""
        if sub.state.ended:
            return
        sub.set_state(state, reason)
        self._events.append(SubflowClosed(self._now, sub.id, reason, clean))
        self._teardown(sub, reset=reset)
        if self.state is ConnectionState.HANDSHAKE and sub.initial:
            self._fail(f"subflow {sub.id} ended during the handshake",
                       error=f"key exchange failed: subflow {sub.id} {reason}")

    def _check_alive(self) -> None:
        """No usable subflow left and none joining: the connection fails (SPEC 10.4)."""
        if self.ended or self.state is ConnectionState.HANDSHAKE:
            return
        live = [s for s in self.subflows.values() if not s.state.ended]
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
        """The connection fails: every subflow reset, keys erased (SPEC 10.4, 10.5)."""
        if self.ended:
            return
        self.error = error
        self.timers.handshake = None
        for sub in self.subflows.values():
            if not sub.state.ended:
                sub.set_state(SubflowState.FAILED, sub.reason or reason)
                sub.rx.clear()
                sub.control.clear()
                sub.action = "reset" if not sub.out else "close"
        self._set_state(ConnectionState.FAILED, ConnectionTerminated(self._now, error, reason))
        self.close_keys()

    def _on_peer_reset(self, sid: int, reason: int) -> None:
        """MP_TCPRST + SUBFLOW: the peer dropped subflow `sid` (SPEC 10.4)."""
        target = self.subflows.get(sid)
        if target is None:
            return
        tampered = reason != PoisonReason.NONE
        report = SubflowPoisoned(self._now, sid, reason_name(reason),
                                 "reported by the peer over a clean subflow",
                                 reported_by_peer=True)
        if target.state.ended:
            # The subflow's RST may overtake this report on another path: it still says
            # the path was tampered with (and the pair must not rejoin).
            if tampered and target.state is SubflowState.FAILED:
                self._events.append(report)
                target.set_state(SubflowState.POISONED, reason_name(reason))
                if reason != PoisonReason.JOIN_FAILED:
                    self._block(target)
            return
        if tampered:
            self._events.append(report)
            was_joining = target.state is SubflowState.JOINING
            target.set_state(SubflowState.POISONED, reason_name(reason))
            if reason != PoisonReason.JOIN_FAILED and not was_joining:
                self._block(target)  # a failed join proves nothing about the pair
            self._teardown(target, reset=True)
        else:
            self._end_subflow(target, SubflowState.FAILED, "reset by the peer", clean=False,
                              reset=True)
        self._check_alive()

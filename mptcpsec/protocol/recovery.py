"""In-flight data, round-trip times, re-injection, and every deadline of the engine.

What was sent on a subflow stays in its flight until a DATA_ACK covers it; the ack also
times the path (SPEC section 10.3). When a subflow ends, its flight goes back to the send
buffer for the clean subflows (SPEC section 10.4). All deadlines live in `Timers`, in the
manner of wireguard-go's timers.go: the handshake timeout, the delayed ack, each join's
timeout and each subflow's progress timeout (SPEC sections 10.1, 10.2, 10.3, 10.5).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .stream import Range, SendBuffer

if TYPE_CHECKING:
    from .subflow import Subflow

#: Weight of a new RTT sample in the smoothed RTT (RFC 6298's alpha).
RTT_ALPHA = 0.125


class Timer(enum.Enum):
    HANDSHAKE = "handshake"  # the key exchange must finish (SPEC 10.1)
    JOIN = "join"  # a join must complete (SPEC 10.2)
    PROGRESS = "progress"  # a subflow holding unacknowledged data must hear back (10.5)
    ACK = "ack"  # a delayed DATA_ACK is due (SPEC 10.3)


@dataclass
class Timers:
    """The engine's deadlines; subflow deadlines are derived from the subflows."""

    subflow_timeout: float
    handshake: float | None = None
    ack: float | None = None

    @staticmethod
    def _waiting(sub: Subflow) -> bool:
        # A DATA_FIN in flight counts as data: its loss must end the path, not hang it.
        return bool(sub.inflight or sub.fin_inflight) and not sub.state.ended

    def next_deadline(self, subflows: Iterable[Subflow]) -> float | None:
        """The earliest deadline, or None when nothing is pending (SPEC section 10.5)."""
        deadlines = [d for d in (self.ack, self.handshake) if d is not None]
        subs = list(subflows)
        deadlines += [s.join_deadline for s in subs
                      if s.join_deadline is not None and not s.state.ended]
        deadlines += [s.last_progress + self.subflow_timeout for s in subs if self._waiting(s)]
        return min(deadlines) if deadlines else None

    def expired(self, now: float,
                subflows: dict[int, Subflow]) -> Iterator[tuple[Timer, Subflow | None]]:
        """Yield each timer due at `now`, in order, disarming it first.

        Lazy: the caller acts on each before the next is checked, so a subflow ended by one
        expiry is not reported again by another.

        SPEC section 10.5.
        """
        if self.handshake is not None and now >= self.handshake:
            self.handshake = None
            yield Timer.HANDSHAKE, None
        for sub in list(subflows.values()):
            if sub.join_deadline is not None and now >= sub.join_deadline:
                sub.join_deadline = None
                yield Timer.JOIN, sub
        for sub in list(subflows.values()):
            if self._waiting(sub) and now >= sub.last_progress + self.subflow_timeout:
                yield Timer.PROGRESS, sub
        if self.ack is not None and now >= self.ack:
            self.ack = None
            yield Timer.ACK, None


def on_sent(sub: Subflow, dsn: int, length: int, acked_base: int | None, now: float) -> None:
    """Data [dsn, dsn+length) went out on `sub`: track it, time it if the path is idle."""
    if sub.rtt_probe is None and acked_base is not None and dsn + length > acked_base:
        sub.rtt_probe = (dsn + length, now)
    if not sub.inflight and not sub.fin_inflight:
        sub.last_progress = now  # an idle path's progress clock starts now
    sub.inflight.append(Range(dsn, dsn + length))


def on_fin_sent(sub: Subflow, now: float) -> None:
    """Our DATA_FIN went out on `sub`: it is in flight like data (SPEC 10.5)."""
    if not sub.inflight:
        sub.last_progress = now  # an idle path's progress clock starts now
    sub.fin_inflight = True


def on_acked(subflows: Iterable[Subflow], sb: SendBuffer, data_ack: int, now: float) -> None:
    """A DATA_ACK moved the send buffer's base: drop covered flight, take RTT samples."""
    base = sb.base
    for s in subflows:
        while s.inflight and s.inflight[0].end <= base:
            s.inflight.popleft()
        if s.rtt_probe is not None and s.rtt_probe[0] <= base:
            # Round trip of this path as the sender sees it, relays and queues included.
            sample = now - s.rtt_probe[1]
            s.srtt = sample if s.srtt is None else (1 - RTT_ALPHA) * s.srtt + RTT_ALPHA * sample
            s.rtt = max(s.kernel_rtt, s.srtt)
            s.rtt_probe = None
        if s.fin_inflight and sb.fin_acked(data_ack):
            s.fin_inflight = False


def on_kernel_rtt(sub: Subflow, rtt: float) -> None:
    """The adapter read the socket's smoothed RTT (TCP_INFO)."""
    sub.kernel_rtt = rtt
    sub.rtt = max(rtt, sub.srtt or 0.0)


@dataclass(frozen=True)
class Reinjection:
    """What a subflow's end put back into the send buffer (SPEC section 10.4)."""

    queued: int  # bytes queued for re-sending
    ranges: list[Range]
    fin: bool  # our DATA_FIN was in flight there and must go out again


def reinject(sub: Subflow, ranges: list[Range], sb: SendBuffer | None) -> Reinjection:
    """Queue the ended subflow's flight for the clean subflows (DSNs are kept)."""
    fin = sub.fin_inflight
    sub.fin_inflight = False
    if sb is None:
        return Reinjection(0, ranges, fin)
    queued = sb.reinject(ranges)
    sub.reinjected_bytes += queued
    return Reinjection(queued, ranges, fin)

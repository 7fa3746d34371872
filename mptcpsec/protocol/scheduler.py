"""Packet schedulers: which subflow(s) carry the next chunk of connection data.

A scheduler sees only `SubflowView`s: whether the subflow can take data now, its RTT and
whether it is a backup. Backup subflows are offered only when no primary can be used.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .stream import SendBuffer

if TYPE_CHECKING:
    from .subflow import Subflow


@dataclass(frozen=True, slots=True)
class SubflowView:
    subflow_id: int
    rtt: float  # seconds; smoothed, from TCP_INFO when the adapter has it
    backup: bool
    send_space: int  # bytes the subflow accepts before its send queue is full


class Scheduler(abc.ABC):
    """Picks the subflows for the next chunk; returns [] when none can take data now."""

    name: str = "base"

    @abc.abstractmethod
    def pick(self, subflows: Sequence[SubflowView]) -> list[int]:
        """The subflow ids for the next chunk, [] if none can take it (SPEC section 10.3)."""

    @staticmethod
    def candidates(subflows: Sequence[SubflowView]) -> list[SubflowView]:
        """Usable primaries; the usable backups only when no primary is established.

        SPEC section 10.3.
        """
        primaries = [s for s in subflows if not s.backup]
        pool = primaries if primaries else list(subflows)
        return [s for s in pool if s.send_space > 0]


class LowestRttScheduler(Scheduler):
    """The subflow with the lowest RTT that has room (the default, like Linux MPTCP)."""

    name = "lowest-rtt"

    def pick(self, subflows: Sequence[SubflowView]) -> list[int]:
        """The lowest-RTT candidate (SPEC section 10.3)."""
        ready = self.candidates(subflows)
        if not ready:
            return []
        return [min(ready, key=lambda s: (s.rtt, s.subflow_id)).subflow_id]


class RoundRobinScheduler(Scheduler):
    """Each chunk to the next subflow in turn that has room."""

    name = "round-robin"

    def __init__(self) -> None:
        self._last = -1

    def pick(self, subflows: Sequence[SubflowView]) -> list[int]:
        """The next candidate in turn (SPEC section 10.3)."""
        ready = sorted(self.candidates(subflows), key=lambda s: s.subflow_id)
        if not ready:
            return []
        for s in ready:
            if s.subflow_id > self._last:
                self._last = s.subflow_id
                return [s.subflow_id]
        self._last = ready[0].subflow_id
        return [self._last]


class RedundantScheduler(Scheduler):
    """Every chunk on every usable subflow: lowest latency, no loss on a path failure."""

    name = "redundant"

    def pick(self, subflows: Sequence[SubflowView]) -> list[int]:
        """Every candidate: the chunk goes on all of them (SPEC section 10.3)."""
        return [s.subflow_id for s in self.candidates(subflows)]


SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls for cls in (LowestRttScheduler, RoundRobinScheduler, RedundantScheduler)
}


def make_scheduler(name: str) -> Scheduler:
    try:
        return SCHEDULERS[name]()
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r} (choose one of "
                         f"{', '.join(SCHEDULERS)})") from None


def signal_subflow(subflows: Iterable[Subflow]) -> Subflow | None:
    """The subflow for acks and reports: usable, lowest RTT, primaries first (SPEC 10.3).

    When none is usable (all closing or joining), any established one that can seal.
    """
    subs = list(subflows)
    usable = [s for s in subs if s.usable] or [s for s in subs if s.can_seal]
    if not usable:
        return None
    primaries = [s for s in usable if not s.backup] or usable
    return min(primaries, key=lambda s: (s.rtt, s.id))


def batches(sb: SendBuffer, subflows: Mapping[int, Subflow], scheduler: Scheduler,
            peer_edge: int, batch_bytes: int
            ) -> Iterator[tuple[list[Subflow], int, bytes | memoryview]]:
    """(subflows, DSN, data) for each batch to send now: re-injected bytes first, then new
    bytes below the peer's window edge (SPEC section 10.3).

    Lazy: the caller seals each batch before the next pick sees the subflows' send space.
    """
    for _ in range(10_000):  # bounded: each pass moves at least one byte or stops
        if not sb.pending_reinjection and sb.unsent == 0:
            return
        views = [SubflowView(s.id, s.rtt, s.backup, s.send_space)
                 for s in subflows.values() if s.usable]
        picks = scheduler.pick(views)
        if not picks:
            return
        max_len = max(1, min(batch_bytes, min(subflows[i].send_space for i in picks)))
        if not sb.pending_reinjection:
            new_room = peer_edge - sb.next_dsn
            if new_room <= 0:
                return
            max_len = min(max_len, new_room)
        chunk = sb.next_chunk(max_len)
        if chunk is None:
            return
        yield [subflows[i] for i in picks], chunk[0], chunk[1]

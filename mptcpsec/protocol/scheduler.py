"""Packet schedulers: which subflow(s) carry the next chunk of connection data.

A scheduler sees only `SubflowView`s: whether the subflow can take data now, its RTT and
whether it is a backup. Backup subflows are offered only when no primary can be used.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass


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
    def pick(self, subflows: Sequence[SubflowView]) -> list[int]: ...

    @staticmethod
    def candidates(subflows: Sequence[SubflowView]) -> list[SubflowView]:
        """Usable primaries; the usable backups only when no primary is established."""
        primaries = [s for s in subflows if not s.backup]
        pool = primaries if primaries else list(subflows)
        return [s for s in pool if s.send_space > 0]


class LowestRttScheduler(Scheduler):
    """The subflow with the lowest RTT that has room (the default, like Linux MPTCP)."""

    name = "lowest-rtt"

    def pick(self, subflows: Sequence[SubflowView]) -> list[int]:
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

"""Schedulers: lowest RTT first, round-robin, redundant; backups only without primaries."""

from __future__ import annotations

import pytest

from mptcpsec.protocol.scheduler import SubflowView, make_scheduler


def view(i: int, rtt: float, backup: bool = False, space: int = 1000) -> SubflowView:
    return SubflowView(i, rtt, backup, space)


def test_lowest_rtt_prefers_fast_path_with_room() -> None:
    s = make_scheduler("lowest-rtt")
    assert s.pick([view(0, 0.05), view(1, 0.01)]) == [1]
    assert s.pick([view(0, 0.05), view(1, 0.01, space=0)]) == [0]
    assert s.pick([view(0, 0.05, space=0), view(1, 0.01, space=0)]) == []


def test_backup_used_only_when_no_primary_is_left() -> None:
    for name in ("lowest-rtt", "round-robin", "redundant"):
        s = make_scheduler(name)
        assert s.pick([view(0, 0.05), view(1, 0.001, backup=True)]) == [0]
        # A full primary still holds the backup back.
        assert s.pick([view(0, 0.05, space=0), view(1, 0.001, backup=True)]) == []
        assert s.pick([view(1, 0.001, backup=True)]) == [1]


def test_round_robin_and_redundant() -> None:
    rr = make_scheduler("round-robin")
    subs = [view(0, 0.01), view(1, 0.01), view(2, 0.01)]
    assert [rr.pick(subs)[0] for _ in range(5)] == [0, 1, 2, 0, 1]
    assert make_scheduler("redundant").pick(subs) == [0, 1, 2]
    with pytest.raises(ValueError, match="choose one of"):
        make_scheduler("fastest")

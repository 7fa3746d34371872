"""A short soak on real sockets: connections echoing over two paths that fail and come
back; nothing lost, nothing stuck, memory within bounds (`make soak` runs the long one)."""

from __future__ import annotations

import pytest

from mptcpsec.lab.soak import SoakConfig, run_soak


@pytest.mark.network
def test_short_soak_loses_nothing() -> None:
    res = run_soak(SoakConfig(connections=12, duration=7, fail_every=1.5, down_for=0.5,
                              sample_every=1.0, subflow_timeout=3.0))
    print("\n" + res.table())
    assert res.ok, (res.failed[:3], res.lost_bytes, res.stuck, res.corrupted)
    assert res.path_failures >= 2 and res.rejoins >= 12
    assert res.verified_bytes > 10_000_000
    warm = res.samples[1].server_rss_kib
    assert res.samples[-1].server_rss_kib - warm < 48 * 1024

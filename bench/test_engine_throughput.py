"""The engine alone (two sans-I/O connections joined in memory): CPU cost per byte.

Grouped by record size; within a group the rows are subflow counts and algorithms.
`extra_info` has each side's CPU seconds per GB, which is what the transfer bench's
figures over sockets are made of, less the kernel and the event loop.
"""

from __future__ import annotations

import pytest

from mptcpsec.perf.engine import engine_transfer

NBYTES = 32_000_000
CELLS = [(rec, sf, alg) for rec in (16384, 65519) for sf in (1, 2)
         for alg in ("aes-128-gcm", "chacha20-poly1305")]


@pytest.mark.parametrize(("rec", "subflows", "alg"), CELLS,
                         ids=[f"{r}B-{s}sf-{a}" for r, s, a in CELLS])
def test_engine_one_way(benchmark, rec: int, subflows: int, alg: str) -> None:
    results = []

    def run() -> None:
        results.append(engine_transfer(NBYTES, subflows, alg, rec))

    benchmark.group = f"engine, {rec} B records"
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    best = min(results, key=lambda r: r.client_seconds + r.server_seconds)
    benchmark.extra_info["client_s_per_GB"] = round(best.client_s_per_GB, 3)
    benchmark.extra_info["server_s_per_GB"] = round(best.server_s_per_GB, 3)
    benchmark.extra_info["MBps"] = round(NBYTES / benchmark.stats.stats.median / 1e6, 1)

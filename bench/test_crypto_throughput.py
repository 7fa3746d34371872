"""Per-record AEAD throughput, every implementation side by side in one run.

Benchmarks are grouped by (algorithm, operation, record size); within a group the rows
are the C core batched, the C core per call, `cryptography` per call and, for
ChaCha20-Poly1305, pynacl. `mptcpsec bench crypto` adds `openssl speed` to the same table.
"""

from __future__ import annotations

import pytest

from mptcpsec.crypto import Algorithm
from mptcpsec.perf.crypto import OPS, SIZES, applicable, make_operation

IMPLS = ("core-batch", "core", "cryptography", "pynacl")
CELLS = [(alg, op, size, impl) for alg in Algorithm for op in OPS for size in SIZES
         for impl in IMPLS if applicable(impl, alg)]


@pytest.mark.parametrize(("alg", "op", "size", "impl"), CELLS,
                         ids=[f"{a.value}-{o}-{s}-{i}" for a, o, s, i in CELLS])
def test_aead(benchmark, alg: Algorithm, op: str, size: int, impl: str) -> None:
    run, nbytes = make_operation(impl, op, alg, size)
    benchmark.group = f"{alg.value} {op} {size} B"
    benchmark.extra_info["bytes_per_call"] = nbytes
    benchmark.pedantic(run, rounds=30, warmup_rounds=2)
    benchmark.extra_info["MBps"] = round(nbytes / benchmark.stats.stats.median / 1e6, 1)

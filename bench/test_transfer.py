"""Bulk transfer over loopback sockets, every peer against the same sink process.

The pytest-benchmark view of `mptcpsec bench transfer`: 32 MB per round, the sinks in a
separate process started once for the module (TLS pinned to AES-128-GCM there).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator

import pytest

from mptcpsec.perf.peers import PeerKeys, kernel_mptcp_available, payload_block
from mptcpsec.perf.procs import OPENSSL_AES128_CONF, ServerProcess
from mptcpsec.perf.transfer import TransferCase, _one, _server_spec

NBYTES = 32_000_000
CASES = [TransferCase("mptcpsec-1", "mptcpsec", 1), TransferCase("mptcpsec-2", "mptcpsec", 2),
         TransferCase("mptcpsec-2-64k", "mptcpsec", 2, max_record=65519),
         TransferCase("tls", "tls"), TransferCase("tcp", "tcp"),
         TransferCase("kernel-mptcp", "kernel-mptcp")]


@pytest.fixture(scope="module")
def sinks() -> Iterator[tuple[ServerProcess, PeerKeys]]:
    psk = os.urandom(32)
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "openssl.cnf")
        with open(conf, "w", encoding="ascii") as f:
            f.write(OPENSSL_AES128_CONF)
        with ServerProcess(_server_spec(CASES, psk), env={"OPENSSL_CONF": conf}) as server:
            yield server, PeerKeys(psk)


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_one_way_bulk(benchmark, sinks, case: TransferCase) -> None:
    if case.peer == "kernel-mptcp" and not kernel_mptcp_available():
        pytest.skip("the kernel has no MPTCP")
    server, keys = sinks
    block = payload_block(16 << 20)
    loop = asyncio.new_event_loop()
    try:
        def run() -> None:
            loop.run_until_complete(_one(case, server.ready, keys, block, NBYTES))

        benchmark.group = f"one-way bulk, {NBYTES // 1_000_000} MB over loopback"
        benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    finally:
        loop.close()
    benchmark.extra_info["MBps"] = round(NBYTES / benchmark.stats.stats.median / 1e6, 1)

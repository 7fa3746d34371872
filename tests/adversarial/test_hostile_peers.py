"""Hostile peers on real sockets: each kind ends by a timeout or a limit, memory stays
bounded, and a well-behaved connection beside them keeps working (and its throughput,
measured with the hostile load in another process).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time

import pytest

from mptcpsec.aio.api import connect, serve
from mptcpsec.crypto.keyschedule import Role, Secret
from mptcpsec.crypto.psk import PskConfig
from mptcpsec.lab.soak import hostile_process_main, rss_kib, run_hostile
from mptcpsec.protocol.config import ConnectionConfig
from mptcpsec.protocol.endpoint import ServerEndpoint
from mptcpsec.protocol.events import RefusalReason

from ..e2e.harness import HOSTS, Lab, echo_handler, echo_transfer, free_port
from .wire_attacks import run_retrying

pytestmark = pytest.mark.network
TIMEOUT = 1.0  # the server's handshake timeout in these tests


def cfg(**kw) -> ConnectionConfig:
    return ConnectionConfig(key_exchange="psk", handshake_timeout=TIMEOUT,
                            psk=PskConfig(Role.CLIENT, Secret(b"\x42" * 32)), **kw)


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def echo_once(addr, config: ConnectionConfig, n: int = 200_000) -> bytes:
    from mptcpsec.aio.api import Path

    stream = await connect([Path(addr)], config)
    data = os.urandom(n)
    stream.write(data)
    stream.close()
    got = await stream.read()
    await stream.wait_closed(5)
    assert got == data
    return got


@pytest.mark.parametrize("kind,count", [("oversized", 100), ("trickle", 30),
                                        ("stalled-handshake", 150), ("flood", 1500)])
def test_hostile_kind_ends_by_timeout_or_limit(kind: str, count: int) -> None:
    async def main():
        server = await serve(echo_handler, [(HOSTS[0], free_port())], cfg())
        addr = server.addresses[0]
        rss0 = rss_kib()
        peak = {"pending": 0, "connections": 0}

        async def watch() -> None:
            while True:
                peak["pending"] = max(peak["pending"], len(server.endpoint._pending))
                peak["connections"] = max(peak["connections"], len(server.endpoint.connections))
                await asyncio.sleep(0.05)

        watcher = asyncio.ensure_future(watch())
        try:
            hostile = asyncio.ensure_future(run_hostile(kind, addr, count, concurrency=count,
                                                        hold=TIMEOUT + 4))
            await asyncio.sleep(0.3)
            await echo_once(addr, cfg())  # a good client is served during the attack
            res = await hostile
            await echo_once(addr, cfg())  # and after it
            server.endpoint.forget_ended()
            return res, server.endpoint, rss_kib() - rss0, peak
        finally:
            watcher.cancel()
            server.close()

    res, endpoint, grown, peak = run(main())
    assert res.attempts == count
    assert peak["pending"] <= endpoint.max_pending
    if kind == "flood":
        # Connections past the kernel's accept queue never reach the server (a SYN-flood
        # matter for the kernel); every one that did was reset by the pending timeout.
        assert res.reset_by_server + res.still_open == count
        assert res.reset_by_server >= 100 and peak["pending"] >= 100
    else:
        assert res.reset_by_server == count and res.still_open == 0
    # Oversized headers are refused at once; the rest wait for the handshake timeout
    # (plus the pending-socket sweep, every 0.5 s).
    limit = 1.0 if kind == "oversized" else TIMEOUT + 1.5
    assert kind == "flood" or res.max_seconds_open < limit, res
    assert not endpoint._pending and not endpoint.connections
    assert grown < 64 * 1024, f"RSS grew by {grown} KiB"


def test_join_flood_with_bad_authentication_hits_the_limit() -> None:
    async def main():
        config = cfg(max_join_attempts=64)
        server = await serve(echo_handler, [(HOSTS[0], free_port())], config)
        addr = server.addresses[0]
        from mptcpsec.aio.api import Path

        try:
            stream = await connect([Path(addr)], config)
            conn = next(iter(server.drivers.values())).conn
            token = ServerEndpoint.token_of(conn)  # sent in clear by every join: public
            res = await run_hostile("bad-join", addr, 300, concurrency=100, hold=TIMEOUT + 3,
                                    token=token)
            data = os.urandom(300_000)  # the good connection is untouched
            stream.write(data)
            got = await stream.readexactly(len(data))
            stream.close()
            await stream.wait_closed(5)
            return res, conn, got == data, [e.code for e in server.endpoint.refused]
        finally:
            server.close()

    res, conn, intact, refused = run(main())
    assert intact
    assert res.reset_by_server == res.attempts == 300
    assert conn.join_failures >= 64  # failed joins (bad MAC, timeout) are bounded
    assert len(conn.subflows) <= 1 + 64  # one failed join record per allowed attempt
    assert RefusalReason.TOO_MANY_FAILED_JOINS in refused


def test_good_connection_keeps_its_throughput_under_hostile_load(record_property) -> None:
    """Echo throughput of a 2-path connection alone, then beside a hostile process."""
    nbytes = 40_000_000

    async def with_lab(load: bool) -> float:
        config = ConnectionConfig(key_exchange="split-path", handshake_timeout=TIMEOUT,
                                  scheduler="round-robin")
        async with Lab(config, npaths=2) as lab:
            procs = []
            if load:
                mp = multiprocessing.get_context("spawn")
                q = mp.Queue()
                for kind, n in (("flood", 3000), ("stalled-handshake", 400), ("trickle", 200)):
                    p = mp.Process(target=hostile_process_main,
                                   args=(kind, (HOSTS[0], lab.port), n, 300, 4.0, None, q))
                    p.start()
                    procs.append(p)
                await asyncio.sleep(1.0)  # the load is on before we measure
            t0 = time.perf_counter()
            out = await echo_transfer(lab, nbytes)
            elapsed = time.perf_counter() - t0
            for p in procs:  # the load ran throughout the measurement; stop it now
                p.terminate()
                p.join(10)
            assert out.intact and out.client_error is None
            return 2 * nbytes / elapsed / 1e6

    alone = run_retrying(lambda: with_lab(False), 90)
    loaded = run_retrying(lambda: with_lab(True), 90)
    record_property("throughput_alone_MBps", round(alone, 1))
    record_property("throughput_loaded_MBps", round(loaded, 1))
    print(f"\necho throughput alone {alone:.1f} MB/s, beside hostile load {loaded:.1f} MB/s "
          f"(ratio {loaded / alone:.2f})")
    assert loaded > 0.2 * alone

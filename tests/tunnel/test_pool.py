"""The entry's pool: a taken connection is replaced after its first answer, not at once
(SPEC section 11.5), so the replacement's key exchange stays off the request's path."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from mptcpsec.aio.api import Path
from mptcpsec.protocol.config import ConnectionConfig
from mptcpsec.tunnel.entry import Tunnel, TunnelOptions


def _tunnel(**kw: object) -> tuple[Tunnel, list[float]]:
    opts = TunnelOptions(paths=[Path(("127.0.0.1", 9))], config=ConnectionConfig(), pool=1,
                         join_delay=0.05, **kw)  # type: ignore[arg-type]
    tunnel = Tunnel(opts)
    refills: list[float] = []
    tunnel._refill = lambda: refills.append(time.monotonic())  # type: ignore[method-assign]
    return tunnel, refills


def _ready() -> object:
    return SimpleNamespace(connection=SimpleNamespace(ended=False, error=None))


def test_a_taken_pooled_connection_is_replaced_later() -> None:
    async def run() -> None:
        tunnel, refills = _tunnel()
        stream = _ready()
        tunnel._pool.append((time.monotonic(), stream))  # type: ignore[arg-type]
        taken = time.monotonic()
        assert await tunnel._take() is stream
        assert refills == [] and tunnel.totals["pool_hits"] == 1
        await asyncio.sleep(0.2)  # the fallback when no first answer comes
        assert len(refills) == 1 and refills[0] - taken >= 0.04

    asyncio.run(run())


def test_refill_at_once_when_asked() -> None:
    async def run() -> None:
        tunnel, refills = _tunnel(refill_after_first_byte=False)
        tunnel._pool.append((time.monotonic(), _ready()))  # type: ignore[arg-type]
        await tunnel._take()
        assert len(refills) == 1

    asyncio.run(run())

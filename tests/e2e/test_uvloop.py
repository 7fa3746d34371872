"""The asyncio adapter on uvloop's event loop (its transports are not asyncio.Transport
subclasses): the echo and the poisoned-subflow scenario, as on the standard loop."""

from __future__ import annotations

import asyncio

import pytest

from mptcpsec.protocol.config import ConnectionConfig
from mptcpsec.protocol.events import SubflowPoisoned

from .harness import Lab, bitflip_after, echo_transfer

uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (pip install "
                             "mptcpsec[uvloop]; the test extra has it)")

MB = 1_000_000


def run_on_uvloop(coro, timeout: float = 90):
    loop = uvloop.new_event_loop()
    try:
        async def checked():
            assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
            return await asyncio.wait_for(coro, timeout)

        return loop.run_until_complete(checked())
    finally:
        loop.close()


def test_echo_on_uvloop() -> None:
    async def main():
        cfg = ConnectionConfig(key_exchange="split-path", scheduler="round-robin")
        async with Lab(cfg, npaths=2) as lab:
            return await echo_transfer(lab, 8 * MB)

    out = run_on_uvloop(main())
    assert out.client_error is None and out.intact
    assert all(s["bytes_sent"] for s in out.client_stats)


def test_poisoned_subflow_on_uvloop() -> None:
    fired: list[int] = []

    async def main():
        cfg = ConnectionConfig(key_exchange="split-path", scheduler="round-robin")
        async with Lab(cfg, npaths=2, relays={1: {"c2s": bitflip_after(1 * MB, fired=fired)}}) \
                as lab:
            return await echo_transfer(lab, 8 * MB)

    out = run_on_uvloop(main())
    assert fired
    assert out.client_error is None and out.intact
    server = [e for e in out.server_events if isinstance(e, SubflowPoisoned)]
    assert len(server) == 1 and server[0].subflow_id == 1
    assert server[0].reason == "authentication"
    assert "data_reinjected" in out.kinds()

"""A join on a fast path may overtake the key exchange's last message on a slow path."""

from __future__ import annotations

import asyncio

import pytest

from mptcpsec.aio.api import Path, connect, serve
from mptcpsec.lab.proxy import Proxy
from mptcpsec.lab.scenarios import Scenario, make_configs, wait_joined


async def _echo(stream) -> None:
    while data := await stream.read(65536):
        stream.write(data)
        await stream.drain()


@pytest.mark.parametrize("key_exchange", ["tls", "psk"])
def test_join_on_a_faster_path_waits_for_the_handshake(key_exchange: str) -> None:
    async def main() -> tuple[bool, list[str], bytes]:
        server_cfg, client_cfg = make_configs(Scenario(key_exchange=key_exchange))
        server = await serve(_echo, [("127.0.0.1", 0), ("127.0.0.2", 0)], server_cfg)
        slow = Proxy(("127.0.0.1", 0), server.addresses[0], delay_ms=40)
        fast = Proxy(("127.0.0.2", 0), server.addresses[1])
        try:
            await slow.start()
            await fast.start()
            stream = await connect([Path(slow.address, local="127.0.0.1"),
                                    Path(fast.address, local="127.0.0.2")], client_cfg)
            joined = await wait_joined(stream, 2, timeout=3)
            stream.write(b"ping")
            back = await stream.readexactly(4)
            kinds = [e.kind for d in server.drivers.values() for e in d.events]
            stream.close()
            return joined, kinds, back
        finally:
            await slow.close()
            await fast.close()
            server.close()

    joined, kinds, back = asyncio.run(asyncio.wait_for(main(), 30))
    assert joined and back == b"ping"
    assert "join_refused" not in kinds

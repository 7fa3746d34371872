"""The server resets silent sockets at the endpoint's deadline, with no polling task."""

from __future__ import annotations

import asyncio
import time

from mptcpsec.aio.api import serve
from mptcpsec.protocol.config import ConnectionConfig

from .harness import echo_handler


def test_silent_socket_is_reset_at_its_deadline() -> None:
    timeout = 0.6

    async def main() -> tuple[float, bool, bool, bool]:
        cfg = ConnectionConfig(handshake_timeout=timeout)
        srv = await serve(echo_handler, [("127.0.0.1", 0)], cfg)
        try:
            idle_without_timer = srv.sweep_at is None
            reader, writer = await asyncio.open_connection(*srv.addresses[0])
            start = time.monotonic()
            for _ in range(100):  # bounded: until the server has accepted the socket
                if srv.endpoint.next_deadline() is not None:
                    break
                await asyncio.sleep(0.01)
            at, deadline = srv.sweep_at, srv.endpoint.next_deadline()
            armed_at_deadline = at is not None and deadline is not None \
                and abs(at - deadline) < 1e-6
            try:
                got = await asyncio.wait_for(reader.read(100), 5)
            except ConnectionResetError:
                got = b""  # the server aborts: a reset or an end of stream
            elapsed = time.monotonic() - start
            writer.close()
            return elapsed, idle_without_timer, armed_at_deadline, got == b""
        finally:
            srv.close()
            await srv.wait_closed()

    elapsed, idle, armed, eof = asyncio.run(main())
    assert idle, "an idle server has no timer armed"
    assert armed, "one timer, at the endpoint's next deadline"
    assert eof
    assert timeout - 0.05 <= elapsed < timeout + 0.3, elapsed

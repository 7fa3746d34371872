"""Ctrl-C on `serve` while a client's sockets are full: what the server queued before it
closed (the echo, its DATA_FIN) still arrives; sockets are flushed, not reset."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from mptcpsec.aio.api import Path, connect
from mptcpsec.protocol.config import ConnectionConfig

from .conftest import Processes, free_port, wait_listening


async def _client(port: int, server_pid_signal  # type: ignore[no-untyped-def]
                  ) -> tuple[int, int, bool, str | None]:
    stream = await connect([Path(("127.0.0.1", port)), Path(("127.0.0.2", port))],
                           ConnectionConfig(), timeout=15)
    protos = list(stream._driver.protocols.values())
    t0 = time.monotonic()
    while len(stream._driver.protocols) < 2 and time.monotonic() - t0 < 5:
        await asyncio.sleep(0.05)
    protos = list(stream._driver.protocols.values())
    for p in protos:  # stop reading: the server's echo piles up in its socket buffers
        p.transport.pause_reading()
    chunk = b"x" * 65536
    sent = 0
    for _ in range(400):  # bounded: until the server stops taking data
        stream.write(chunk)
        sent += len(chunk)
        try:
            await asyncio.wait_for(stream.drain(), 0.5)
        except asyncio.TimeoutError:
            break
    server_pid_signal()
    await asyncio.sleep(1.2)  # past the server's grace: it fast-closes behind full buffers
    for p in protos:
        if not p.transport.is_closing():
            p.transport.resume_reading()
    got, eof = 0, False
    with contextlib.suppress(Exception):
        for _ in range(10_000):
            data = await asyncio.wait_for(stream.read(1 << 20), 10)
            if not data:
                eof = True
                break
            got += len(data)
    with contextlib.suppress(Exception):
        await stream.wait_closed(5)
    return sent, got, eof, stream.error


def test_fastclose_reaches_a_client_whose_buffers_are_full(procs: Processes) -> None:
    port = free_port()
    server = procs.start("serve", "-l", f"127.0.0.1:{port}", "-l", f"127.0.0.2:{port}",
                         "--grace", "0.3")
    wait_listening("127.0.0.1", port, proc=server)
    wait_listening("127.0.0.2", port, proc=server)
    sent, got, eof, error = asyncio.run(asyncio.wait_for(
        _client(port, lambda: server.send_signal(signal.SIGINT)), 60))
    _, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert "shutting down: closing 1 live connection" in err, err
    # Everything the server queued behind the full buffers arrived: the whole echo and
    # the authenticated end of stream (before the fix: ~0.2 MB of 4 MB, no end of stream).
    assert sent > 1_000_000 and got == sent and eof, (sent, got, eof, error)
    assert error is None or "TCP reset" not in error, error

"""stdin -> connection, connection -> stdout, like netcat (`connect`, `serve --stdio`).

A failed write to stdout (/dev/full, a pipe whose reader left) ends the connection with a
non-zero exit instead of losing data silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from typing import Any

from ..errors import MptcpsecError
from ._common import CliError


class _OutputError(Exception):
    """Writing what the server sent to stdout failed."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _silence_stdout() -> None:
    """After a failed stdout write, point it at /dev/null so the interpreter's final flush
    does not fail a second time with a traceback."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


async def relay_stdio(stream: Any, stop: asyncio.Event) -> int:
    """stdin -> stream (DATA_FIN at EOF); stream -> stdout until the peer's DATA_FIN.

    The directions close independently (half-close), so a file sent while the peer has
    already finished its own is delivered whole. Only an interactive stdin (a terminal)
    is closed as soon as the peer has finished: there is no more answer to wait for.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
    interactive = _isatty(sys.stdin)

    def read_stdin() -> None:  # a daemon thread: never holds the process at exit
        fd = sys.stdin.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            done = threading.Event()

            def deliver(chunk: bytes = data, done: threading.Event = done) -> None:
                task = loop.create_task(queue.put(chunk))  # created on the loop's thread
                task.add_done_callback(lambda _: done.set())

            try:
                loop.call_soon_threadsafe(deliver)
            except RuntimeError:  # the loop has closed: nobody reads any more
                return
            done.wait()  # back-pressure: one chunk in flight beyond the queue
            if not data:
                return

    threading.Thread(target=read_stdin, daemon=True).start()

    async def upstream() -> None:
        while data := await queue.get():
            stream.write(data)
            await stream.drain()
        stream.close()

    async def downstream() -> None:
        out = sys.stdout.buffer
        while data := await stream.read(65536):
            try:
                out.write(data)
                out.flush()
            except OSError as exc:  # /dev/full, a closed pipe (`| head`)
                raise _OutputError(exc) from None

    up = asyncio.ensure_future(upstream())
    down = asyncio.ensure_future(downstream())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([down, stopper], return_when=asyncio.FIRST_COMPLETED)
        if down.done() and not stop.is_set() and down.exception() is None and not interactive:
            await asyncio.wait([up, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (up, down, stopper):
            t.cancel()
        results = await asyncio.gather(up, down, return_exceptions=True)
    if stop.is_set():
        stream.abort("interrupted")
        return 130
    for r in results:
        if isinstance(r, _OutputError):
            stream.abort("could not write the received data to stdout")
            _silence_stdout()
            raise CliError(f"cannot write stdout: {r.exc.strerror or r.exc}; connection "
                           "closed") from None
        if isinstance(r, MptcpsecError):
            raise r
    with contextlib.suppress(MptcpsecError):
        stream.close()  # interactive: our direction ends with the peer's
    try:
        await stream.wait_closed(5)
    except asyncio.TimeoutError:
        raise CliError("the peer did not complete the close within 5 s") from None
    return 0


def _isatty(f: Any) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError, OSError):
        return False

"""Both directions between an mptcpsec stream and a plain TCP (or pipe) side.

Half-close is preserved: an EOF on one side becomes a FIN (DATA_FIN on mptcpsec, a TCP
shutdown of the write side) on the other, and the other direction keeps flowing. A reset
is propagated: a TCP RST becomes MP_FASTCLOSE (`stream.abort`), a failed or aborted
mptcpsec connection becomes a TCP RST (SO_LINGER 0). SPEC §Converter, relaying.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..aio.api import MptcpsecStream
from ..errors import MptcpsecError

CHUNK = 1 << 16


@dataclass
class RelayResult:
    to_stream: int = 0
    from_stream: int = 0
    #: "" for a clean end of both directions; else who ended it and how.
    error: str = ""


def reset_writer(writer: asyncio.StreamWriter) -> None:
    """Close a TCP side with an RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _write_eof(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()


async def relay(stream: MptcpsecStream, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter, idle_timeout: float | None = None,
                on_bytes: Callable[[int, int], None] | None = None,
                before_down: Callable[[], Awaitable[bool]] | None = None) -> RelayResult:
    """Relay until both directions ended, a reset, or `idle_timeout` without a byte.

    `on_bytes(to_stream, from_stream)` is called per chunk (live counters).
    `before_down()` runs before anything is passed from the stream to the TCP side (the
    gateway's status when the request was pipelined); False resets both sides.
    """
    loop = asyncio.get_running_loop()
    result = RelayResult()
    last = [loop.time()]
    failed = asyncio.Event()

    async def up() -> None:  # TCP side -> mptcpsec
        while True:
            try:
                data = await reader.read(CHUNK)
            except (ConnectionResetError, OSError) as exc:
                result.error = result.error or f"tcp side reset ({exc.__class__.__name__})"
                stream.abort("tcp side reset the connection")
                failed.set()
                return
            if not data:
                with contextlib.suppress(MptcpsecError):
                    stream.close()  # DATA_FIN after the last byte: our half-close
                return
            last[0] = loop.time()
            result.to_stream += len(data)
            if on_bytes is not None:
                on_bytes(len(data), 0)
            try:
                stream.write(data)
                await stream.drain()
            except MptcpsecError as exc:
                result.error = result.error or f"mptcpsec: {exc}"
                failed.set()
                return

    async def down() -> None:  # mptcpsec -> TCP side
        if before_down is not None and not await before_down():
            result.error = result.error or "refused by the gateway"
            stream.abort("refused by the gateway")
            failed.set()
            return
        while True:
            try:
                data = await stream.read(CHUNK)
            except MptcpsecError as exc:
                result.error = result.error or f"mptcpsec: {exc}"
                failed.set()
                return
            if not data:
                if stream.error is not None:
                    result.error = result.error or f"mptcpsec: {stream.error}"
                    failed.set()
                    return
                _write_eof(writer)
                return
            last[0] = loop.time()
            result.from_stream += len(data)
            if on_bytes is not None:
                on_bytes(0, len(data))
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError) as exc:
                result.error = result.error or f"tcp side reset ({exc.__class__.__name__})"
                stream.abort("tcp side reset the connection")
                failed.set()
                return

    async def idle() -> None:
        assert idle_timeout is not None
        while True:
            await asyncio.sleep(max(0.05, min(idle_timeout / 4, 5.0)))
            if loop.time() - last[0] > idle_timeout:
                result.error = result.error or f"idle for {idle_timeout:g} s"
                stream.abort(f"idle for {idle_timeout:g} s")
                failed.set()
                return

    tasks = [loop.create_task(up()), loop.create_task(down())]
    watch = [loop.create_task(failed.wait())]
    if idle_timeout:
        watch.append(loop.create_task(idle()))
    both = asyncio.gather(*tasks)
    both.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, not logged
    try:
        await asyncio.wait([both, *watch], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (*tasks, *watch):
            t.cancel()
        for t in (*tasks, *watch):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
    if result.error:
        reset_writer(writer)
    else:
        writer.close()
    return result

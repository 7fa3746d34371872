"""Streamed `connect --verify` / `--send`: random data generated and hashed chunk by chunk,
so a 2 GB check holds one chunk in memory and the event loop (and Ctrl-C) stays live."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import MptcpsecError

CHUNK = 64 * 1024


@dataclass
class StreamedRun:
    """What one streamed transfer did; the fields `connect --json` reports."""

    total: int
    echo: bool
    sent: int = 0
    received: int = 0
    outcome: str = "completed"  # completed | aborted | stalled
    error: str | None = None
    hint: str | None = None
    first_difference: int | None = None
    sha_sent: Any = field(default_factory=hashlib.sha256)
    sha_back: Any = field(default_factory=hashlib.sha256)
    _pending: bytearray = field(default_factory=bytearray)  # sent, not yet echoed back

    @property
    def intact(self) -> bool:
        if self.outcome != "completed" or self.sent != self.total:
            return False
        if not self.echo:
            return True
        return self.received == self.sent and self.first_difference is None


async def transfer(stream: Any, total: int, *, echo: bool, stall_timeout: float,
                   progress: Any = None) -> StreamedRun:
    """Write `total` random bytes then DATA_FIN; with `echo`, read and compare the echo as
    it comes (the bytes in flight are kept until echoed: at most the connection's window),
    else read and count whatever the server sends (a server that echoes is named)."""
    loop = asyncio.get_running_loop()
    run = StreamedRun(total, echo)
    last = {"t": loop.time()}

    async def writer() -> None:
        while run.sent < total:
            chunk = os.urandom(min(CHUNK, total - run.sent))
            run.sha_sent.update(chunk)
            if echo:
                run._pending += chunk
            stream.write(chunk)
            run.sent += len(chunk)
            await stream.drain()
            last["t"] = loop.time()
            if progress is not None:
                progress(run.sent, run.received)
        stream.close()

    async def reader() -> None:
        while data := await stream.read(CHUNK):
            last["t"] = loop.time()
            if echo:
                expected = bytes(run._pending[:len(data)])
                if run.first_difference is None and expected != data:
                    run.first_difference = run.received + next(
                        (i for i, (a, b) in enumerate(zip(expected, data, strict=False)) if a != b),
                        min(len(expected), len(data)))
                del run._pending[:len(data)]
            run.sha_back.update(data)
            run.received += len(data)
            if progress is not None:
                progress(run.sent, run.received)

    wt = loop.create_task(writer())
    rt = loop.create_task(reader())
    try:
        while not rt.done():
            await asyncio.wait([rt], timeout=0.25)
            if wt.done() and not wt.cancelled() and wt.exception() is not None:
                run.outcome, run.error = "aborted", str(wt.exception())
                break
            if loop.time() - last["t"] > stall_timeout and not rt.done():
                run.outcome = "stalled"
                run.error = f"nothing moved for {stall_timeout:g} s"
                break
        if rt.done() and not rt.cancelled() and rt.exception() is not None:
            run.outcome, run.error = "aborted", str(rt.exception())
    finally:
        for t in (wt, rt):
            t.cancel()
        await asyncio.gather(wt, rt, return_exceptions=True)
    if not echo and run.received:
        run.hint = (f"the server sent {run.received:,} bytes back: it echoes; use --verify, "
                    "or run `mptcpsec serve --discard` for --send")
        if run.outcome == "stalled":
            run.error = f"{run.error}; {run.hint}"
    if run.outcome == "completed":
        run.error = stream.error
        if run.error is not None:
            run.outcome = "aborted"
        elif echo and run.received < run.sent:
            run.outcome, run.error = "aborted", "the echo ended early"
        else:
            with contextlib.suppress(MptcpsecError, asyncio.TimeoutError):
                await stream.wait_closed(3)
    return run

"""A thin asyncio driver for key exchanges alone, for tests, demos and experiments.

Each handshake message travels as one plaintext HANDSHAKE record (header from
``mptcpsec.wire.header``, no options, no tag). The connection engine drives the sans-I/O
objects itself; this helper only exists so a key exchange can run over real sockets alone.
Records that arrive after the exchange ends may be consumed by its readers, so use it where
the handshake is all that the sockets carry (or the peer waits for a reply first).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from mptcpsec.crypto.kx import MAX_MESSAGE_LEN, KeyExchange, KeyExchangeResult, Step
from mptcpsec.errors import KeyExchangeError, RecordError
from mptcpsec.wire.header import HEADER_LEN, RecordHeader, RecordType

Path = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def frame_handshake(message: bytes) -> bytes:
    """One plaintext HANDSHAKE record carrying ``message``."""
    if len(message) > MAX_MESSAGE_LEN:
        raise KeyExchangeError(f"handshake message of {len(message)} bytes is too large")
    header = RecordHeader(type=RecordType.HANDSHAKE, flags=0, opt_len=0, body_len=len(message))
    return header.pack() + message


def parse_handshake_record(record: bytes) -> bytes:
    """The body of a complete plaintext HANDSHAKE record (header checked)."""
    header = RecordHeader.unpack(record)
    if header.type != RecordType.HANDSHAKE or header.opt_len != 0:
        raise KeyExchangeError(f"expected a HANDSHAKE record, got type {header.type}")
    if header.body_len > MAX_MESSAGE_LEN or len(record) != header.record_len:
        raise KeyExchangeError("HANDSHAKE record has a bad length")
    return record[HEADER_LEN:]


async def read_handshake_message(reader: asyncio.StreamReader) -> bytes:
    """Read exactly one HANDSHAKE record and return its body."""
    head = await reader.readexactly(HEADER_LEN)
    try:
        header = RecordHeader.unpack(head)
    except RecordError as exc:
        raise KeyExchangeError(f"bad record header during key exchange: {exc}") from None
    if header.type != RecordType.HANDSHAKE or header.opt_len != 0:
        raise KeyExchangeError(f"expected a HANDSHAKE record, got type {header.type}")
    if header.body_len > MAX_MESSAGE_LEN:
        raise KeyExchangeError(f"HANDSHAKE record of {header.body_len} bytes is too large")
    return await reader.readexactly(header.body_len)


async def _send(step: Step, paths: Sequence[Path]) -> None:
    for path, message in step.send:
        if 0 <= path < len(paths):
            paths[path][1].write(frame_handshake(message))
    for _, writer in paths:
        with contextlib.suppress(ConnectionError):
            await writer.drain()


async def run_key_exchange(kx: KeyExchange, paths: Sequence[Path],
                           timeout: float = 10.0) -> KeyExchangeResult:
    """Run ``kx`` over the given subflows until it yields a result; raise its error if not.

    Bounded by ``timeout`` seconds; a closed path or a timeout is a ``KeyExchangeError``.
    """
    if len(paths) < kx.paths:
        raise KeyExchangeError(f"{kx.mode} needs {kx.paths} subflows, got {len(paths)}")
    queue: asyncio.Queue[tuple[int, bytes | BaseException]] = asyncio.Queue()

    async def pump(index: int, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                msg: bytes | BaseException = await read_handshake_message(reader)
            except (asyncio.IncompleteReadError, ConnectionError, KeyExchangeError) as exc:
                await queue.put((index, exc))
                return
            await queue.put((index, msg))

    async def drive() -> KeyExchangeResult:
        step = kx.start()
        await _send(step, paths)
        if step.error is not None:
            raise step.error
        if step.result is not None:
            return step.result
        while True:
            index, item = await queue.get()
            if isinstance(item, BaseException):
                if isinstance(item, KeyExchangeError):
                    raise item
                raise KeyExchangeError(f"{kx.mode}: subflow {index} closed during the key "
                                       "exchange")
            step = kx.receive(index, item)
            await _send(step, paths)
            if step.error is not None:
                raise step.error
            if step.result is not None:
                return step.result

    pumps = [asyncio.create_task(pump(i, r)) for i, (r, _) in enumerate(paths[:kx.paths])]
    try:
        return await asyncio.wait_for(drive(), timeout)
    except asyncio.TimeoutError:
        raise KeyExchangeError(f"{kx.mode}: key exchange timed out after {timeout} s") from None
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)

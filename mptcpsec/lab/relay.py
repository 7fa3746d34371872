"""A real asyncio TCP relay for one path, with per-direction hooks.

The relay accepts connections on ``listen`` and opens one upstream connection to
``upstream`` for each. Every chunk read in a direction goes through that direction's hook,
which returns the bytes to forward (the same bytes: a passive observer; other bytes or
nothing: an active attacker). A hook may also ``inject`` bytes towards either end, which is
enough to terminate both sides and run its own protocol (a full man-in-the-middle).

``RecordHook`` adapts a per-record function to a hook, reassembling records that TCP split.

Buffers are bounded: the relay reads at most ``chunk_size`` bytes at a time and waits for the
destination to drain below ``max_pending`` before reading more. ``close()`` stops listening,
cancels every pump and closes every socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum

from mptcpsec.wire.header import HEADER_LEN, RecordHeader

log = logging.getLogger(__name__)


class Direction(str, Enum):
    C2S = "c2s"  # from the connecting client towards the upstream server
    S2C = "s2c"


HookResult = bytes | bytearray | Awaitable[bytes | bytearray]
Hook = Callable[[bytes, "HookContext"], HookResult]


@dataclass
class Flow:
    """One relayed TCP connection (client side and upstream side)."""

    index: int
    relay_name: str
    client_writer: asyncio.StreamWriter
    server_writer: asyncio.StreamWriter
    bytes_in: dict[Direction, int] = field(default_factory=lambda: {d: 0 for d in Direction})
    bytes_out: dict[Direction, int] = field(default_factory=lambda: {d: 0 for d in Direction})
    error: BaseException | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def writer_for(self, direction: Direction) -> asyncio.StreamWriter:
        return self.server_writer if direction is Direction.C2S else self.client_writer

    def inject(self, direction: Direction, data: bytes) -> None:
        """Send ``data`` in ``direction`` (C2S: to the server, S2C: to the client)."""
        if data:
            self.bytes_out[direction] += len(data)
            self.writer_for(direction).write(data)

    def close(self) -> None:
        for w in (self.client_writer, self.server_writer):
            with contextlib.suppress(Exception):
                w.close()
        self.closed.set()


@dataclass
class HookContext:
    """What a hook knows about the data it is handed."""

    flow: Flow
    direction: Direction

    def inject(self, direction: Direction, data: bytes) -> None:
        self.flow.inject(direction, data)

    def reply(self, data: bytes) -> None:
        """Send ``data`` back to where the current chunk came from."""
        back = Direction.S2C if self.direction is Direction.C2S else Direction.C2S
        self.flow.inject(back, data)


class RecordHook:
    """Turns ``fn(record, ctx) -> bytes`` into a hook that sees whole records.

    Records (6-byte header, options, body) are reassembled per flow and direction; partial
    records wait, bounded by the largest possible record. A malformed header closes the flow.
    """

    MAX_RECORD = HEADER_LEN + 255 + 65535

    def __init__(self, fn: Callable[[bytes, HookContext], HookResult]) -> None:
        self.fn = fn
        self._buffers: dict[tuple[int, Direction], bytearray] = {}

    async def __call__(self, data: bytes, ctx: HookContext) -> bytes:
        buf = self._buffers.setdefault((ctx.flow.index, ctx.direction), bytearray())
        buf += data
        out = bytearray()
        while len(buf) >= HEADER_LEN:
            header = RecordHeader.unpack(buf)
            if len(buf) < header.record_len:
                break
            record = bytes(buf[:header.record_len])
            del buf[:header.record_len]
            result = self.fn(record, ctx)
            if inspect.isawaitable(result):
                result = await result
            out += result
        return bytes(out)


class Recorder:
    """A passive hook: records every byte per direction and forwards it unchanged."""

    def __init__(self) -> None:
        self.data: dict[Direction, bytearray] = {d: bytearray() for d in Direction}

    def __call__(self, data: bytes, ctx: HookContext) -> bytes:
        self.data[ctx.direction] += data
        return data

    def all_bytes(self) -> bytes:
        return bytes(self.data[Direction.C2S] + self.data[Direction.S2C])


class Relay:
    """A TCP relay for one path; see the module docstring."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], *,
                 c2s: Hook | None = None, s2c: Hook | None = None, name: str = "relay",
                 chunk_size: int = 65536, max_pending: int = 1 << 20,
                 connect_timeout: float = 5.0, max_flows: int = 64) -> None:
        if chunk_size <= 0 or max_pending <= 0:
            raise ValueError("chunk_size and max_pending must be positive")
        self.listen = listen
        self.upstream = upstream
        self.hooks: dict[Direction, Hook | None] = {Direction.C2S: c2s, Direction.S2C: s2c}
        self.name = name
        self.chunk_size = chunk_size
        self.max_pending = max_pending
        self.connect_timeout = connect_timeout
        self.max_flows = max_flows
        self.flows: list[Flow] = []
        self._next_index = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where clients should connect (the bound listen address)."""
        if self._address is None:
            raise RuntimeError("relay not started")
        return self._address

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._on_client, self.listen[0], self.listen[1],
                                                  limit=self.chunk_size)
        sock = self._server.sockets[0]
        host, port = sock.getsockname()[:2]
        self._address = (host, port)
        return self._address

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for flow in self.flows:
            flow.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        live = [f for f in self.flows if not f.closed.is_set()]
        if len(live) >= self.max_flows:  # live flows only: a long-lived relay keeps serving
            writer.close()
            return
        if len(self.flows) > 4 * self.max_flows:  # keep recent history, bounded
            self.flows = live + [f for f in self.flows if f.closed.is_set()][-self.max_flows:]
        try:
            up_reader, up_writer = await asyncio.wait_for(
                self._open_upstream(), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            log.info("%s: upstream %s unreachable: %s", self.name, self.upstream, exc)
            writer.close()
            return
        for w in (writer, up_writer):
            w.transport.set_write_buffer_limits(high=self.max_pending)
        self._next_index += 1
        flow = Flow(self._next_index - 1, self.name, writer, up_writer)
        self.flows.append(flow)
        pumps = [self._spawn(self._pump(flow, Direction.C2S, reader)),
                 self._spawn(self._pump(flow, Direction.S2C, up_reader))]
        self._spawn(self._reap(flow, pumps))

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # From the listening address when there is one, so the server sees each path
        # come from its own address (as it would without the relay).
        host = self.listen[0]
        if host and host not in ("0.0.0.0", "::"):
            with contextlib.suppress(OSError):
                return await asyncio.open_connection(*self.upstream, limit=self.chunk_size,
                                                     local_addr=(host, 0))
        return await asyncio.open_connection(*self.upstream, limit=self.chunk_size)

    async def _reap(self, flow: Flow, pumps: list[asyncio.Task[None]]) -> None:
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for t in pumps:
                t.cancel()
            flow.close()

    async def _pump(self, flow: Flow, direction: Direction,
                    reader: asyncio.StreamReader) -> None:
        dest = flow.writer_for(direction)
        hook = self.hooks[direction]
        ctx = HookContext(flow, direction)
        try:
            while True:
                data = await reader.read(self.chunk_size)
                if not data:
                    # A hook holding bytes back (a delay line) may flush them first.
                    flush = getattr(hook, "flush", None)
                    if flush is not None:
                        result = flush(ctx)
                        if inspect.isawaitable(result):
                            await result
                    # Pass the half-close on, so the far end sees EOF as it would directly.
                    if dest.can_write_eof():
                        with contextlib.suppress(OSError):
                            dest.write_eof()
                    return
                flow.bytes_in[direction] += len(data)
                out: bytes | bytearray = data
                if hook is not None:
                    result = hook(data, ctx)
                    out = await result if inspect.isawaitable(result) else result
                flow.inject(direction, bytes(out))
                await self._drain_all(flow)
        except (ConnectionError, OSError):
            # A reset on one side is passed on as a reset to the other, as a NAT would;
            # behind what is still in flight on an emulated path.
            before_reset = getattr(hook, "before_reset", None)
            if before_reset is not None:
                with contextlib.suppress(Exception):
                    await before_reset(ctx)
            for w in (flow.client_writer, flow.server_writer):
                with contextlib.suppress(Exception):
                    w.transport.abort()
            flow.closed.set()
            return
        except Exception as exc:  # a failing hook ends its flow, never the relay
            flow.error = exc
            log.info("%s flow %d %s: hook failed: %s", self.name, flow.index, direction.value,
                     exc)
            flow.close()

    @staticmethod
    async def _drain_all(flow: Flow) -> None:
        # Injections may target either direction, so wait for both writers.
        for w in (flow.server_writer, flow.client_writer):
            if not w.is_closing():
                await w.drain()

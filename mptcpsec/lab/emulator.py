"""User-space path emulation for a relayed path: one-way delay, rate limit, blackhole.

The kernel the lab runs on may have no netem, so a path is emulated inside the relay:

- **delay**: a real delay line. Each chunk is stamped when it is read and released
  ``delay`` later by a separate writer task; the relay keeps reading meanwhile, so
  throughput is not capped by the delay (up to ``queue_limit`` bytes in flight, the
  emulated path's bandwidth-delay product).
- **rate**: a token bucket in Mbit/s. The hook waits for tokens before a slice enters the
  delay line, which back-pressures the sender through TCP exactly like a bottleneck link.
- **blackhole**: after ``blackhole_after`` client-to-server bytes, the path silently drops
  everything in both directions and never passes a FIN on (a dead route, not a reset).

``PathEmulator`` is a relay hook (use one instance for both directions, it keeps state per
flow and direction), optionally wrapping an inner hook (an attack) that sees the bytes
first. ``emulated_relay(...)`` builds a ``Relay`` with it on both directions.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from dataclasses import dataclass, field

from .relay import Direction, Flow, Hook, HookContext, Relay


@dataclass(frozen=True)
class PathProfile:
    """How a path behaves. Zero/None everywhere means a transparent relay."""

    delay_ms: float = 0.0            # one way, per direction: RTT grows by 2 x delay_ms
    rate_mbps: float | None = None   # per direction; None: unlimited
    blackhole_after: int | None = None  # client-to-server bytes before the path goes dark
    burst_bytes: int | None = None   # token bucket depth; default ~5 ms at the rate, >= 16 KiB
    queue_limit: int = 8 << 20       # bytes held in one direction's delay line

    def __post_init__(self) -> None:
        if self.delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        if self.rate_mbps is not None and self.rate_mbps <= 0:
            raise ValueError("rate_mbps must be > 0 (or None for unlimited)")
        if self.blackhole_after is not None and self.blackhole_after < 0:
            raise ValueError("blackhole_after must be >= 0")
        if self.queue_limit <= 0:
            raise ValueError("queue_limit must be > 0")

    @property
    def transparent(self) -> bool:
        return self.delay_ms == 0 and self.rate_mbps is None and self.blackhole_after is None


class TokenBucket:
    """Rate limit in bytes per second with a bounded burst; waits are returned, not slept."""

    def __init__(self, rate_bytes: float, burst: int, now: float) -> None:
        self.rate = rate_bytes
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def reserve(self, n: int, now: float) -> float:
        """Take ``n`` bytes' worth of tokens (going into debt); seconds until they exist."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class DelayLine:
    """Bytes released to one direction of a flow at their due time, in order."""

    def __init__(self, flow: Flow, direction: Direction, limit: int) -> None:
        self.flow = flow
        self.direction = direction
        self.limit = limit
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self._ready = asyncio.Event()   # something is queued
        self._space = asyncio.Event()   # below the limit
        self._empty = asyncio.Event()   # nothing queued or being written
        self._space.set()
        self._empty.set()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())
        return self.task

    async def put(self, due: float, data: bytes) -> None:
        while self.queued >= self.limit:
            self._space.clear()
            await self._space.wait()
        self.queue.append((due, data))
        self.queued += len(data)
        self._empty.clear()
        self._ready.set()

    async def wait_empty(self) -> None:
        await self._empty.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        writer = self.flow.writer_for(self.direction)
        try:
            while True:
                if not self.queue:
                    self._empty.set()
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                wait = self.queue[0][0] - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                now = loop.time()
                out = bytearray()
                while self.queue and self.queue[0][0] <= now:
                    out += self.queue.popleft()[1]
                self.queued -= len(out)
                if self.queued < self.limit:
                    self._space.set()
                if writer.is_closing():
                    continue  # the flow is gone: what was in flight is lost, as on a wire
                self.flow.inject(self.direction, bytes(out))
                await writer.drain()
        except (ConnectionError, OSError):
            self.queue.clear()
            self.queued = 0
            self._space.set()
            self._empty.set()


@dataclass
class _FlowState:
    bucket: dict[Direction, TokenBucket] = field(default_factory=dict)
    lines: dict[Direction, DelayLine] = field(default_factory=dict)
    c2s_bytes: int = 0
    dark: bool = False


class PathEmulator:
    """A relay hook emulating ``profile`` on every flow; ``inner`` sees the bytes first."""

    def __init__(self, profile: PathProfile | None = None, *, inner: Hook | None = None,
                 inner_s2c: Hook | None = None, **profile_args: object) -> None:
        self.profile = profile or PathProfile(**profile_args)  # type: ignore[arg-type]
        self.inner: dict[Direction, Hook | None] = {Direction.C2S: inner,
                                                    Direction.S2C: inner_s2c}
        self._flows: dict[int, _FlowState] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _state(self, flow: Flow) -> _FlowState:
        st = self._flows.get(flow.index)
        if st is None:
            st = self._flows[flow.index] = _FlowState()
        return st

    def _line(self, st: _FlowState, ctx: HookContext) -> DelayLine:
        line = st.lines.get(ctx.direction)
        if line is None:
            line = st.lines[ctx.direction] = DelayLine(ctx.flow, ctx.direction,
                                                       self.profile.queue_limit)
            task = line.start()
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return line

    def _bucket(self, st: _FlowState, direction: Direction, now: float) -> TokenBucket | None:
        if self.profile.rate_mbps is None:
            return None
        bucket = st.bucket.get(direction)
        if bucket is None:
            rate = self.profile.rate_mbps * 1e6 / 8
            burst = self.profile.burst_bytes or max(16384, int(rate * 0.005))
            bucket = st.bucket[direction] = TokenBucket(rate, burst, now)
        return bucket

    def is_dark(self, flow_index: int = 0) -> bool:
        st = self._flows.get(flow_index)
        return st is not None and st.dark

    async def __call__(self, data: bytes, ctx: HookContext) -> bytes:
        inner = self.inner[ctx.direction]
        if inner is not None:
            result = inner(data, ctx)
            data = bytes(await result if inspect.isawaitable(result) else result)
        st = self._state(ctx.flow)
        prof = self.profile
        if st.dark:
            return b""
        if prof.blackhole_after is not None and ctx.direction is Direction.C2S:
            room = prof.blackhole_after - st.c2s_bytes
            st.c2s_bytes += len(data)
            if room <= len(data):
                st.dark = True
                data = data[:max(0, room)]
        if not data:
            return b""
        if prof.delay_ms == 0 and prof.rate_mbps is None:
            return data
        loop = asyncio.get_running_loop()
        line = self._line(st, ctx)
        bucket = self._bucket(st, ctx.direction, loop.time())
        step = bucket.capacity if bucket is not None else len(data)
        for i in range(0, len(data), max(1, int(step))):
            piece = data[i:i + int(step)]
            if bucket is not None:
                wait = bucket.reserve(len(piece), loop.time())
                if wait > 0:
                    await asyncio.sleep(wait)
            await line.put(loop.time() + prof.delay_ms / 1000, piece)
        return b""

    async def flush(self, ctx: HookContext) -> None:
        """Called by the relay at EOF: let the delay line empty before the FIN goes on."""
        st = self._state(ctx.flow)
        if st.dark:
            await ctx.flow.closed.wait()  # a dead path never delivers a FIN
            return
        line = st.lines.get(ctx.direction)
        if line is not None:
            await line.wait_empty()

    async def before_reset(self, ctx: HookContext) -> None:
        """Called by the relay when a reset arrives: it travels the path like a segment,
        behind the bytes already in flight, and never through a blackhole."""
        st = self._state(ctx.flow)
        if st.dark:
            await ctx.flow.closed.wait()
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + self.profile.delay_ms / 1000
        line = st.lines.get(ctx.direction)
        if line is not None:
            await line.wait_empty()
        if due > loop.time():
            await asyncio.sleep(due - loop.time())

    async def close(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class EmulatedRelay(Relay):
    """A ``Relay`` whose both directions go through one ``PathEmulator``."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int],
                 profile: PathProfile, *, c2s: Hook | None = None, s2c: Hook | None = None,
                 name: str = "path", **relay_args: object) -> None:
        self.emulator = PathEmulator(profile, inner=c2s, inner_s2c=s2c)
        super().__init__(listen, upstream, c2s=self.emulator, s2c=self.emulator, name=name,
                         **relay_args)  # type: ignore[arg-type]

    async def close(self) -> None:
        await self.emulator.close()
        await super().close()


def emulated_relay(listen: tuple[str, int], upstream: tuple[str, int], *,
                   delay_ms: float = 0.0, rate_mbps: float | None = None,
                   blackhole_after: int | None = None, c2s: Hook | None = None,
                   s2c: Hook | None = None, name: str = "path",
                   **relay_args: object) -> EmulatedRelay:
    """A relay emulating a path; ``c2s``/``s2c`` hooks (attacks) run before the emulation.

    ``await relay.start()`` (or ``async with``) before use; ``relay.address`` is where to
    connect.
    """
    profile = PathProfile(delay_ms=delay_ms, rate_mbps=rate_mbps,
                          blackhole_after=blackhole_after)
    return EmulatedRelay(listen, upstream, profile, c2s=c2s, s2c=s2c, name=name, **relay_args)


"""The path emulator: delay, rate and blackhole measured through a real relay."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from mptcpsec.lab.emulator import PathEmulator, PathProfile, TokenBucket, emulated_relay
from mptcpsec.lab.relay import Relay


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Sink:
    """A TCP server that echoes, or counts and discards, what it receives."""

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.received = 0
        self.eof = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.received += len(data)
                if self.echo:
                    writer.write(data)
                    await writer.drain()
            self.eof.set()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[:2]

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 1)


async def ping_rtt(addr: tuple[str, int], rounds: int = 5) -> float:
    reader, writer = await asyncio.open_connection(*addr)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        writer.write(b"x" * 100)
        await reader.readexactly(100)
        samples.append(time.perf_counter() - t0)
    writer.close()
    return sorted(samples)[len(samples) // 2]


def test_rtt_through_the_delay_line_is_twice_the_one_way_delay() -> None:
    async def main() -> tuple[float, float]:
        async with Sink() as upstream:
            async with Relay(("127.0.0.1", 0), upstream) as plain:
                base = await ping_rtt(plain.address)
            async with emulated_relay(("127.0.0.1", 0), upstream, delay_ms=25) as relay:
                return base, await ping_rtt(relay.address)

    base, rtt = run(main())
    assert 0.050 <= rtt <= 0.050 + base + 0.030, (base, rtt)


def test_delay_does_not_cap_throughput() -> None:
    """A delay line, not a stop-and-wait: 16 MB through a 50 ms path takes far less than
    one delay per chunk (256 x 64 KiB chunks would be 12.8 s)."""
    async def main() -> tuple[float, int]:
        sink = Sink(echo=False)
        async with sink as upstream:
            relay = emulated_relay(("127.0.0.1", 0), upstream, delay_ms=50)
            async with relay:
                _, writer = await asyncio.open_connection(*relay.address)
                t0 = time.perf_counter()
                block = b"\0" * 65536
                for _ in range(256):
                    writer.write(block)
                    await writer.drain()
                writer.write_eof()
                await asyncio.wait_for(sink.eof.wait(), 10)
                writer.close()
                return time.perf_counter() - t0, sink.received

    elapsed, received = run(main())
    assert received == 256 * 65536  # the FIN waited for the delay line to empty
    assert 0.05 <= elapsed < 3.0, elapsed


@pytest.mark.parametrize("mbps", [20.0, 80.0])
def test_rate_limit_is_respected(mbps: float) -> None:
    nbytes = int(mbps * 1e6 / 8 * 0.6)  # 0.6 s at the nominal rate

    async def main() -> float:
        sink = Sink(echo=False)
        async with sink as upstream:
            relay = emulated_relay(("127.0.0.1", 0), upstream, delay_ms=5, rate_mbps=mbps)
            async with relay:
                _, writer = await asyncio.open_connection(*relay.address)
                t0 = time.perf_counter()
                block = b"\0" * 16384
                for i in range(0, nbytes, len(block)):
                    writer.write(block[:nbytes - i])
                    await writer.drain()
                writer.write_eof()
                await asyncio.wait_for(sink.eof.wait(), 10)
                writer.close()
                assert sink.received == nbytes
                return time.perf_counter() - t0

    elapsed = run(main())
    measured = nbytes * 8 / elapsed / 1e6
    assert 0.8 * mbps <= measured <= 1.1 * mbps, measured


def test_blackhole_after_drops_everything_silently_both_ways() -> None:
    async def main() -> tuple[int, bytes, bool]:
        sink = Sink(echo=True)
        async with sink as upstream:
            relay = emulated_relay(("127.0.0.1", 0), upstream, blackhole_after=1000)
            async with relay:
                reader, writer = await asyncio.open_connection(*relay.address)
                writer.write(b"a" * 600)
                echoed = await reader.readexactly(600)
                writer.write(b"b" * 600)  # 400 pass, the rest is lost; the echo of it too
                await writer.drain()
                await asyncio.sleep(0.2)
                writer.write_eof()  # a dead path passes no FIN on
                await asyncio.sleep(0.2)
                extra = b""
                with contextlib.suppress(asyncio.TimeoutError):
                    extra = await asyncio.wait_for(reader.read(100), 0.3)
                writer.close()
                return sink.received, echoed + extra, sink.eof.is_set()

    received, back, got_eof = run(main())
    assert received == 1000
    assert back == b"a" * 600
    assert not got_eof


def test_token_bucket_debt() -> None:
    b = TokenBucket(1000.0, 100, now=0.0)
    assert b.reserve(100, 0.0) == 0.0
    assert b.reserve(50, 0.0) == pytest.approx(0.05)
    assert b.reserve(0, 1.0) == 0.0  # refilled, capped at the burst
    assert b.tokens == 100


def test_profile_rejects_nonsense() -> None:
    for kwargs in ({"delay_ms": -1}, {"rate_mbps": 0}, {"blackhole_after": -5},
                   {"queue_limit": 0}):
        with pytest.raises(ValueError):
            PathProfile(**kwargs)
    assert PathProfile().transparent
    assert PathEmulator(delay_ms=3).profile.delay_ms == 3


def test_mptcpsec_round_trips_see_each_emulated_path() -> None:
    """A real connection over a 5 ms and a 30 ms path, records sent round-robin: echo round
    trips take 2 x delay of the path they went out on.

    (The kernel RTT of a subflow socket measures only the hop to the relay, which
    acknowledges at once; the delay is visible end to end.)
    """
    from mptcpsec.aio.api import Path, connect, serve
    from mptcpsec.protocol.config import ConnectionConfig

    async def echo(stream) -> None:
        while data := await stream.read(65536):
            stream.write(data)
            await stream.drain()

    async def main() -> list[float]:
        cfg = ConnectionConfig(key_exchange="split-path", join_announced=False,
                               scheduler="round-robin")
        server = await serve(echo, [("127.0.0.1", 0), ("127.0.0.2", 0)], cfg)
        relays = [emulated_relay((h, 0), addr, delay_ms=d)
                  for h, addr, d in zip(("127.0.0.1", "127.0.0.2"), server.addresses,
                                        (5, 30), strict=True)]
        try:
            for r in relays:
                await r.start()
            stream = await connect([Path(r.address, local=r.address[0]) for r in relays], cfg)
            samples = []
            for _ in range(10):
                t0 = time.perf_counter()
                stream.write(b"x" * 1000)
                await stream.readexactly(1000)
                samples.append(time.perf_counter() - t0)
            stream.close()
            with contextlib.suppress(Exception):
                await stream.wait_closed(3)
            return samples
        finally:
            for r in relays:
                await r.close()
            server.close()

    samples = sorted(run(main()))
    assert samples[0] >= 0.010, samples
    assert 0.060 <= samples[-1] <= 0.150, samples

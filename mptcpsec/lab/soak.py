"""Load, soak and hostile-load runners on real loopback sockets.

``run_soak`` starts an echo server in its own process, puts every path behind a
``FlakyPath`` that fails at random (all its TCP connections reset, new ones refused for a
while, then back), and keeps many connections echoing verified bytes. A connection that
lost a path joins it again when it is back. At the end every connection closes and must
have got back every byte it sent; resident memory of both processes is sampled
throughout, so growth shows as a trend in the table.

``run_hostile`` is a load of misbehaving peers against a server (oversized records,
records trickled byte by byte, handshakes that never finish, joins with bad
authentication, connection floods), for measuring what a well-behaved connection beside
them keeps.

    python -m mptcpsec.lab.soak soak --connections 100 --duration 60
    python -m mptcpsec.lab.soak hostile --target 127.0.0.1:7000 --kind flood --count 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ..aio.api import MptcpsecStream, Path, connect, serve
from ..crypto.keyschedule import Role
from ..protocol.config import ConnectionConfig
from ..protocol.connection import Connection
from ..wire.header import RecordType
from ..wire.options import MpCapable, MpJoinAck, MpJoinSyn
from ..wire.records import build_record, join_record
from .procstat import release_memory, rss_kib

Address = tuple[str, int]
HOSTS = ("127.0.0.1", "127.0.0.2")


# ---------------------------------------------------------------------- flaky paths

class FlakyPath:
    """A TCP forwarder for one path that can fail (reset everything, refuse) and recover."""

    def __init__(self, listen_host: str, upstream: Address, chunk: int = 65536) -> None:
        self.listen_host = listen_host
        self.upstream = upstream
        self.chunk = chunk
        self.up = True
        self.failures = 0
        self._server: asyncio.base_events.Server | None = None
        self._flows: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: Address = (listen_host, 0)

    async def start(self) -> Address:
        self._server = await asyncio.start_server(self._on_client, self.listen_host, 0)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self.address

    def fail(self) -> None:
        """The path goes down: every connection on it is reset, new ones are refused."""
        self.up = False
        self.failures += 1
        for a, b in list(self._flows):
            for w in (a, b):
                with contextlib.suppress(Exception):
                    w.transport.abort()
        self._flows.clear()

    def restore(self) -> None:
        self.up = True

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 5)
        except (OSError, asyncio.TimeoutError):
            writer.transport.abort()
            return
        pair = (writer, up_w)
        self._flows.add(pair)
        for src, dst in ((reader, up_w), (up_r, writer)):
            task = asyncio.ensure_future(self._pump(src, dst, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        try:
            while data := await src.read(self.chunk):
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            for w in pair:
                with contextlib.suppress(Exception):
                    w.transport.abort()
        finally:
            self._flows.discard(pair)

    async def close(self) -> None:
        self.fail()
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def rejoin(stream: MptcpsecStream, remote: Address, local: str) -> bool:
    """Open one more subflow of an established connection (a path that came back)."""
    return await stream.add_path(Path(remote, local)) is not None


# ---------------------------------------------------------------------- soak

@dataclass
class SoakConfig:
    connections: int = 100
    duration: float = 60.0
    #: Seconds between path failures (each path fails in turn, never both at once).
    fail_every: float = 4.0
    down_for: float = 1.5
    sample_every: float = 5.0
    max_inflight: int = 128 * 1024  # echo bytes a connection may have unverified
    chunk_max: int = 16 * 1024
    seed: int = 1
    subflow_timeout: float = 5.0
    #: Hand freed heap back to the OS (gc + malloc_trim) before each RSS reading, so the
    #: figures show memory still held rather than glibc's high-water mark.
    trim: bool = True


@dataclass
class Sample:
    t: float
    server_rss_kib: int
    client_rss_kib: int
    verified_bytes: int
    live_subflows: int
    path_failures: int


@dataclass
class SoakResult:
    config: SoakConfig
    samples: list[Sample] = field(default_factory=list)
    verified_bytes: int = 0
    lost_bytes: int = 0
    corrupted: int = 0
    stuck: int = 0
    failed: list[str] = field(default_factory=list)
    path_failures: int = 0
    rejoins: int = 0
    wall: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost_bytes or self.corrupted or self.stuck or self.failed)

    def table(self) -> str:
        rows = ["| t (s) | server RSS (MiB) | client RSS (MiB) | verified (MB) | live subflows "
                "| path failures |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for s in self.samples:
            rows.append(f"| {s.t:.0f} | {s.server_rss_kib / 1024:.1f} | "
                        f"{s.client_rss_kib / 1024:.1f} | {s.verified_bytes / 1e6:.1f} | "
                        f"{s.live_subflows} | {s.path_failures} |")
        return "\n".join(rows)


def soak_server_config(cfg: SoakConfig) -> ConnectionConfig:
    return ConnectionConfig(key_exchange="split-path", subflow_timeout=cfg.subflow_timeout,
                            max_join_attempts=100_000, receive_window=1 << 20,
                            send_buffer=1 << 20)


def _server_process(hosts: Sequence[str], port: int, cfg: SoakConfig, ready) -> None:
    async def echo(stream: MptcpsecStream) -> None:
        while data := await stream.read(1 << 16):
            stream.write(data)
            await stream.drain()

    async def main() -> None:
        server = await serve(echo, [(h, port) for h in hosts], soak_server_config(cfg))
        ready.put(server.addresses)
        while True:
            await asyncio.sleep(1.0)
            if cfg.trim:
                release_memory()  # so RSS shows memory held, not glibc's free lists

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class _EchoClient:
    """One connection: writes seeded random chunks, checks that each comes back intact."""

    def __init__(self, idx: int, stream: MptcpsecStream, cfg: SoakConfig) -> None:
        self.idx = idx
        self.stream = stream
        self.cfg = cfg
        self.rnd = random.Random(cfg.seed * 100_003 + idx)
        self.pending = bytearray()  # sent, not yet echoed
        self.verified = 0
        self.corrupted = False
        self.sent = 0
        self.error: str | None = None
        self.changed = asyncio.Event()

    async def writer(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if len(self.pending) >= self.cfg.max_inflight:
                self.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.5)
                continue
            chunk = self.rnd.randbytes(self.rnd.randint(1, self.cfg.chunk_max))
            self.pending += chunk
            self.stream.write(chunk)
            self.sent += len(chunk)
            await self.stream.drain()
            await asyncio.sleep(0)
        self.stream.close()

    async def reader(self) -> None:
        while data := await self.stream.read(1 << 16):
            if self.pending[:len(data)] != data:
                self.corrupted = True
                return
            del self.pending[:len(data)]
            self.verified += len(data)
            self.changed.set()


async def _soak_clients(cfg: SoakConfig, paths: list[FlakyPath], server_pid: int,
                        result: SoakResult) -> None:
    ccfg = soak_server_config(cfg)
    rnd = random.Random(cfg.seed)
    clients: list[_EchoClient] = []
    for i in range(cfg.connections):
        stream = await connect([Path(p.address, local=HOSTS[j]) for j, p in enumerate(paths)],
                               ccfg)
        clients.append(_EchoClient(i, stream, cfg))
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(c.writer(stop)) for c in clients]
    readers = [asyncio.ensure_future(c.reader()) for c in clients]
    start = time.monotonic()

    def live() -> int:
        return sum(1 for c in clients for s in c.stream.subflow_stats()
                   if s["state"] in ("established", "joining"))

    def sample() -> None:
        if cfg.trim:
            release_memory()
        result.samples.append(Sample(time.monotonic() - start, rss_kib(server_pid), rss_kib(),
                                     sum(c.verified for c in clients), live(),
                                     sum(p.failures for p in paths)))

    def missing(c: _EchoClient) -> list[int]:
        """Paths this connection has no live subflow on."""
        conn = c.stream.connection
        if conn.ended:
            return []
        return [j for j, p in enumerate(paths)
                if not any(s.remote[:2] == p.address[:2] and not s.state.ended
                           for s in conn.subflows.values())]

    async def chaos() -> None:
        # One path at a time, and only once every connection is back on both: the promise
        # is about connections that keep one clean path, so the soak keeps them one.
        k = 0
        while not stop.is_set():
            await asyncio.sleep(cfg.fail_every * rnd.uniform(0.7, 1.3))
            for _ in range(100):
                if stop.is_set() or not any(missing(c) for c in clients):
                    break
                await asyncio.sleep(0.1)
            if stop.is_set():
                return
            p = paths[k % len(paths)]
            k += 1
            p.fail()
            await asyncio.sleep(cfg.down_for * rnd.uniform(0.5, 1.5))
            p.restore()

    async def heal(c: _EchoClient, j: int) -> None:
        if await rejoin(c.stream, paths[j].address, HOSTS[j]):
            result.rejoins += 1

    async def healer() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.3)
            jobs = [heal(c, j) for c in clients for j in missing(c) if paths[j].up]
            await asyncio.gather(*jobs)

    async def sampler() -> None:
        while not stop.is_set():
            sample()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), cfg.sample_every)

    helpers = [asyncio.ensure_future(f()) for f in (chaos, healer, sampler)]
    await asyncio.sleep(cfg.duration)
    stop.set()
    for p in paths:
        p.restore()
    await asyncio.gather(*helpers, return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    _, not_done = await asyncio.wait(readers, timeout=30)
    sample()
    for c, r in zip(clients, readers, strict=True):
        if r in not_done:
            result.stuck += 1
            r.cancel()
        elif r.exception() is not None:
            result.failed.append(f"connection {c.idx}: {r.exception()}")
        if c.corrupted:
            result.corrupted += 1
        result.lost_bytes += len(c.pending)
        result.verified_bytes += c.verified
        c.stream.shutdown()
    result.path_failures = sum(p.failures for p in paths)


def run_soak(cfg: SoakConfig) -> SoakResult:
    """Run a soak (see the module docstring); the server runs in a child process."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    port = _free_port()
    proc = ctx.Process(target=_server_process, args=(HOSTS, port, cfg, ready), daemon=True)
    proc.start()
    result = SoakResult(cfg)
    t0 = time.monotonic()
    try:
        addresses = ready.get(timeout=30)

        async def main() -> None:
            paths = [FlakyPath(h, tuple(a)) for h, a in zip(HOSTS, addresses, strict=True)]
            for p in paths:
                await p.start()
            try:
                await _soak_clients(cfg, paths, proc.pid or 0, result)
            finally:
                for p in paths:
                    await p.close()

        asyncio.run(main())
    finally:
        proc.terminate()
        proc.join(10)
    result.wall = time.monotonic() - t0
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- hostile load

HOSTILE_KINDS = ("oversized", "trickle", "stalled-handshake", "bad-join", "flood")


@dataclass
class HostileResult:
    kind: str
    attempts: int = 0
    reset_by_server: int = 0  # the server ended the connection (RST or FIN)
    still_open: int = 0  # when the run ended
    max_seconds_open: float = 0.0


def _split_path_hello(hid_seed: int) -> bytes:
    """A genuine first record of a split-path exchange (CLIENT_SHARE on path 0)."""
    conn = Connection(ConnectionConfig(key_exchange="split-path"), Role.CLIENT, 0.0)
    conn.add_subflow(("127.0.0.1", 1), ("127.0.0.1", 2), 0.0)
    conn.add_subflow(("127.0.0.2", 1), ("127.0.0.2", 2), 0.0)
    out = dict(conn.data_to_send(0.0))
    conn.close_keys()
    return out[0]


def _payload(kind: str, token: int | None) -> tuple[bytes, bytes]:
    """(what to send at once, what to trickle afterwards) for one hostile connection."""
    if kind == "oversized":  # a HANDSHAKE header announcing a 65535-byte body
        return bytes([1, RecordType.HANDSHAKE, 1, 0, 0xFF, 0xFF]), b""
    if kind == "trickle":  # a legal-looking 1000-byte handshake record, one byte at a time
        rec = build_record(RecordType.HANDSHAKE, 1, [MpCapable(sender_key=1)], b"\0" * 1000)
        return b"", rec
    if kind == "stalled-handshake":
        return _split_path_hello(0), b""
    if kind == "bad-join":  # a JOIN for a real token, then a forged JOIN ACK
        nonce = os.urandom(32)
        syn = MpJoinSyn(address_id=0, token=token or 0, nonce=int.from_bytes(nonce[:4], "big"))
        sid = random.randrange(1000, 1 << 31)
        ack = join_record(MpJoinAck(hmac=os.urandom(20)), None, os.urandom(32))
        return join_record(syn, sid, nonce) + ack, b""
    return b"", b""  # flood: connect and say nothing


async def _hostile_one(kind: str, target: Address, token: int | None, hold: float,
                       res: HostileResult) -> None:
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), 5)
    except (OSError, asyncio.TimeoutError):
        return
    res.attempts += 1
    now, trickle = _payload(kind, token)
    try:
        writer.write(now)
        deadline = t0 + hold
        i = 0
        while time.monotonic() < deadline:
            if trickle and i < len(trickle):
                writer.write(trickle[i:i + 1])
                i += 1
            try:
                data = await asyncio.wait_for(reader.read(4096), 0.05)
            except asyncio.TimeoutError:
                continue
            if not data:
                res.reset_by_server += 1
                return
        res.still_open += 1
    except (ConnectionError, OSError):
        res.reset_by_server += 1
    finally:
        res.max_seconds_open = max(res.max_seconds_open, time.monotonic() - t0)
        writer.transport.abort()


async def run_hostile(kind: str, target: Address, count: int, concurrency: int = 200,
                      hold: float = 5.0, token: int | None = None) -> HostileResult:
    """`count` hostile connections of one kind, `concurrency` at a time."""
    res = HostileResult(kind)
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await _hostile_one(kind, target, token, hold, res)

    await asyncio.gather(*(one() for _ in range(count)))
    return res


def hostile_process_main(kind: str, target: Address, count: int, concurrency: int,
                         hold: float, token: int | None, out) -> None:
    """Entry point for running hostile load in its own process (multiprocessing)."""
    res = asyncio.run(run_hostile(kind, target, count, concurrency, hold, token))
    out.put(asdict(res))


# ---------------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None) -> int:
    class Fmt(argparse.RawDescriptionHelpFormatter):
        def _get_help_string(self, action: argparse.Action) -> str:
            if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
                return action.help or ""
            return f"{action.help} (default: %(default)s)"

    d = SoakConfig()
    ap = argparse.ArgumentParser(prog="python -m mptcpsec.lab.soak", description=__doc__,
                                 formatter_class=Fmt)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("soak", help="connections echoing over failing paths", formatter_class=Fmt,
                       description="Connections echoing verified data over two loopback "
                       "paths that fail in turn; RSS, bytes lost or corrupted, rejoins.")
    s.add_argument("--connections", type=int, default=d.connections,
                   help="concurrent connections, one subflow per path")
    s.add_argument("--duration", type=float, default=d.duration, help="seconds of traffic")
    s.add_argument("--fail-every", type=float, default=d.fail_every,
                   help="seconds between path failures (paths fail in turn, never both)")
    s.add_argument("--down-for", type=float, default=d.down_for,
                   help="seconds a failed path stays down")
    s.add_argument("--sample-every", type=float, default=d.sample_every,
                   help="seconds between RSS and throughput samples")
    s.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the echo chunks and the failure order")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.add_argument("--no-trim", action="store_true",
                   help="read RSS without handing freed heap back first (glibc high-water)")
    h = sub.add_parser("hostile", help="misbehaving peers against a server", formatter_class=Fmt,
                       description="Open misbehaving connections against a server on a "
                       "127.0.0.x address and report how the server ended them.")
    h.add_argument("--target", required=True, help="HOST:PORT (127.0.0.x only)")
    h.add_argument("--kind", choices=HOSTILE_KINDS, required=True, help="misbehaviour")
    h.add_argument("--count", type=int, default=1000, help="connections in all")
    h.add_argument("--concurrency", type=int, default=200, help="connections at a time")
    h.add_argument("--hold", type=float, default=5.0,
                   help="seconds each connection is held before giving up")
    h.add_argument("--token", type=lambda x: int(x, 0), default=None,
                   help="a real connection token for join-based kinds (0x... accepted)")
    args = ap.parse_args(argv)
    if args.cmd == "soak":
        cfg = SoakConfig(connections=args.connections, duration=args.duration,
                         fail_every=args.fail_every, down_for=args.down_for,
                         sample_every=args.sample_every, seed=args.seed,
                         trim=not args.no_trim)
        res = run_soak(cfg)
        if args.json:
            print(json.dumps({**asdict(res), "ok": res.ok}, indent=1))
        else:
            print(res.table())
            print(f"\n{cfg.connections} connections x {len(HOSTS)} paths, {cfg.duration:g} s: "
                  f"verified {res.verified_bytes / 1e6:.1f} MB, lost {res.lost_bytes} bytes, "
                  f"corrupted {res.corrupted}, stuck {res.stuck}, failed {len(res.failed)}, "
                  f"path failures {res.path_failures}, rejoins {res.rejoins}")
            for f in res.failed[:10]:
                print("  ", f)
        return 0 if res.ok else 1
    host, _, port = args.target.rpartition(":")
    if not host.startswith("127."):
        ap.error("hostile load targets loopback addresses only")
    res = asyncio.run(run_hostile(args.kind, (host, int(port)), args.count, args.concurrency,
                                  args.hold, args.token))
    print(json.dumps(asdict(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

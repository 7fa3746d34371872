"""`mptcpsec bench scale`: many concurrent connections, two subflows each, doing echo.

The echo server runs in its own process; the clients in this one. In order:

1. **idle memory**: the server's and the client's resident set size (after a garbage
   collection) is sampled while ``connections`` connections are opened (each with two
   subflows, default split-path key exchange) and left idle; the per-connection figure is
   the growth divided by the number of connections.
2. **echo**: every connection sends ``echo_bytes`` in ``chunk`` writes and reads the echo
   back, all at once; throughput (application bytes sent per second, each also travels
   back), CPU seconds of each process per GB sent, and every mismatch or error.
3. **idle again**: memory per connection after the traffic (buffers must shrink back):
   the idle figure plus what the RSS grew by from before to after the echo, both taken
   after ``malloc_trim`` (without it, the figure is mostly glibc keeping the freed echo
   buffers for reuse; that untrimmed growth is reported too).
4. **close**: every connection closes cleanly (DATA_FIN both ways, CLOSE on each subflow).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..aio.api import MptcpsecStream, Path, connect
from ..crypto.keyschedule import Role
from . import report
from .peers import MptcpsecOptions, PeerKeys, payload_block
from .procs import ServerProcess, cpu_seconds, release_memory, rss_bytes

KIB = 1024
HOSTS = ("127.0.0.1", "127.0.0.2")


@dataclass
class ScaleConfig:
    connections: int = 200
    echo_bytes: int = 1_000_000
    chunk: int = 64 * 1024
    key_exchange: str = "split-path"
    #: Connections opened at once (a burst of a few hundred SYNs overflows listen queues).
    connect_concurrency: int = 25
    sample_every: int = 25
    timeout: float = 300.0


@dataclass
class ScaleReport:
    config: ScaleConfig
    server_idle_kib_per_conn: float
    client_idle_kib_per_conn: float
    server_after_kib_per_conn: float
    client_after_kib_per_conn: float
    server_after_untrimmed_kib_per_conn: float
    client_after_untrimmed_kib_per_conn: float
    echo_seconds: float
    echo_MBps: float
    server_cpu_s_per_GB: float
    client_cpu_s_per_GB: float
    connections_opened: int
    connect_seconds: float
    errors: list[str] = field(default_factory=list)
    mismatches: int = 0
    closed_cleanly: int = 0
    #: (connections open, server RSS KiB, client RSS KiB) while opening them.
    samples: list[tuple[int, float, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _client_rss(trim: bool = False) -> tuple[int, int]:
    """This process's RSS after a garbage collection (and ``malloc_trim``), and before
    trimming."""
    if trim:
        raw = release_memory()
        return rss_bytes(), raw
    gc.collect()
    raw = rss_bytes()
    return raw, raw


async def _echo(stream: MptcpsecStream, payload: bytes, chunk: int) -> bool:
    """Send the payload, read the echo; True if it came back intact."""
    expect = memoryview(payload)
    n = 0
    intact = True

    async def writer() -> None:
        view = memoryview(payload)
        for i in range(0, len(payload), chunk):
            stream.write(view[i:i + chunk])
            await stream.drain()

    task = asyncio.ensure_future(writer())
    try:
        while n < len(payload):
            data = await stream.read(1 << 16)
            if not data:
                break
            intact = intact and expect[n:n + len(data)] == data
            n += len(data)
        await task
    finally:
        task.cancel()
    return intact and n == len(payload)


async def _run(cfg: ScaleConfig, server: ServerProcess, keys: PeerKeys,
               progress: Callable[[str], None] | None) -> ScaleReport:
    addrs = [tuple(a) for a in server.ready["addresses"]["mptcpsec"]]
    opts = MptcpsecOptions(key_exchange=cfg.key_exchange)
    paths = [Path(addrs[i], local=HOSTS[i]) for i in range(2)]
    errors: list[str] = []
    streams: list[MptcpsecStream] = []
    sem = asyncio.Semaphore(cfg.connect_concurrency)

    async def open_one() -> None:
        async with sem:
            try:
                streams.append(await connect(paths, opts.config(Role.CLIENT, keys)))
            except Exception as exc:  # counted, never fatal
                errors.append(f"connect: {type(exc).__name__}: {exc}")

    # Warm up imports, caches and the allocator with one connection, then measure.
    await open_one()
    warm = streams.pop()
    warm.close()
    with contextlib.suppress(Exception):
        await warm.wait_closed(10)
    await asyncio.sleep(0.2)
    s0 = server.request({"cmd": "collect"})["rss"]
    c0 = _client_rss()[0]
    samples = [(0, s0 / KIB, c0 / KIB)]
    t0 = time.monotonic()
    done = 0
    while done < cfg.connections:
        batch = min(cfg.sample_every, cfg.connections - done)
        await asyncio.gather(*(open_one() for _ in range(batch)))
        done += batch
        # Both subflows of every connection are up before memory is sampled.
        await _wait_established(streams, 10.0)
        await asyncio.sleep(0.05)
        s = server.request({"cmd": "collect"})["rss"]
        samples.append((len(streams), s / KIB, _client_rss()[0] / KIB))
        if progress:
            progress(f"scale: {len(streams)} connections open")
    connect_seconds = time.monotonic() - t0
    n = max(1, len(streams))
    s1, c1 = samples[-1][1] * KIB, samples[-1][2] * KIB
    s1t = server.request({"cmd": "trim"})["rss"]
    c1t = _client_rss(trim=True)[0]

    payload = payload_block(cfg.echo_bytes, seed=11)
    if progress:
        progress(f"scale: {len(streams)} connections echo {cfg.echo_bytes:,} bytes each")
    scpu, ccpu = server.cpu(), cpu_seconds()
    t1 = time.monotonic()
    results = await asyncio.gather(*(_echo(s, payload, cfg.chunk) for s in streams),
                                   return_exceptions=True)
    echo_seconds = time.monotonic() - t1
    scpu, ccpu = server.cpu() - scpu, cpu_seconds() - ccpu
    mismatches = sum(1 for r in results if r is False)
    errors += [f"echo: {type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    sent = cfg.echo_bytes * sum(1 for r in results if r is True)
    await asyncio.sleep(0.2)
    after = server.request({"cmd": "trim"})
    s2t, s2raw = after["rss"], after["rss_untrimmed"]
    c2t, c2raw = _client_rss(trim=True)

    if progress:
        progress("scale: closing")
    closed = 0

    async def close_one(stream: MptcpsecStream) -> None:
        nonlocal closed
        stream.close()
        try:
            await stream.wait_closed(30)
            closed += 1
        except Exception as exc:
            errors.append(f"close: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(close_one(s) for s in streams))
    gb = max(sent, 1) / 1e9
    return ScaleReport(
        cfg, round((s1 - s0) / n / KIB, 1), round((c1 - c0) / n / KIB, 1),
        round((s1 - s0 + s2t - s1t) / n / KIB, 1), round((c1 - c0 + c2t - c1t) / n / KIB, 1),
        round((s2raw - s0) / n / KIB, 1), round((c2raw - c0) / n / KIB, 1),
        round(echo_seconds, 3), round(sent / echo_seconds / 1e6, 1) if sent else 0.0,
        round(scpu / gb, 2), round(ccpu / gb, 2), len(streams), round(connect_seconds, 2),
        errors, mismatches, closed, [(a, round(b, 1), round(c, 1)) for a, b, c in samples])


async def _wait_established(streams: list[MptcpsecStream], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if all(sum(1 for s in st.connection.subflows.values()
                   if s.state.value == "established") >= 2 for st in streams):
            return
        await asyncio.sleep(0.01)


def run_scale(cfg: ScaleConfig, progress: Callable[[str], None] | None = None) -> ScaleReport:
    psk = os.urandom(32)
    spec = {"handler": "echo", "psk": psk.hex(),
            "servers": [{"name": "mptcpsec", "peer": "mptcpsec", "hosts": list(HOSTS),
                         "options": MptcpsecOptions(key_exchange=cfg.key_exchange).as_dict()}]}
    with ServerProcess(spec) as server:
        keys = PeerKeys(psk, fingerprint=server.ready["keys"]["fingerprint"])
        return asyncio.run(asyncio.wait_for(_run(cfg, server, keys, progress), cfg.timeout))


def format_report(rep: ScaleReport) -> str:
    cfg = rep.config
    rows = [
        {"what": "connections open (2 subflows each)", "value": rep.connections_opened},
        {"what": "seconds to open them", "value": rep.connect_seconds},
        {"what": "server KiB per idle connection", "value": rep.server_idle_kib_per_conn},
        {"what": "client KiB per idle connection", "value": rep.client_idle_kib_per_conn},
        {"what": "server KiB per connection, idle after echo",
         "value": rep.server_after_kib_per_conn},
        {"what": "client KiB per connection, idle after echo",
         "value": rep.client_after_kib_per_conn},
        {"what": "  the same without malloc_trim: server",
         "value": rep.server_after_untrimmed_kib_per_conn},
        {"what": "  the same without malloc_trim: client",
         "value": rep.client_after_untrimmed_kib_per_conn},
        {"what": f"echo: MB/s sent ({cfg.echo_bytes / 1e6:g} MB each, all at once)",
         "value": rep.echo_MBps},
        {"what": "server CPU s per GB sent (and echoed)", "value": rep.server_cpu_s_per_GB},
        {"what": "client CPU s per GB sent (and echoed)", "value": rep.client_cpu_s_per_GB},
        {"what": "echo mismatches", "value": rep.mismatches},
        {"what": "errors", "value": len(rep.errors)},
        {"what": "closed cleanly", "value": rep.closed_cleanly},
    ]
    cols = [report.Column("what", "measure", width=46), report.Column("value", "value")]
    worst = max(rep.server_idle_kib_per_conn, rep.client_idle_kib_per_conn,
                rep.server_after_kib_per_conn, rep.client_after_kib_per_conn)
    ok = (not rep.errors and not rep.mismatches and worst <= 64
          and rep.connections_opened == cfg.connections
          and rep.closed_cleanly == rep.connections_opened)
    lines = [f"scale: {cfg.connections} connections x 2 subflows ({cfg.key_exchange}), echo",
             "", report.format_table(cols, rows), "",
             f"target: no errors, <= 64 KiB per idle connection: {'met' if ok else 'MISSED'}"]
    lines += [f"error: {e}" for e in rep.errors[:10]]
    return "\n".join(lines)


def plot(rep: ScaleReport, out_dir: str) -> str:
    plt = report.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    n = [s[0] for s in rep.samples]
    base_s, base_c = rep.samples[0][1], rep.samples[0][2]
    ax1.plot(n, [(s[1] - base_s) / 1024 for s in rep.samples], "o-",
             label=f"server ({rep.server_idle_kib_per_conn:g} KiB per connection)")
    ax1.plot(n, [(s[2] - base_c) / 1024 for s in rep.samples], "s-",
             label=f"client ({rep.client_idle_kib_per_conn:g} KiB per connection)")
    ax1.plot(n, [k * 64 / 1024 for k in n], ":", color="gray", label="64 KiB per connection")
    ax1.set_xlabel("idle connections open (2 subflows each)")
    ax1.set_ylabel("RSS growth (MiB)")
    ax1.set_title("Memory of idle connections")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    labels = ["server idle", "client idle", "server idle after echo\n(after malloc_trim)",
              "client idle after echo\n(after malloc_trim)"]
    vals = [rep.server_idle_kib_per_conn, rep.client_idle_kib_per_conn,
            rep.server_after_kib_per_conn, rep.client_after_kib_per_conn]
    report.barh(ax2, labels, vals, "KiB per connection")
    ax2.axvline(64, color="tab:red", linestyle="--", label="target 64 KiB")
    ax2.set_xlim(0, max(ax2.get_xlim()[1], 64 * 1.3))
    ax2.set_title(f"{rep.connections_opened} connections: echo {rep.echo_MBps:g} MB/s, "
                  f"{len(rep.errors)} errors")
    ax2.legend(fontsize=8)
    return str(report.save_figure(fig, out_dir, "scale"))

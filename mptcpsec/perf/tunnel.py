"""`mptcpsec bench tunnel`: the converter against direct TCP, in one run.

Two paths between tunnel and gateway through relays in this process (one of
``fast_rtt_ms``, one of ``slow_rtt_ms`` round trip, `perf.paths`); the destination
(`python -m http.server`), the gateway and each tunnel run in their own processes. The
"direct" peer is curl to the destination through one relay of ``fast_rtt_ms``.

- time to first byte: curl's ``time_starttransfer`` for a 1 kB file, direct; through
  SOCKS5 without a pool (a key exchange per connection), with a warm pool, with a warm pool
  and an early SOCKS reply; through a forward (pipelined) with a pool;
- bulk: a ``bulk_bytes`` download through the tunnel (curl, no pool) against
  ``mptcpsec connect --send`` of the same size to a ``serve --discard`` over the same paths
  (both include their key exchange), and direct over the fast path;
- rate: ``parallel`` connections at once, ``batches`` times, from a load process (a
  minimal SOCKS5 client on asyncio; curl's process start-up would be the bottleneck) to a
  responder process, direct over the fast path and through the tunnel with and without a
  pool: connections per second, each response checked for its length.

The relays delay bytes, not TCP's SYNs (`perf.handshake`): TCP connects at once here, so
"direct" has no connection round trip while the converter's own round trips are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import report
from .paths import open_paths

HOSTS = ("127.0.0.1", "127.0.0.2")
DEST = "127.0.0.3"
CMD = [sys.executable, "-m", "mptcpsec"]
#: Bytes of each response in the rate test.
RATE_BODY = 100_000


@dataclass
class TunnelBenchConfig:
    fast_rtt_ms: float = 10.0
    slow_rtt_ms: float = 30.0
    repeats: int = 15
    bulk_bytes: int = 50_000_000
    parallel: int = 100
    batches: int = 3
    pool: int = 4
    timeout: float = 120.0


@dataclass
class TtfbRow:
    peer: str
    median_ms: float
    min_ms: float
    max_ms: float
    over_direct_ms: float = 0.0
    #: The issue's bound for this row (direct + one slow RTT, or direct + 5 ms with a pool).
    target_ms: float | None = None
    met: bool | None = None


@dataclass
class TunnelReport:
    config: TunnelBenchConfig
    ttfb: list[TtfbRow] = field(default_factory=list)
    bulk: list[dict[str, Any]] = field(default_factory=list)
    rate: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=report.machine_info)

    def as_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "ttfb": [asdict(r) for r in self.ttfb],
                "bulk": self.bulk, "rate": self.rate, "machine": self.machine}


def _free_port(*hosts: str) -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for h in hosts[1:]:
                with socket.socket() as t:
                    t.bind((h, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


async def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes],
                     timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            _, w = await asyncio.open_connection(host, port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing on {host}:{port}")


async def _curl(*args: str, timeout: float = 60) -> tuple[int, dict[str, float], bytes]:
    fmt = '{"ttfb":%{time_starttransfer},"total":%{time_total},"size":%{size_download}}'
    p = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", str(int(timeout)), "-o", "-", "-w", "\n" + fmt, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await p.communicate()
    body, _, meta = out.rpartition(b"\n")
    try:
        stats = json.loads(meta)
    except ValueError:
        stats = {}
    return p.returncode or 0, stats, body


class _Procs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(list(args), stdout=(self.tmp / f"{name}.out").open("wb"),
                             stderr=(self.tmp / f"{name}.err").open("wb"),
                             stdin=subprocess.DEVNULL, cwd=self.tmp)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(2)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


async def _run(cfg: TunnelBenchConfig, say: Callable[[str], None], tmp: Path) -> TunnelReport:
    rep = TunnelReport(cfg)
    www = tmp / "www"
    www.mkdir()
    (www / "1k.bin").write_bytes(os.urandom(1000))
    with (www / "bulk.bin").open("wb") as f:
        left = cfg.bulk_bytes
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    key = secrets.token_hex(32)
    (tmp / "clients.psk").write_text(f"bench {key}\n")
    (tmp / "bench.psk").write_text(key + "\n")
    procs = _Procs(tmp)
    paths = None
    try:
        hport = _free_port(DEST)
        http = procs.start(sys.executable, "-m", "http.server", "--bind", DEST, "--directory",
                           str(www), str(hport), name="http")
        gport = _free_port(*HOSTS)
        gw = procs.start(*CMD, "gateway", *[a for h in HOSTS for a in ("-l", f"{h}:{gport}")],
                         "-k", "psk", "--psk-clients", "clients.psk", "--allow", f"{DEST}/32",
                         "--no-live", "--quiet", name="gateway")
        sport_srv = _free_port(*HOSTS)
        sink = procs.start(*CMD, "serve", *[a for h in HOSTS for a in ("-l", f"{h}:{sport_srv}")],
                           "-k", "psk", "--psk-file", "bench.psk", "--discard", "--quiet",
                           name="serve")
        await _wait_port(DEST, hport, http)
        for h in HOSTS:
            await _wait_port(h, gport, gw)
            await _wait_port(h, sport_srv, sink)
        rtts = (cfg.fast_rtt_ms, cfg.slow_rtt_ms)
        paths = await open_paths([(h, gport) for h in HOSTS], rtts)
        spaths = await open_paths([(h, sport_srv) for h in HOSTS], rtts)
        direct = await open_paths([(DEST, hport)], (cfg.fast_rtt_ms,))
        link = [a for (h, p), b in zip(paths.addresses, HOSTS, strict=True)
                for a in ("-c", f"{h}:{p}", "-b", b)]
        auth = ["-k", "psk", "--psk-file", "bench.psk", "--psk-identity", "bench", "--no-join",
                "--no-live", "--quiet"]
        tunnels: dict[str, tuple[int, int]] = {}
        for name, extra in (("plain", []), ("pool", ["--pool", str(cfg.pool)]),
                            ("early", ["--pool", str(cfg.pool), "--socks-early-reply"])):
            sp, fp = _free_port("127.0.0.1"), _free_port("127.0.0.1")
            t = procs.start(*CMD, "tunnel", *link, *auth, "--socks", f"127.0.0.1:{sp}",
                            "--forward", f"127.0.0.1:{fp}={DEST}:{hport}", *extra,
                            name=f"tunnel-{name}")
            await _wait_port("127.0.0.1", sp, t)
            tunnels[name] = (sp, fp)
        await asyncio.sleep(1.5)  # pools fill

        dh, dp = direct.addresses[0]
        peers: list[tuple[str, list[str]]] = [
            ("direct (fast path)", [f"http://{dh}:{dp}/1k.bin"]),
            ("socks5, no pool", ["--socks5-hostname", f"127.0.0.1:{tunnels['plain'][0]}",
                                 f"http://{DEST}:{hport}/1k.bin"]),
            ("socks5, pool", ["--socks5-hostname", f"127.0.0.1:{tunnels['pool'][0]}",
                              f"http://{DEST}:{hport}/1k.bin"]),
            ("socks5, pool, early reply", ["--socks5-hostname",
                                           f"127.0.0.1:{tunnels['early'][0]}",
                                           f"http://{DEST}:{hport}/1k.bin"]),
            ("forward, no pool", [f"http://127.0.0.1:{tunnels['plain'][1]}/1k.bin"]),
            ("forward, pool", [f"http://127.0.0.1:{tunnels['pool'][1]}/1k.bin"]),
        ]
        samples: dict[str, list[float]] = {p: [] for p, _ in peers}
        for i in range(cfg.repeats):  # interleaved, so drift hits every peer alike
            say(f"tunnel: time to first byte, run {i + 1}/{cfg.repeats}")
            for name, args in peers:
                rc, st, _ = await _curl(*args)
                if rc == 0 and "ttfb" in st:
                    samples[name].append(st["ttfb"] * 1000)
                await asyncio.sleep(0.05)
        base = statistics.median(samples[peers[0][0]] or [float("nan")])
        for name, _ in peers:
            vals = samples[name] or [float("nan")]
            med = statistics.median(vals)
            row = TtfbRow(name, round(med, 2), round(min(vals), 2), round(max(vals), 2),
                          round(med - base, 2))
            if name != peers[0][0]:
                row.target_ms = round(base + (5.0 if "pool" in name and "no pool" not in name
                                              else cfg.slow_rtt_ms), 2)
                row.met = med <= row.target_ms
            rep.ttfb.append(row)

        say("tunnel: bulk through the tunnel")
        bulk_url = f"http://127.0.0.1:{tunnels['plain'][1]}/bulk.bin"
        rc, st, body = await _curl(bulk_url, timeout=cfg.timeout)
        ok = rc == 0 and len(body) == cfg.bulk_bytes
        t_tun = st.get("total", float("nan"))
        say("tunnel: bulk, mptcpsec connect --send")
        sp_args = [a for (h, p), b in zip(spaths.addresses, HOSTS, strict=True)
                   for a in ("-c", f"{h}:{p}", "-b", b)]
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *CMD, "connect", *sp_args, "-k", "psk", "--psk-file", str(tmp / "bench.psk"),
            "--no-join", "--send", str(cfg.bulk_bytes), "--json", "--quiet",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), cfg.timeout)
        wall = time.monotonic() - t0
        try:
            t_send = float(json.loads(out)["duration_s"])
        except (ValueError, KeyError):
            t_send = float("nan")
        say("tunnel: bulk direct")
        rc2, st2, body2 = await _curl(f"http://{dh}:{dp}/bulk.bin", timeout=cfg.timeout)
        t_dir = st2.get("total", float("nan"))
        mb = cfg.bulk_bytes / 1e6
        rep.bulk = [
            {"peer": "tunnel (curl via forward, no pool)", "seconds": round(t_tun, 3),
             "MBps": round(mb / t_tun, 1) if t_tun == t_tun else None, "intact": ok},
            {"peer": "mptcpsec connect --send", "seconds": round(t_send, 3),
             "MBps": round(mb / t_send, 1) if t_send == t_send else None,
             "intact": proc.returncode == 0, "process_wall_s": round(wall, 3)},
            {"peer": "direct TCP (curl, fast path only)", "seconds": round(t_dir, 3),
             "MBps": round(mb / t_dir, 1) if t_dir == t_dir else None,
             "intact": rc2 == 0 and len(body2) == cfg.bulk_bytes},
        ]
        if rep.bulk[0]["MBps"] and rep.bulk[1]["MBps"]:
            rep.bulk[0]["ratio_to_connect_send"] = round(rep.bulk[0]["MBps"]
                                                         / rep.bulk[1]["MBps"], 2)

        say("tunnel: parallel connections")
        rport = _free_port(DEST)
        resp = procs.start(sys.executable, "-m", "mptcpsec.perf.tunnel", "respond", DEST,
                           str(rport), str(RATE_BODY), name="respond")
        await _wait_port(DEST, rport, resp)
        rdirect = await open_paths([(DEST, rport)], (cfg.fast_rtt_ms,))
        rh, rp = rdirect.addresses[0]
        runs = [("direct (fast path)", [rh, str(rp), "-", "0"]),
                *((f"socks5, {n}", ["127.0.0.1", str(tunnels[k][0]), DEST, str(rport)])
                  for k, n in (("plain", "no pool"), ("pool", "pool")))]
        for name, target in runs:
            say(f"tunnel: {cfg.parallel} parallel connections x {cfg.batches} ({name})")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mptcpsec.perf.tunnel", "load", *target,
                str(cfg.parallel), str(cfg.batches), stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), cfg.timeout)
            try:
                rep.rate[name] = json.loads(out)
            except ValueError:
                rep.rate[name] = {"error": out.decode(errors="replace")[-300:]}
        await rdirect.close()
        await direct.close()
        await spaths.close()
    finally:
        if paths is not None:
            await paths.close()
        procs.close()
    return rep


def run_tunnel(cfg: TunnelBenchConfig, progress: Callable[[str], None] | None = None
               ) -> TunnelReport:
    if shutil.which("curl") is None:
        raise SystemExit("mptcpsec bench tunnel: needs curl on PATH")
    say = progress or (lambda m: None)
    with tempfile.TemporaryDirectory(prefix="mptcpsec-bench-tunnel-") as tmp:
        return asyncio.run(_run(cfg, say, Path(tmp)))


def format_report(rep: TunnelReport) -> str:
    c = rep.config
    cols = [report.Column("peer", "time to first byte", width=28),
            report.Column("median_ms", "median ms", "{:.1f}"),
            report.Column("min_ms", "min", "{:.1f}", width=6),
            report.Column("max_ms", "max", "{:.1f}", width=6),
            report.Column("over_direct_ms", "+direct ms", "{:+.1f}"),
            report.Column("target_ms", "target ms", "{:.1f}"),
            report.Column("met", "met", width=5)]
    out = [f"paths {c.fast_rtt_ms:g} ms and {c.slow_rtt_ms:g} ms RTT; {c.repeats} runs each",
           report.format_table(cols, [asdict(r) for r in rep.ttfb]), ""]
    bcols = [report.Column("peer", f"bulk {c.bulk_bytes / 1e6:g} MB", width=34),
             report.Column("seconds", "seconds", "{:.2f}"),
             report.Column("MBps", "MB/s", "{:.1f}"),
             report.Column("ratio_to_connect_send", "x send", "{:.2f}"),
             report.Column("intact", "intact", width=6)]
    out += [report.format_table(bcols, rep.bulk), ""]
    for name, r in rep.rate.items():
        if "per_second" not in r:
            out.append(f"{c.parallel} parallel x {c.batches} ({name}): {r}")
            continue
        out.append(f"{c.parallel} parallel x {c.batches} ({name}): {r['connections']} ok, "
                   f"{r['failed']} failed, {r['per_second']:.1f} connections/s")
    return "\n".join(out)


def plot(rep: TunnelReport, out_dir: str) -> str:
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    report.barh(ax, [r.peer for r in rep.ttfb], [r.median_ms for r in rep.ttfb],
                "time to first byte, ms (median; whiskers: min-max)",
                spread=[(r.min_ms, r.max_ms) for r in rep.ttfb])
    ax.set_title(f"curl through the converter, paths {rep.config.fast_rtt_ms:g}/"
                 f"{rep.config.slow_rtt_ms:g} ms RTT")
    return str(report.save_figure(fig, out_dir, "tunnel"))


# ---------------------------------------------------------------------- helper processes

def _head(size: int) -> bytes:
    return b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % size


async def _respond(host: str, port: int, size: int) -> None:
    """An HTTP/1.0 responder: any request gets `size` bytes (the rate test's destination)."""
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    head = _head(size)

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await r.readuntil(b"\r\n\r\n")
            w.write(head + body)
            await w.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            w.close()

    srv = await asyncio.start_server(handle, host, port, backlog=1024)
    async with srv:
        await srv.serve_forever()


async def _load(host: str, port: int, dest: str, dport: int, parallel: int,
                batches: int) -> dict[str, Any]:
    """`parallel` connections at once, `batches` times: via SOCKS5 (`dest` given) or direct."""

    async def one() -> int:
        r, w = await asyncio.open_connection(host, port)
        try:
            if dest != "-":
                name = dest.encode()
                w.write(b"\x05\x01\x00")
                if await r.readexactly(2) != b"\x05\x00":
                    return -1
                w.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name
                        + dport.to_bytes(2, "big"))
                rep = await r.readexactly(10)
                if rep[1] != 0:
                    return -1
            w.write(b"GET / HTTP/1.0\r\n\r\n")
            data = await r.read()
            return len(data)
        finally:
            w.close()

    ok = bad = 0
    t0 = time.monotonic()
    for _ in range(batches):
        results = await asyncio.gather(*(one() for _ in range(parallel)),
                                       return_exceptions=True)
        for n in results:
            if n == len(_head(RATE_BODY)) + RATE_BODY:
                ok += 1
            else:
                bad += 1
    elapsed = time.monotonic() - t0
    return {"connections": ok, "failed": bad, "seconds": round(elapsed, 3),
            "per_second": round(ok / elapsed, 1)}


def _main(argv: list[str]) -> int:
    if argv[:1] == ["respond"] and len(argv) == 4:
        asyncio.run(_respond(argv[1], int(argv[2]), int(argv[3])))
        return 0
    if argv[:1] == ["load"] and len(argv) == 7:
        res = asyncio.run(_load(argv[1], int(argv[2]), argv[3], int(argv[4]), int(argv[5]),
                                int(argv[6])))
        print(json.dumps(res))
        return 0
    print("usage: python -m mptcpsec.perf.tunnel respond HOST PORT SIZE | "
          "load HOST PORT DEST|- DPORT PARALLEL BATCHES", file=sys.stderr)
    return 2


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(_main(sys.argv[1:]))

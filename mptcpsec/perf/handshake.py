"""`mptcpsec bench handshake`: time to the first application byte for each key exchange.

Two paths through relays in this process, one emulating ``fast_rtt_ms`` and the other
``slow_rtt_ms`` of round trip, in both orders. split-path runs its exchange over both;
tls and psk run theirs on the first path, and the client connects over that path only:
a second path would join afterwards, and under emulation the lowest-RTT scheduler (which
reads the kernel's RTT, blind to a delay added in user space) could send the first byte
over the slow one. A third set of runs over paths without delay gives each exchange's
computing time. The server runs in its own process with one ``first-byte`` handler per
key exchange: it notes when its handler started (its side of the handshake done) and
when the client's first byte arrived.

Measured from the moment the client starts connecting, on the monotonic clock both
processes share: ``ready`` (``connect()`` returned: the client has its keys and may
write), ``server ready`` and ``first byte`` (the server application has the byte the
client wrote as soon as it could). Each is also given in round trips of the slower path.
The relays delay bytes, not TCP's SYNs, so the TCP connections are up at once here (a
real path adds one round trip of its own before any of this); ``tcp_ms`` shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..aio.api import Path, connect
from ..crypto.keyschedule import Role
from . import report
from .paths import EmulatedPaths, open_paths
from .peers import FIRST_BYTE, MptcpsecOptions, PeerKeys
from .procs import ServerProcess

KEY_EXCHANGES = ("tls", "split-path", "psk")
HOSTS = ("127.0.0.1", "127.0.0.2")


@dataclass
class HandshakeConfig:
    fast_rtt_ms: float = 10.0
    slow_rtt_ms: float = 50.0
    key_exchanges: tuple[str, ...] = KEY_EXCHANGES
    repeats: int = 7
    timeout: float = 30.0


@dataclass
class HandshakeRow:
    key_exchange: str
    first_path_rtt_ms: float
    second_path_rtt_ms: float
    tcp_ms: float
    ready_ms: float
    server_ready_ms: float
    first_byte_ms: float
    #: In round trips of the slower of the two paths (None for the paths without delay).
    ready_rtts: float | None
    first_byte_rtts: float | None
    #: Round trips the exchange itself took: ready, less TCP and less the computing time
    #: (ready after TCP over paths without delay), over the RTT of the path(s) it used.
    exchange_rtts: float | None = None
    runs: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HandshakeReport:
    config: HandshakeConfig
    rows: list[HandshakeRow]

    def as_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "rows": [r.as_dict() for r in self.rows]}


async def _tcp_ms(paths: EmulatedPaths) -> float:
    """Opening the TCP connections of the paths, one after the other as connect() does."""
    t0 = time.monotonic()
    for address in paths.addresses:
        _, writer = await asyncio.open_connection(*address)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return (time.monotonic() - t0) * 1000


async def _measure(cfg: HandshakeConfig, ready: dict[str, Any], keys: PeerKeys,
                   progress: Callable[[str], None] | None) -> list[HandshakeRow]:
    orders = [(cfg.fast_rtt_ms, cfg.slow_rtt_ms), (cfg.slow_rtt_ms, cfg.fast_rtt_ms),
              (0.0, 0.0)]
    slow = max(cfg.fast_rtt_ms, cfg.slow_rtt_ms)
    setups = []
    for kx in cfg.key_exchanges:
        addrs = [tuple(a) for a in ready["addresses"][kx]]
        for order in orders:
            setups.append((kx, order, await open_paths(addrs, order)))
    samples: dict[tuple[str, tuple[float, float]], list[dict[str, float]]] = {
        (kx, order): [] for kx, order, _ in setups}
    errors: dict[tuple[str, tuple[float, float]], list[str]] = {k: [] for k in samples}
    try:
        for rep in range(cfg.repeats):
            for kx, order, paths in setups:
                if progress:
                    progress(f"handshake run {rep + 1}/{cfg.repeats}: {kx}, paths "
                             f"{order[0]:g}/{order[1]:g} ms")
                tcp = await _tcp_ms(paths)
                opts = MptcpsecOptions(key_exchange=kx)
                stream = None
                try:
                    t0 = time.monotonic()
                    stream = await asyncio.wait_for(
                        connect([Path(a, local=HOSTS[i]) for i, a in
                                 enumerate(paths.addresses[:2 if kx == "split-path" else 1])],
                                opts.config(Role.CLIENT, keys)), cfg.timeout)
                    t_ready = time.monotonic()
                    stream.write(b"!")
                    start, byte = FIRST_BYTE.unpack(
                        await asyncio.wait_for(stream.readexactly(FIRST_BYTE.size), cfg.timeout))
                    samples[(kx, order)].append({
                        "tcp_ms": tcp, "ready_ms": (t_ready - t0) * 1000,
                        "server_ready_ms": (start - t0) * 1000,
                        "first_byte_ms": (byte - t0) * 1000})
                except Exception as exc:  # a failed handshake is a result, never a crash
                    errors[(kx, order)].append(f"{type(exc).__name__}: {exc}")
                finally:
                    if stream is not None:
                        stream.abort("benchmark run done")
                await asyncio.sleep(0.02)
    finally:
        for _, _, paths in setups:
            await paths.close()
    def med(runs: list[dict[str, float]], key: str) -> float:
        return round(report.median([r[key] for r in runs]), 2) if runs else float("nan")

    compute = {kx: med(runs, "ready_ms") - med(runs, "tcp_ms")
               for (kx, order), runs in samples.items() if order == (0.0, 0.0)}
    rows = []
    for (kx, order), runs in samples.items():
        slow = max(order)
        used = slow if kx == "split-path" else order[0]
        ready, tcp = med(runs, "ready_ms"), med(runs, "tcp_ms")
        exchange = None
        if used and kx in compute:
            exchange = round((ready - tcp - compute[kx]) / used, 2)
        rows.append(HandshakeRow(
            kx, order[0], order[1], tcp, ready, med(runs, "server_ready_ms"),
            med(runs, "first_byte_ms"), round(ready / slow, 2) if slow else None,
            round(med(runs, "first_byte_ms") / slow, 2) if slow else None, exchange,
            [{k: round(v, 2) for k, v in r.items()} for r in runs], errors[(kx, order)]))
    return rows


def run_handshake(cfg: HandshakeConfig, progress: Callable[[str], None] | None = None,
                  ) -> HandshakeReport:
    psk = os.urandom(32)
    spec = {"handler": "first-byte", "psk": psk.hex(),
            "servers": [{"name": kx, "peer": "mptcpsec", "hosts": list(HOSTS),
                         "options": MptcpsecOptions(key_exchange=kx).as_dict()}
                        for kx in cfg.key_exchanges]}
    with ServerProcess(spec) as server:
        keys = PeerKeys(psk, fingerprint=server.ready["keys"]["fingerprint"])
        rows = asyncio.run(_measure(cfg, server.ready, keys, progress))
    return HandshakeReport(cfg, rows)


COLUMNS = [
    report.Column("key_exchange", "key exchange", width=12),
    report.Column("paths", "path RTTs ms", width=12),
    report.Column("tcp_ms", "TCP ms", "{:.2f}", width=7),
    report.Column("ready_ms", "ready ms", "{:.1f}", width=8),
    report.Column("ready_rtts", "ready RTT", "{:.2f}", width=9),
    report.Column("server_ready_ms", "srv ready ms", "{:.1f}"),
    report.Column("first_byte_ms", "1st byte ms", "{:.1f}"),
    report.Column("first_byte_rtts", "1st byte RTT", "{:.2f}"),
    report.Column("exchange_rtts", "exchange RTTs", "{:.2f}"),
    report.Column("errors", "errors", width=6),
]


def format_report(rep: HandshakeReport) -> str:
    cfg = rep.config
    slow = max(cfg.fast_rtt_ms, cfg.slow_rtt_ms)
    rows = []
    for r in rep.rows:
        d = r.as_dict()
        d["paths"] = f"{r.first_path_rtt_ms:g} / {r.second_path_rtt_ms:g}"
        d["errors"] = len(r.errors) or None
        rows.append(d)
    lines = [f"handshake: time from starting to connect, median of {cfg.repeats} runs; RTT = "
             f"round trips of the slower path ({slow:g} ms)", "",
             report.format_table(COLUMNS, rows)]
    sp = [r for r in rep.rows if r.key_exchange == "split-path" and r.ready_rtts is not None]
    if sp:
        worst = max(sp, key=lambda r: r.ready_ms - r.tcp_ms)
        base = next((r for r in rep.rows if r.key_exchange == "split-path"
                     and r.ready_rtts is None), None)
        after_tcp = (worst.ready_ms - worst.tcp_ms) / slow
        lines += ["", f"split-path: client ready {after_tcp:.2f} RTT of the slower path after "
                  f"the TCP connections are up"
                  + (f", {base.ready_ms - base.tcp_ms:.1f} ms of it computing" if base else "")
                  + f"; exchange {worst.exchange_rtts} RTT (target 1 RTT: "
                  f"{'met' if (worst.exchange_rtts or 9) <= 1.05 else 'MISSED'})"]
    return "\n".join(lines)


def plot(rep: HandshakeReport, out_dir: str) -> str:
    plt = report.pyplot()
    cfg = rep.config
    slow = max(cfg.fast_rtt_ms, cfg.slow_rtt_ms)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    shown = [r for r in rep.rows if r.ready_rtts is not None]
    labels = [f"{r.key_exchange}\n{r.first_path_rtt_ms:g}/{r.second_path_rtt_ms:g} ms"
              for r in shown]
    xs = list(range(len(shown)))
    w = 0.38
    ax.bar([x - w / 2 for x in xs], [r.ready_ms for r in shown], w,
           label="client ready (connect returned)")
    ax.bar([x + w / 2 for x in xs], [r.first_byte_ms for r in shown], w,
           label="first application byte at the server")
    for k in (1, 2):
        ax.axhline(k * slow, color="gray", linestyle=":", linewidth=0.8)
        ax.text(len(xs) - 0.5, k * slow, f"{k} RTT", fontsize=7, va="bottom", ha="right")
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("ms from starting to connect (median)")
    ax.set_title(f"Handshake over paths of {cfg.fast_rtt_ms:g} and {cfg.slow_rtt_ms:g} ms RTT "
                 "(first path / second path)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return str(report.save_figure(fig, out_dir, "handshake"))

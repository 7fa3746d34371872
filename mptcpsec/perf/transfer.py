"""`mptcpsec bench transfer`: one-way bulk throughput over loopback against every peer.

The servers (sinks) of all peers run in one separate process (`ServerProcess`) and the
clients in this one, so on a two-core machine each side has a core, as two hosts would.
Each run opens a fresh connection, waits until every subflow is up (the handshake is not
timed), then times N bytes from the first write to the sink's answer. Runs are interleaved
across rows and repeated; the figure is the median.

Rows: mptcpsec with 1, 2, 4, 8 subflows (AES-128-GCM) and 2 subflows with ChaCha20-Poly1305,
TLS 1.3 (AES-128-GCM, pinned in the server process) over one asyncio connection, plain
asyncio TCP, the kernel's MPTCP socket when it has one; and mptcpsec with 2 subflows over a
range of record sizes (``max_record``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..wire.header import MAX_PLAINTEXT
from . import report
from .peers import MptcpsecOptions, PeerKeys, StreamConn, bulk_send, open_conn, payload_block
from .procs import OPENSSL_AES128_CONF, ServerProcess

MB = report.MB
SUBFLOWS = (1, 2, 4, 8)
RECORD_SIZES = (1400, 4096, 16384, MAX_PLAINTEXT)
PEER_CHOICES = ("mptcpsec", "tls", "tcp", "kernel-mptcp")
HOSTS = [f"127.0.0.{i}" for i in range(1, 9)]
AES, CHACHA = "aes-128-gcm", "chacha20-poly1305"


@dataclass(frozen=True)
class TransferCase:
    """One row: a peer and its settings."""

    label: str
    peer: str
    subflows: int = 1
    algorithm: str = AES
    max_record: int = 16384
    group: str = "peers"  # "peers" (the comparison) or "record-size" (the sweep)


@dataclass
class TransferConfig:
    nbytes: int = 256 * MB
    subflows: tuple[int, ...] = SUBFLOWS
    record_sizes: tuple[int, ...] = RECORD_SIZES
    peers: tuple[str, ...] = PEER_CHOICES
    chacha: bool = True
    repeats: int = 3
    #: Untimed transfer per row before the timed runs (page faults, caches, TCP windows).
    warmup_bytes: int = 16 * MB
    sweep_subflows: int = 2

    def cases(self) -> list[TransferCase]:
        out: list[TransferCase] = []
        if "mptcpsec" in self.peers:
            for n in self.subflows:
                out.append(TransferCase(f"mptcpsec {n} subflow{'s' * (n > 1)} {AES}",
                                        "mptcpsec", n, AES))
            if self.chacha:
                n = 2 if 2 in self.subflows or not self.subflows else self.subflows[0]
                out.append(TransferCase(f"mptcpsec {n} subflow{'s' * (n > 1)} {CHACHA}",
                                        "mptcpsec", n, CHACHA))
        names = {"tls": "TLS 1.3 asyncio (ssl, AES-128-GCM)", "tcp": "TCP asyncio (plain)",
                 "kernel-mptcp": "kernel MPTCP asyncio (plain)"}
        for peer in ("tls", "tcp", "kernel-mptcp"):
            if peer in self.peers:
                out.append(TransferCase(names[peer], peer))
        if "mptcpsec" in self.peers:
            n = self.sweep_subflows
            for size in self.record_sizes:
                out.append(TransferCase(f"mptcpsec {n} subflows {AES} record {size} B",
                                        "mptcpsec", n, AES, size, group="record-size"))
        return out


@dataclass
class TransferRow:
    label: str
    peer: str
    subflows: int | None
    algorithm: str | None
    max_record: int | None
    group: str
    MBps: float
    runs: list[float]
    client_cpu_s_per_GB: float
    server_cpu_s_per_GB: float
    detail: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TransferReport:
    config: TransferConfig
    rows: list[TransferRow]
    notes: list[str]

    def row(self, label: str) -> TransferRow | None:
        return next((r for r in self.rows if r.label == label), None)

    def ratios(self) -> dict[str, float]:
        """The issue's targets: mptcpsec 2 subflows AES-128-GCM against TLS and TCP."""
        out: dict[str, float] = {}
        mine = next((r for r in self.rows if r.group == "peers" and r.peer == "mptcpsec"
                     and r.subflows == 2 and r.algorithm == AES), None)
        if mine is None:
            return out
        for peer in ("tls", "tcp", "kernel-mptcp"):
            other = next((r for r in self.rows if r.peer == peer and r.MBps > 0), None)
            if other is not None:
                out[f"mptcpsec-2-aes128 / {peer}"] = round(mine.MBps / other.MBps, 3)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "rows": [r.as_dict() for r in self.rows],
                "ratios": self.ratios(), "notes": self.notes}


def _server_spec(cases: Sequence[TransferCase], psk: bytes) -> dict[str, Any]:
    servers = []
    for alg in dict.fromkeys(c.algorithm for c in cases if c.peer == "mptcpsec"):
        nmax = max(c.subflows for c in cases if c.peer == "mptcpsec" and c.algorithm == alg)
        # The sink accepts records of any size; it only ever sends a 16-byte answer.
        opts = MptcpsecOptions(algorithm=alg, max_record=MAX_PLAINTEXT)
        servers.append({"name": f"mptcpsec:{alg}", "peer": "mptcpsec", "hosts": HOSTS[:nmax],
                        "options": opts.as_dict()})
    for peer in dict.fromkeys(c.peer for c in cases if c.peer != "mptcpsec"):
        servers.append({"name": peer, "peer": peer, "hosts": HOSTS[:1]})
    return {"handler": "sink", "psk": psk.hex(), "servers": servers}


async def _wait_subflows(conn: Any, n: int, timeout: float = 10.0) -> None:
    if not isinstance(conn, StreamConn):
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    subflows = conn.stream.connection.subflows
    while sum(1 for s in subflows.values() if s.state.value == "established") < n:
        if loop.time() > deadline:
            raise TimeoutError(f"only some of {n} subflows came up")
        await asyncio.sleep(0.005)


async def _one(case: TransferCase, ready: dict[str, Any], keys: PeerKeys, block: bytes,
               nbytes: int) -> tuple[Any, dict[str, Any]]:
    name = f"mptcpsec:{case.algorithm}" if case.peer == "mptcpsec" else case.peer
    addresses = [tuple(a) for a in ready["addresses"][name]]
    opts = MptcpsecOptions(algorithm=case.algorithm, max_record=case.max_record)
    conn, info = await open_conn(case.peer, addresses, keys, opts, case.subflows,
                                 cert_pem=ready["keys"]["cert_pem"])
    try:
        await _wait_subflows(conn, case.subflows)
        sample = await bulk_send(conn, block, nbytes)
    finally:
        await conn.aclose()
    return sample, info


def run_transfer(cfg: TransferConfig, progress: Callable[[str], None] | None = None,
                 ) -> TransferReport:
    """Measure every case of ``cfg``; see the module docstring."""
    cases = cfg.cases()
    psk = os.urandom(32)
    keys = PeerKeys(psk)
    notes: list[str] = []
    block = payload_block(min(16 << 20, max(cfg.nbytes, 1 << 20)))
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "openssl.cnf")
        with open(conf, "w", encoding="ascii") as f:
            f.write(OPENSSL_AES128_CONF)
        with ServerProcess(_server_spec(cases, psk), env={"OPENSSL_CONF": conf}) as server:
            ready = server.ready
            for name, why in ready["unavailable"].items():
                notes.append(f"{name}: row left out ({why})")
            cases = [c for c in cases if (f"mptcpsec:{c.algorithm}" if c.peer == "mptcpsec"
                                          else c.peer) in ready["addresses"]]
            samples: dict[TransferCase, list[Any]] = {c: [] for c in cases}
            infos: dict[TransferCase, dict[str, Any]] = {}

            async def measure() -> None:
                if cfg.warmup_bytes:
                    for c in cases:
                        if progress:
                            progress(f"warm-up: {c.label}")
                        await _one(c, ready, keys, block, min(cfg.warmup_bytes, cfg.nbytes))
                for rep in range(cfg.repeats):
                    for i, c in enumerate(cases):
                        if progress:
                            progress(f"run {rep + 1}/{cfg.repeats}, {i + 1}/{len(cases)}: "
                                     f"{c.label}")
                        sample, info = await _one(c, ready, keys, block, cfg.nbytes)
                        samples[c].append(sample)
                        infos[c] = info

            asyncio.run(measure())
    rows = []
    for c in cases:
        runs = samples[c]
        gb = sum(s.nbytes for s in runs) / 1e9
        info = infos.get(c, {})
        note = ""
        if c.peer == "kernel-mptcp":
            sf = info.get("subflows")
            note = ("fell back to TCP" if sf is None else
                    f"{sf} subflow(s): the kernel path manager's endpoints decide")
        if c.peer == "tls":
            note = f"{info.get('version')} {info.get('cipher')}"
        rows.append(TransferRow(
            c.label, c.peer, info.get("subflows", c.subflows),
            c.algorithm if c.peer in ("mptcpsec", "tls") else None,
            c.max_record if c.peer == "mptcpsec" else None, c.group,
            round(report.median([s.MBps for s in runs]), 1), [round(s.MBps, 1) for s in runs],
            round(sum(s.client_cpu for s in runs) / gb, 3),
            round(sum(s.server_cpu for s in runs) / gb, 3), info, note))
    return TransferReport(cfg, rows, notes)


COLUMNS = [
    report.Column("label", "row", width=44),
    report.Column("MBps", "MB/s", "{:.1f}"),
    report.Column("client_cpu_s_per_GB", "client CPU s/GB", "{:.2f}"),
    report.Column("server_cpu_s_per_GB", "server CPU s/GB", "{:.2f}"),
    report.Column("note", "note", width=4, left=True),
]


def format_report(rep: TransferReport) -> str:
    lines = [f"one-way bulk transfer, {rep.config.nbytes / MB:g} MB per run, median of "
             f"{rep.config.repeats} interleaved runs (MB = 10^6 bytes)", ""]
    peers = [r.as_dict() for r in rep.rows if r.group == "peers"]
    sweep = [r.as_dict() for r in rep.rows if r.group == "record-size"]
    lines.append(report.format_table(COLUMNS, peers))
    if sweep:
        lines += ["", report.format_table(COLUMNS[:4], sweep)]
    ratios = rep.ratios()
    if ratios:
        lines.append("")
        lines += [f"{k} = {v:.2f}x" for k, v in ratios.items()]
    lines += [f"note: {n}" for n in rep.notes]
    return "\n".join(lines)


def plot(rep: TransferReport, out_dir: str) -> str:
    plt = report.pyplot()
    peers = [r for r in rep.rows if r.group == "peers"]
    sweep = [r for r in rep.rows if r.group == "record-size"]
    fig, axes = plt.subplots(1, 2 if sweep else 1, figsize=(12 if sweep else 7, 4.2),
                             squeeze=False)
    ax = axes[0][0]
    report.barh(ax, [r.label for r in peers], [r.MBps for r in peers],
                "MB/s (median; whiskers: slowest and fastest run)",
                [r.peer == "mptcpsec" for r in peers],
                [(min(r.runs), max(r.runs)) for r in peers])
    ax.set_title(f"One-way bulk, {rep.config.nbytes / MB:g} MB over loopback")
    if sweep:
        ax = axes[0][1]
        ax.errorbar([r.max_record for r in sweep], [r.MBps for r in sweep],
                    yerr=[[r.MBps - min(r.runs) for r in sweep],
                          [max(r.runs) - r.MBps for r in sweep]], fmt="o-", capsize=3,
                    label=f"mptcpsec {rep.config.sweep_subflows} subflows {AES}")
        for r, style in ((next((r for r in peers if r.peer == "tls"), None), "--"),
                         (next((r for r in peers if r.peer == "tcp"), None), ":")):
            if r is not None:
                ax.axhline(r.MBps, linestyle=style, color="gray", label=r.label)
        ax.set_xscale("log", base=2)
        ax.set_xticks([r.max_record for r in sweep], [str(r.max_record) for r in sweep])
        ax.set_xlabel("record size (max_record, bytes of plaintext)")
        ax.set_ylabel("MB/s (median)")
        ax.set_ylim(bottom=0)
        ax.set_title("Throughput against record size")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return str(report.save_figure(fig, out_dir, "transfer"))

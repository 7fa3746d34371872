"""`mptcpsec bench failover`: how long delivery stalls when one path tampers with a record.

Two paths, each a relay in this process emulating ``rtt_ms`` of round trip (a delay line
per direction, `mptcpsec.lab.emulator`); the server (a `timeline` sink that notes when
each byte reaches the application) runs in its own process. The client writes at a steady
pace (so no queue builds up and the figure is the protocol's, not a queue's), both
subflows carry data (round-robin), and after ``tamper_after`` bytes on path 2 the relay
flips one bit of the next DATA record's ciphertext.

Measured per run, on the monotonic clock shared by both processes:

- ``failover_ms``: from the tampered record leaving the sender (when the relay sees it)
  until the server application receives the first byte that record carried (re-sent on
  the clean path after the receiver poisons path 2 and tells the sender);
- ``baseline_ms``: the usual delay from a write to its delivery (about half a round trip);
- bytes lost, duplicated or altered at the application (all must be 0), and the events.

Expected: one way to the receiver, which poisons path 2 and tells the sender on path 1
(one way back), then the re-sent bytes travel one way again: about 1.5 round trips.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..aio.api import Path, connect
from ..crypto.keyschedule import Role
from ..lab.relay import HookContext, RecordHook
from ..protocol.events import DataReinjected, SubflowPoisoned
from ..wire.header import HEADER_LEN, RecordType
from ..wire.options import Dss, decode_options
from . import report
from .paths import open_paths
from .peers import HEADER, MptcpsecOptions, PeerKeys, payload_block
from .procs import ServerProcess

MB = report.MB
HOSTS = ("127.0.0.1", "127.0.0.2")


@dataclass
class FailoverConfig:
    rtt_ms: float = 20.0
    nbytes: int = 6 * MB
    #: Bytes of path-2 client-to-server traffic before the bit flip.
    tamper_after: int = 1 * MB
    #: The client writes `chunk` bytes every `interval_ms` (64 KiB / 5 ms = 13 MB/s).
    chunk: int = 64 * 1024
    interval_ms: float = 5.0
    repeats: int = 5
    key_exchange: str = "split-path"
    timeout: float = 60.0


@dataclass
class FailoverRun:
    failover_ms: float | None
    baseline_ms: float
    tampered_offset: int | None
    sent: int
    received: int
    lost: int
    duplicated: int
    intact: bool
    client_poisoned: bool
    reported_by_peer: bool
    reinjected_bytes: int
    error: str | None = None
    #: Client events, (ms from the tamper, kind), and the server's deliveries,
    #: (ms from the tamper, bytes so far); kept in the JSON for the first run.
    events: list[tuple[float, str]] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)

    def as_dict(self, with_timeline: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_timeline:
            d.pop("timeline")
        return d


@dataclass
class FailoverReport:
    config: FailoverConfig
    runs: list[FailoverRun]

    @property
    def target_ms(self) -> float:
        return 2 * self.config.rtt_ms + 10

    def summary(self) -> dict[str, Any]:
        ok = [r.failover_ms for r in self.runs if r.failover_ms is not None]
        return {
            "runs": len(self.runs),
            "failover_ms_median": round(report.median(ok), 1) if ok else None,
            "failover_ms_max": round(max(ok), 1) if ok else None,
            "failover_rtts_median": round(report.median(ok) / self.config.rtt_ms, 2)
            if ok else None,
            "baseline_ms_median": round(report.median([r.baseline_ms for r in self.runs]), 1),
            "target_ms": self.target_ms,
            "lost": sum(r.lost for r in self.runs),
            "duplicated": sum(r.duplicated for r in self.runs),
            "all_intact": all(r.intact for r in self.runs),
            "errors": [r.error for r in self.runs if r.error],
        }

    def as_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "summary": self.summary(),
                "runs": [r.as_dict(with_timeline=i == 0) for i, r in enumerate(self.runs)]}


class Tamper:
    """Flips one ciphertext bit of the first DATA record after `after` bytes; notes when
    (monotonic) and which DSN the record started at."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.seen = 0
        self.when: float | None = None
        self.dsn: int | None = None

    def __call__(self, record: bytes, ctx: HookContext) -> bytes:
        self.seen += len(record)
        if self.when is not None or self.seen < self.after or record[1] != RecordType.DATA:
            return record
        opt_len = record[3]
        body = len(record) - HEADER_LEN - opt_len
        if body <= 16:
            return record
        dss = next((o for o in decode_options(record[HEADER_LEN:HEADER_LEN + opt_len])
                    if isinstance(o, Dss)), None)
        if dss is None or dss.dsn is None:
            return record
        self.when = time.monotonic()
        self.dsn = dss.dsn
        flipped = bytearray(record)
        flipped[HEADER_LEN + opt_len + body // 2] ^= 0x01  # inside the ciphertext
        return bytes(flipped)


async def _one_run(cfg: FailoverConfig, ready: dict[str, Any], keys: PeerKeys,
                   block: bytes) -> FailoverRun:
    addrs = [tuple(a) for a in ready["addresses"]["mptcpsec"]]
    tamper = Tamper(cfg.tamper_after)
    paths = await open_paths(addrs, [cfg.rtt_ms, cfg.rtt_ms], [None, RecordHook(tamper)])
    stream = None
    try:
        opts = MptcpsecOptions(key_exchange=cfg.key_exchange, scheduler="round-robin")
        stream = await connect([Path(a, local=HOSTS[i]) for i, a in enumerate(paths.addresses)],
                               opts.config(Role.CLIENT, keys))
        conn = stream.connection
        assert conn.sendbuf is not None
        idsn = conn.sendbuf.base
        writes: list[tuple[float, int]] = []
        view = memoryview(block)
        stream.write(HEADER.pack(cfg.nbytes))
        sent, off = 0, 0
        step = cfg.interval_ms / 1000
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while sent < cfg.nbytes:
            k = min(cfg.chunk, cfg.nbytes - sent, len(block) - off)
            stream.write(view[off:off + k])
            sent += k
            off = (off + k) % len(block)
            writes.append((time.monotonic(), sent))
            await stream.drain()
            next_at += step
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        stream.close()
        (n,) = HEADER.unpack(await stream.readexactly(HEADER.size))
        answer = json.loads(await stream.readexactly(n))
        with contextlib.suppress(Exception):
            await stream.wait_closed(5)
    finally:
        if stream is not None:
            stream._driver.shutdown()
        await paths.close()
    expected = hashlib.sha256(HEADER.pack(cfg.nbytes))
    done = 0
    while done < cfg.nbytes:
        k = min(len(block), cfg.nbytes - done)
        expected.update(view[:k])
        done += k
    received = answer["received"] - HEADER.size
    reads = [(t, got - HEADER.size) for t, got in answer["reads"]]
    # Baseline: for each write, when the application had all of it.
    ends = [g for _, g in reads]
    lat = []
    for t, upto in writes:
        i = bisect.bisect_left(ends, upto)
        if i < len(reads):
            lat.append(reads[i][0] - t)
    failover = offset = None
    if tamper.when is not None and tamper.dsn is not None:
        offset = (tamper.dsn - idsn) % (1 << 64) - HEADER.size
        i = bisect.bisect_right(ends, offset)
        if i < len(reads):
            failover = (reads[i][0] - tamper.when) * 1000
    ev = stream.events if stream is not None else []
    poisoned = [e for e in ev if isinstance(e, SubflowPoisoned)]
    t0 = tamper.when or (reads[0][0] if reads else 0.0)
    return FailoverRun(
        failover_ms=round(failover, 2) if failover is not None else None,
        baseline_ms=round(report.median(lat) * 1000, 2) if lat else float("nan"),
        tampered_offset=offset, sent=cfg.nbytes, received=received,
        lost=max(0, cfg.nbytes - received), duplicated=max(0, received - cfg.nbytes),
        intact=received == cfg.nbytes and answer["sha256"] == expected.hexdigest(),
        client_poisoned=bool(poisoned),
        reported_by_peer=any(e.reported_by_peer for e in poisoned),
        reinjected_bytes=sum(e.bytes for e in ev if isinstance(e, DataReinjected)),
        error=None if tamper.when is not None else "the relay never tampered (too few bytes?)",
        events=[(round((e.time - t0) * 1000, 2), e.kind) for e in ev],
        timeline=[(round((t - t0) * 1000, 3), g) for t, g in reads])


def run_failover(cfg: FailoverConfig, progress: Callable[[str], None] | None = None,
                 ) -> FailoverReport:
    psk = os.urandom(32)
    opts = MptcpsecOptions(key_exchange=cfg.key_exchange, scheduler="round-robin")
    spec = {"handler": "timeline", "psk": psk.hex(),
            "servers": [{"name": "mptcpsec", "peer": "mptcpsec", "hosts": list(HOSTS),
                         "options": opts.as_dict()}]}
    block = payload_block(min(16 << 20, cfg.nbytes))
    runs: list[FailoverRun] = []
    with ServerProcess(spec) as server:
        keys = PeerKeys(psk, fingerprint=server.ready["keys"]["fingerprint"])

        async def measure() -> None:
            for i in range(cfg.repeats):
                if progress:
                    progress(f"failover run {i + 1}/{cfg.repeats}")
                try:
                    runs.append(await asyncio.wait_for(_one_run(cfg, server.ready, keys, block),
                                                       cfg.timeout))
                except Exception as exc:  # a failed run is a result, never a crash
                    runs.append(FailoverRun(None, float("nan"), None, cfg.nbytes, 0, cfg.nbytes,
                                            0, False, False, False, 0,
                                            error=f"{type(exc).__name__}: {exc}"))

        asyncio.run(measure())
    return FailoverReport(cfg, runs)


COLUMNS = [
    report.Column("run", "run", width=3),
    report.Column("failover_ms", "failover ms", "{:.1f}"),
    report.Column("rtts", "RTTs", "{:.2f}", width=5),
    report.Column("baseline_ms", "one-way ms", "{:.1f}"),
    report.Column("lost", "lost B"),
    report.Column("duplicated", "dup B"),
    report.Column("intact", "intact"),
    report.Column("reinjected_bytes", "re-sent B"),
    report.Column("error", "error", width=5, left=True),
]


def format_report(rep: FailoverReport) -> str:
    cfg = rep.config
    rows = []
    for i, r in enumerate(rep.runs):
        d = r.as_dict()
        d["run"] = i + 1
        d["rtts"] = r.failover_ms / cfg.rtt_ms if r.failover_ms is not None else None
        rows.append(d)
    s = rep.summary()
    lines = [f"failover: 2 paths of {cfg.rtt_ms:g} ms RTT, {cfg.nbytes / MB:g} MB at "
             f"{cfg.chunk // 1024} KiB / {cfg.interval_ms:g} ms, one bit flipped on path 2 "
             f"after {cfg.tamper_after / MB:g} MB", "", report.format_table(COLUMNS, rows), ""]
    verdict = ("met" if s["failover_ms_max"] is not None and s["failover_ms_max"] <= rep.target_ms
               and s["lost"] == 0 and s["duplicated"] == 0 and s["all_intact"] else "MISSED")
    lines.append(f"median {s['failover_ms_median']} ms ({s['failover_rtts_median']} RTT), "
                 f"max {s['failover_ms_max']} ms; target <= 2 RTT + 10 ms = {rep.target_ms:g} ms, "
                 f"0 lost/duplicated: {verdict}")
    return "\n".join(lines)


def plot(rep: FailoverReport, out_dir: str) -> str:
    plt = report.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    run = next((r for r in rep.runs if r.timeline and r.failover_ms is not None), None)
    if run is not None:
        xs = [t for t, _ in run.timeline]
        ys = [g / MB for _, g in run.timeline]
        ax1.step(xs, ys, where="post", label="bytes delivered to the server application")
        ax1.axvline(0, color="tab:red", linestyle="--", label="tampered record leaves the sender")
        ax1.axvline(run.failover_ms, color="tab:green", linestyle="--",
                    label=f"its bytes delivered (+{run.failover_ms:.1f} ms)")
        if run.tampered_offset is not None:
            ax1.axhline(run.tampered_offset / MB, color="gray", linestyle=":", linewidth=0.8)
        lo, hi = -3 * rep.config.rtt_ms, run.failover_ms + 3 * rep.config.rtt_ms
        sel = [y for x, y in zip(xs, ys, strict=True) if lo <= x <= hi]
        ax1.set_xlim(lo, hi)
        if sel:
            ax1.set_ylim(min(sel) * 0.98, max(sel) * 1.02)
        ax1.set_xlabel("ms from the tampered record leaving the sender")
        ax1.set_ylabel("MB delivered")
        ax1.set_title("Delivery around the tampered record (run 1)")
        ax1.legend(fontsize=7, loc="upper left")
        ax1.grid(alpha=0.3)
    vals = [r.failover_ms for r in rep.runs if r.failover_ms is not None]
    ax2.bar(range(1, len(vals) + 1), vals, color="tab:blue")
    ax2.set_xticks(range(1, len(vals) + 1))
    ax2.axhline(rep.target_ms, color="tab:red", linestyle="--",
                label=f"target 2 RTT + 10 ms = {rep.target_ms:g} ms")
    ax2.axhline(1.5 * rep.config.rtt_ms, color="gray", linestyle=":",
                label=f"1.5 RTT = {1.5 * rep.config.rtt_ms:g} ms")
    ax2.set_xlabel("run")
    ax2.set_ylabel("failover (ms)")
    ax2.set_title(f"Failover per run, {rep.config.rtt_ms:g} ms RTT paths")
    ax2.legend(fontsize=8)
    ax2.grid(axis="y", alpha=0.3)
    return str(report.save_figure(fig, out_dir, "failover"))

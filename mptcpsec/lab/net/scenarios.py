"""The namespaced experiments: the attack table, transfer throughput, failover.

``run_attacks`` echoes the same data for kernel MPTCP, TLS 1.3 over kernel MPTCP and
mptcpsec over the same two namespaced paths while the packet-level attacker sits in router
``attack_path``; one ``AttackRun`` per (attack, mode), each with what the attacker changed
(packet numbers), what the kernel's MPTCP did (``ip mptcp monitor`` in the client,
MPTCP_INFO) and what mptcpsec did (subflow states). ``run_transfer`` and ``run_failover``
measure the peers over rate-limited paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .attacker import ATTACKS, AttackConfig
from .env import NetLab, _stop
from .peers import make_cert
from .topology import SERVER_ADDR, PathAddrs, PathSpec

MODES = ("kernel-mptcp", "tls-over-kernel-mptcp", "mptcpsec")
TRANSFER_PEERS = ("mptcpsec", "kernel-mptcp", "tcp", "tls")
Progress = Callable[[str], None] | None


@dataclass
class AttackRun:
    """One row of the netns attack table (``mptcpsec demo --net netns --compare --json``)."""

    mode: str
    attack: str
    attack_path: int
    intact: bool
    outcome: str
    detected: bool
    error: str | None
    bytes_sent: int
    bytes_echoed: int
    duration_s: float
    #: what the attacker changed: [{packet, action, detail, flow}]
    attacker: list[dict[str, Any]] = field(default_factory=list)
    attacker_packets: int = 0
    #: kernel MPTCP: subflows, fallback, announced addresses, `ip mptcp monitor` lines
    kernel: dict[str, Any] | None = None
    #: mptcpsec: per-subflow state and reason
    subflows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def verdict(self) -> str:
        return "INTACT" if self.intact else self.outcome.upper()


@dataclass
class AttackPlan:
    attacks: tuple[str, ...] = ("bitflip",)
    modes: tuple[str, ...] = MODES
    nbytes: int = 2_000_000
    after_bytes: int = 300_000
    attack_path: int = 1
    direction: str = "c2s"
    paths: tuple[PathSpec, ...] = (PathSpec(50, 10), PathSpec(50, 10))
    timeout: float = 8.0
    key_exchange: str = "split-path"


class _Ports:
    def __init__(self) -> None:
        self.n = 7000

    def next(self) -> int:
        self.n += 1
        return self.n


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def _mptcpsec_client(port: int, paths: int, nbytes: int, verify: bool, timeout: float,
                     key_exchange: str, extra: tuple[str, ...] = ()) -> list[str]:
    argv = _py("-m", "mptcpsec", "connect", "--json", "-q", "--no-join",
               "--timeout", f"{timeout:g}", "-k", key_exchange, *extra)
    for i in range(1, paths + 1):
        argv += ["-c", f"{SERVER_ADDR}:{port}", "-b", PathAddrs(i).client]
    argv += ["--verify" if verify else "--send", str(nbytes)]
    return argv


def _mptcpsec_server(port: int, discard: bool, key_exchange: str) -> list[str]:
    return _py("-m", "mptcpsec", "serve", "-l", f"{SERVER_ADDR}:{port}", "--once", "--json",
               "-q", "-k", key_exchange, *(("--discard",) if discard else ()))


def _peer_server(proto: str, port: int, discard: bool, cert: tuple[str, str]) -> list[str]:
    return _py("-m", "mptcpsec.lab.net.peers", "serve", "--proto", proto, "--listen",
               f"{SERVER_ADDR}:{port}", "--cert", cert[0], "--key", cert[1],
               *(("--discard",) if discard else ()))


def _peer_client(proto: str, port: int, nbytes: int, send: bool, timeout: float,
                 cafile: str) -> list[str]:
    return _py("-m", "mptcpsec.lab.net.peers", "client", "--proto", proto, "--connect",
               f"{SERVER_ADDR}:{port}", "--bind", PathAddrs(1).client, "--bytes", str(nbytes),
               "--timeout", f"{timeout:g}", "--cafile", cafile, *(("--send",) if send else ()))


def _wait_listening(lab: NetLab, port: int, deadline_s: float = 10.0) -> None:
    """Until something listens on the server's port (ss in the server namespace)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        out = lab.run("server", ["ss", "-Hltn", f"sport = :{port}"], timeout=5).stdout
        if out.strip():
            return
        time.sleep(0.1)
    raise RuntimeError(f"no server listening on port {port} after {deadline_s:g} s")


def _json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(json.JSONDecodeError):
            doc = json.loads(line)
            if isinstance(doc, dict):
                return doc
    with contextlib.suppress(json.JSONDecodeError):
        doc = json.loads(text)
        if isinstance(doc, dict):
            return doc
    return {}


def run_one(lab: NetLab, mode: str, attack: AttackConfig | None, plan: AttackPlan,
            ports: _Ports, cert: tuple[str, str]) -> AttackRun:
    """One echo of ``plan.nbytes`` for ``mode`` with the attacker (re)started fresh."""
    lab.start_stage(plan.attack_path, attack)
    port = ports.next()
    monitor = None
    mon_path = os.path.join(lab.workdir or "/tmp", f"monitor-{port}.txt")
    if mode == "mptcpsec":
        srv = lab.popen("server", _mptcpsec_server(port, False, plan.key_exchange),
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(lab, port)
        argv = _mptcpsec_client(port, len(lab.paths), plan.nbytes, True, plan.timeout,
                                plan.key_exchange, ("--scheduler", "round-robin"))
    else:
        proto = mode
        with open(mon_path + ".server", "w") as out:
            srv = lab.popen("server", _peer_server(proto, port, False, cert),
                            stdout=out, stderr=subprocess.DEVNULL)
        with open(mon_path, "w") as mon:
            monitor = lab.popen("client", ["ip", "mptcp", "monitor"], stdout=mon,
                                stderr=subprocess.DEVNULL)
        _wait_listening(lab, port)
        argv = _peer_client(proto, port, plan.nbytes, False, plan.timeout, cert[0])
    res = lab.run("client", argv, timeout=plan.timeout * 3 + 10)
    time.sleep(0.3)  # the attacker's last forgeries, the monitor's last lines
    for p in (srv, monitor):
        if p is not None:
            _stop(p)
            with contextlib.suppress(ValueError):
                lab.procs.remove(p)
    rep = lab.stop_stage(plan.attack_path)
    # keep the path's delay while the next run's attacker is not up yet
    doc = _json_line(res.stdout)
    if not doc:
        doc = {"intact": False, "outcome": "failed",
               "error": (res.stderr.strip().splitlines() or ["no output"])[-1]}
    run = AttackRun(mode=mode, attack=attack.name if attack else "none",
                    attack_path=plan.attack_path, intact=bool(doc.get("intact")),
                    outcome=str(doc.get("outcome") or "failed"), detected=False,
                    error=doc.get("error"), bytes_sent=int(doc.get("bytes_sent") or 0),
                    bytes_echoed=int(doc.get("bytes_echoed") or 0),
                    duration_s=float(doc.get("duration_s") or 0.0),
                    attacker=rep.get("changes", []), attacker_packets=rep.get("packets", 0))
    if mode == "mptcpsec":
        run.subflows = [{"id": s.get("id"), "local": s.get("local"), "state": s.get("state"),
                         "reason": s.get("reason")} for s in doc.get("subflows", [])]
        run.detected = any(s["state"] == "poisoned" for s in run.subflows)
        if run.outcome == "completed" and not run.intact:
            run.outcome = "corrupted"
    else:
        run.detected = bool(doc.get("detected"))
        tls_errors: list[str] = []
        with contextlib.suppress(FileNotFoundError), open(mon_path + ".server") as f:
            tls_errors = [d["tls_error"] for d in map(_json_line, f) if "tls_error" in d]
        if mode.startswith("tls") and tls_errors and not run.intact:
            run.detected = True
            run.outcome = "aborted"
            run.error = f"server TLS: {tls_errors[0]}" + (f"; client: {run.error}"
                                                          if run.error else "")
        lines: list[str] = []
        with contextlib.suppress(FileNotFoundError), open(mon_path) as f:
            lines = [" ".join(ln.split()).replace("[ ", "[") for ln in f if ln.strip()]
        info = doc.get("mptcp_info") or {}
        run.kernel = {
            "subflows": (info.get("max_subflows", 0) + 1) if info else None,
            "fallback_to_tcp": info.get("fallback"),
            "add_addr_accepted": info.get("add_addr_accepted"),
            "joins_to_attacker": rep.get("joins_to_attacker", []),
            "monitor": lines[:40],
        }
        sf = [ln for ln in lines if ln.startswith("[SF_CLOSED]")]
        est = [ln for ln in lines if ln.startswith(("[ESTABLISHED]", "[SF_ESTABLISHED]"))]
        if run.outcome == "stalled" and est and len(sf) >= len(est):
            run.outcome = "killed"
            run.error = (f"every subflow was closed ({len(sf)} SF_CLOSED); the application "
                         "got no error and waited until the timeout")
    return run


def run_attacks(plan: AttackPlan, progress: Progress = None) -> list[AttackRun]:
    """Every attack of ``plan`` against every mode, in one lab."""
    for name in plan.attacks:
        if name not in ATTACKS and name != "none":
            raise ValueError(f"unknown attack {name!r}")
    out: list[AttackRun] = []
    ports = _Ports()
    with NetLab(list(plan.paths), attack=None, stage_everywhere=True) as lab:
        assert lab.workdir is not None
        cert = make_cert(lab.workdir, SERVER_ADDR)
        for name in plan.attacks:
            attack = None if name == "none" else AttackConfig(
                name, plan.after_bytes, plan.direction)
            for mode in plan.modes:
                if progress:
                    progress(f"{name} x {mode}")
                run = run_one(lab, mode, attack, plan, ports, cert)
                out.append(run)
                if progress:
                    progress(f"{name} x {mode}: {run.verdict}")
    return out


def changed(run: AttackRun) -> str:
    """What the attacker did, in a table cell: action @ packet numbers."""
    if not run.attacker:
        return "nothing"
    acts: dict[str, list[int]] = {}
    for c in run.attacker:
        pkts = acts.setdefault(c["action"], [])
        if c["packet"] not in pkts:
            pkts.append(c["packet"])
    cells = []
    for act, pkts in acts.items():
        shown = ",".join(f"#{p}" for p in pkts[:3]) + ("…" if len(pkts) > 3 else "")
        cells.append(f"{act} {shown}" + (f" ({len(pkts)} pkts)" if len(pkts) > 3 else ""))
    if all(c["action"] == "nothing" for c in run.attacker):
        return "nothing: " + run.attacker[0]["detail"].split(": ", 1)[-1]
    return "; ".join(c for c in cells if not c.startswith("nothing"))


def effect(run: AttackRun) -> str:
    """What the transport did, in a table cell."""
    if run.mode == "mptcpsec":
        bad = [s for s in run.subflows if s["state"] == "poisoned"]
        dropped = [s for s in run.subflows if s["state"] not in ("poisoned", "closed", "open",
                                                                   "established")]
        if bad:
            return "; ".join(f"subflow {s['id']} poisoned ({s['reason']})" for s in bad)
        if dropped:
            return "; ".join(f"subflow {s['id']} {s['state']} ({s['reason']})"
                             for s in dropped)
        return "no subflow lost"
    k = run.kernel or {}
    bits = []
    mon = k.get("monitor", [])
    if k.get("fallback_to_tcp") or not any(ln.startswith("[CREATED]") for ln in mon):
        bits.append("fell back to plain TCP (no MPTCP connection)")
    if k.get("subflows") is not None:
        bits.append(f"{k['subflows']} subflows")
    if k.get("joins_to_attacker"):
        bits.append(f"joined {len(k['joins_to_attacker'])}x the attacker's address")
    closed = sum(1 for ln in mon if ln.startswith("[SF_CLOSED]"))
    announced = [ln for ln in mon if ln.startswith("[ANNOUNCED]")]
    removed = sum(1 for ln in mon if ln.startswith("[REMOVED]"))
    prio = sum(1 for ln in mon if ln.startswith("[SF_PRIO]") and "backup=1" in ln)
    if announced:
        bits.append(f"accepted ADD_ADDR ({announced[0].split('daddr4=')[-1].split()[0]})"
                    if "daddr4=" in announced[0] else "accepted ADD_ADDR")
    if removed:
        bits.append("accepted REMOVE_ADDR")
    if prio:
        bits.append("subflow set to backup")
    if closed:
        bits.append(f"{closed} subflow(s) closed")
    return ", ".join(bits) or "-"


def format_table(runs: list[AttackRun]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"packet-level attacker in router {runs[0].attack_path} (namespaces, "
                  "real kernel MPTCP)" if runs else "no runs")
    for col in ("attack", "mode", "attacker changed", "transport did", "delivered"):
        table.add_column(col, overflow="fold")
    for r in runs:
        table.add_row(r.attack, r.mode, changed(r), effect(r),
                      r.verdict + (" (detected)" if r.detected and not r.intact else ""))
    console = Console(width=160, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


# ---- transfer and failover ----------------------------------------------------------------
@dataclass
class TransferRow:
    peer: str
    MBps: float | None
    aggregation: float | None
    bytes: int
    seconds: float | None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _rate_sum_MBps(paths: list[PathSpec]) -> float | None:
    if any(p.rate_mbit is None for p in paths):
        return None
    return sum(p.rate_mbit or 0 for p in paths) / 8


def run_transfer(paths: list[PathSpec], nbytes: int = 30_000_000,
                 peers: tuple[str, ...] = TRANSFER_PEERS, repeats: int = 1,
                 progress: Progress = None, timeout: float = 60.0,
                 ) -> tuple[list[TransferRow], dict[str, Any]]:
    """One-way bulk transfer of each peer over the same namespaced paths."""
    rows: list[TransferRow] = []
    stages: dict[str, Any] = {}
    ports = _Ports()
    total = _rate_sum_MBps(paths)
    with NetLab(paths) as lab:
        assert lab.workdir is not None
        cert = make_cert(lab.workdir, SERVER_ADDR)
        results: dict[str, list[dict[str, Any]]] = {p: [] for p in peers}
        for rep in range(repeats):
            for peer in peers:
                if progress:
                    progress(f"transfer {peer} run {rep + 1}/{repeats}")
                results[peer].append(_one_transfer(lab, peer, nbytes, ports, cert, timeout))
        for i in lab.topo.indices():
            if i in lab.stages:
                stages[f"r{i}"] = {k: v for k, v in lab.stop_stage(i).items()
                                   if k in ("packets", "active_s", "cpu_s", "pps", "peak_pps",
                                            "pps_per_cpu_s", "max_held", "delay_ms")}
    for peer in peers:
        ok = [r for r in results[peer] if r.get("ok")]
        if not ok:
            err = next((r.get("error") for r in results[peer]), "no result")
            rows.append(TransferRow(peer, None, None, nbytes, None, error=err))
            continue
        rates = sorted(r["MBps"] for r in ok)
        med = rates[len(rates) // 2]
        rows.append(TransferRow(peer, round(med, 3),
                                round(med / total, 3) if total else None, nbytes,
                                round(nbytes / 1e6 / med, 3) if med else None,
                                detail=ok[len(ok) // 2].get("detail", {})))
    return rows, {"paths": [asdict(p) for p in paths], "sum_MBps": total, "stages": stages}


def _one_transfer(lab: NetLab, peer: str, nbytes: int, ports: _Ports,
                  cert: tuple[str, str], timeout: float) -> dict[str, Any]:
    port = ports.next()
    if peer == "mptcpsec":
        srv = lab.popen("server", _mptcpsec_server(port, True, "split-path"),
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(lab, port)
        argv = _py("-m", "mptcpsec.lab.net.bulkclient", "--port", str(port), "--paths",
                   str(len(lab.paths)), "--bytes", str(nbytes), "--timeout", f"{timeout:g}")
    else:
        proto = {"tls": "tls", "tcp": "tcp", "kernel-mptcp": "kernel-mptcp",
                 "tls-over-kernel-mptcp": "tls-over-kernel-mptcp"}[peer]
        srv = lab.popen("server", _peer_server(proto, port, True, cert),
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(lab, port)
        argv = _peer_client(proto, port, nbytes, True, timeout, cert[0])
    t0 = time.monotonic()
    res = lab.run("client", argv, timeout=timeout * 2 + 10)
    wall = time.monotonic() - t0
    _stop(srv)
    with contextlib.suppress(ValueError):
        lab.procs.remove(srv)
    doc = _json_line(res.stdout)
    if not doc.get("intact"):
        return {"ok": False, "error": doc.get("error") or res.stderr.strip()[-300:]}
    secs = float(doc.get("duration_s") or wall)
    detail = {"mptcp_info": doc.get("mptcp_info")} if "mptcp_info" in doc else {
        "subflows": [s.get("bytes_sent") for s in doc.get("subflows", [])]}
    return {"ok": True, "MBps": nbytes / 1e6 / secs, "detail": detail}


def format_transfer(rows: list[TransferRow], meta: dict[str, Any]) -> str:
    paths = " + ".join(PathSpec(**p).label() for p in meta["paths"])
    lines = [f"one-way transfer over {paths} (network namespaces)",
             f"{'peer':<14}{'MB/s':>9}{'aggregation':>13}  note"]
    for r in rows:
        if r.MBps is None:
            lines.append(f"{r.peer:<14}{'-':>9}{'-':>13}  {r.error}")
            continue
        agg = f"{r.aggregation:.2f}" if r.aggregation is not None else "-"
        lines.append(f"{r.peer:<14}{r.MBps:>9.2f}{agg:>13}")
    if meta.get("sum_MBps"):
        lines.append(f"sum of path rates: {meta['sum_MBps']:.2f} MB/s "
                     "(aggregation = throughput / that sum)")
    for name, st in meta.get("stages", {}).items():
        lines.append(f"delay stage {name}: {st.get('packets')} packets, peak "
                     f"{st.get('peak_pps')} pkt/s (one-second buckets), "
                     f"{st.get('pps_per_cpu_s')} pkt per CPU-second: the stage's ceiling")
    return "\n".join(lines)


#: mptcpsec: ConnectionConfig.subflow_timeout 1 s; mptcpsec-default: its default, 30 s
FAILOVER_PEERS = ("kernel-mptcp", "mptcpsec", "mptcpsec-default")


@dataclass
class FailoverRow:
    peer: str
    intact: bool
    stall_s: float | None
    bytes_lost: int
    duration_s: float | None
    error: str | None = None


def run_failover(paths: list[PathSpec], nbytes: int = 4_000_000, down_after_s: float = 0.0,
                 peers: tuple[str, ...] = FAILOVER_PEERS,
                 progress: Progress = None, timeout: float = 45.0) -> list[FailoverRow]:
    """A paced echo; path 1's link goes down once a quarter of it came back (plus
    ``down_after_s``); the longest gap in delivery and the bytes that never came back."""
    rows = []
    ports = _Ports()
    with NetLab(paths) as lab:
        assert lab.workdir is not None
        cert = make_cert(lab.workdir, SERVER_ADDR)
        for peer in peers:
            if progress:
                progress(f"failover {peer}")
            lab.set_link(1, True)
            port = ports.next()
            if peer.startswith("mptcpsec"):
                srv = lab.popen("server", _mptcpsec_server(port, False, "split-path"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                srv = lab.popen("server", _peer_server(peer, port, False, cert),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_listening(lab, port)
            ready = os.path.join(lab.workdir, f"failover-{port}.ready")
            argv = _py("-m", "mptcpsec.lab.net.failclient", "--mode",
                       "mptcpsec" if peer.startswith("mptcpsec") else peer, "--port",
                       str(port), "--paths", str(len(paths)), "--bytes", str(nbytes),
                       "--timeout", f"{timeout:g}", "--ready", ready,
                       "--subflow-timeout", "30" if peer == "mptcpsec-default" else "1")
            proc = lab.popen("client", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
            end = time.monotonic() + timeout
            while not os.path.exists(ready) and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.02)
            time.sleep(down_after_s)
            lab.set_link(1, False)
            try:
                out, _err = proc.communicate(timeout=timeout * 2 + 10)
            except subprocess.TimeoutExpired:
                _stop(proc)
                out, _err = proc.communicate()
            _stop(srv)
            for p in (proc, srv):
                with contextlib.suppress(ValueError):
                    lab.procs.remove(p)
            doc = _json_line(out)
            res = doc.get("result", {})
            rows.append(FailoverRow(peer, bool(res.get("intact")), doc.get("max_gap_s"),
                                    max(0, nbytes - int(res.get("bytes_echoed") or 0)),
                                    res.get("duration_s"), res.get("error")))
        lab.set_link(1, True)
    return rows


def format_failover(rows: list[FailoverRow]) -> str:
    lines = ["paced echo while path 1's link goes down (network namespaces); mptcpsec: "
             "subflow_timeout 1 s, mptcpsec-default: 30 s",
             f"{'peer':<14}{'intact':>7}{'stall s':>9}{'bytes lost':>12}{'total s':>9}"]
    for r in rows:
        stall = f"{r.stall_s:.2f}" if r.stall_s is not None else "-"
        total = f"{r.duration_s:.2f}" if r.duration_s is not None else "-"
        lines.append(f"{r.peer:<14}{'yes' if r.intact else 'NO':>7}{stall:>9}"
                     f"{r.bytes_lost:>12,}{total:>9}" + (f"  {r.error}" if r.error else ""))
    return "\n".join(lines)

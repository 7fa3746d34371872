"""``NetLab``: the whole namespaced lab as a context manager.

    with NetLab([PathSpec(50, 10), PathSpec(20, 40)]) as lab:
        lab.run("client", ["ping", "-c", "1", SERVER_ADDR])
        proc = lab.popen("server", ["iperf3", "-s"])

It builds the topology, configures the kernel's MPTCP in the hosts (limits, one ``subflow``
endpoint per extra client path), starts a packet stage (``stage``: delay, jitter, the
attacker) in every router that needs one and queues that router's forwarded TCP to it with
``iptables-legacy -j NFQUEUE``. On exit, Ctrl-C, SIGTERM or a crash it kills every process
it started and deletes every namespace (their qdiscs, nftables and iptables rules go with
them); the host namespace is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from .attacker import AttackConfig
from .topology import MAX_PATHS, LabError, PathAddrs, PathSpec, Topology, run_in


def check_prerequisites(need_nfqueue: bool = True) -> str | None:
    """Why the lab cannot run here (None if it can): root, tools, kernel MPTCP."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft", *(("iptables-legacy",) if need_nfqueue else ())):
        if shutil.which(tool) is None:
            return f"no `{tool}` (Debian: apt-get install iproute2 nftables iptables)"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "no pyroute2 (pip install '.[netlab]')"
    if need_nfqueue:
        try:
            import netfilterqueue  # noqa: F401
        except ImportError:
            return "no NetfilterQueue binding (pip install '.[netlab]'; needs " \
                   "libnetfilter-queue-dev)"
    if not os.path.exists("/proc/sys/net/mptcp/enabled"):
        return "the kernel has no MPTCP (CONFIG_MPTCP)"
    return None


@dataclass
class NetLab:
    """Topology + kernel MPTCP + packet stages, torn down on exit."""

    paths: list[PathSpec]
    attack: AttackConfig | None = None
    #: router (path, from 1) the attacker sits in
    attack_path: int = 1
    workdir: str | None = None
    #: queue every router's TCP through a stage even without delay or attack
    stage_everywhere: bool = False
    topo: Topology = field(init=False)
    procs: list[subprocess.Popen[Any]] = field(default_factory=list, init=False)
    stages: dict[int, subprocess.Popen[Any]] = field(default_factory=dict, init=False)
    _own_workdir: bool = field(default=False, init=False)
    _old_handlers: dict[int, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.paths) <= MAX_PATHS:
            raise LabError(f"1..{MAX_PATHS} paths")
        if self.attack is not None and not 1 <= self.attack_path <= len(self.paths):
            raise LabError(f"attack path must be 1..{len(self.paths)}")
        self.topo = Topology(self.paths)

    # ---- life cycle -------------------------------------------------------------------
    def __enter__(self) -> NetLab:
        why = check_prerequisites(need_nfqueue=self._needs_stages())
        if why:
            raise LabError(f"the namespace lab {why}")
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix=f"mpsl-{self.topo.run_id}-")
            self._own_workdir = True
        self._trap_signals()
        try:
            self.topo.build()
            self._mptcp()
            for i, spec in zip(self.topo.indices(), self.paths, strict=True):
                if self._stage_needed(i, spec):
                    self.start_stage(i)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for p in [*self.procs, *self.stages.values()]:
            _stop(p)
        self.procs.clear()
        self.stages.clear()
        self.topo.destroy()
        if self._own_workdir and self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        for sig, old in self._old_handlers.items():
            with contextlib.suppress(ValueError):
                signal.signal(sig, old)
        self._old_handlers.clear()

    def _trap_signals(self) -> None:
        """SIGTERM and SIGHUP unwind like Ctrl-C, so ``__exit__`` runs."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return

        me = os.getpid()

        def unwind(signum: int, _frame: Any) -> None:
            if os.getpid() != me:  # a child forked by pyroute2: just die
                os._exit(128 + signum)
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, unwind)

    def _needs_stages(self) -> bool:
        return self.stage_everywhere or self.attack is not None or any(
            p.rtt_ms or p.jitter_ms for p in self.paths)

    def _stage_needed(self, i: int, spec: PathSpec) -> bool:
        return (self.stage_everywhere or spec.rtt_ms > 0 or spec.jitter_ms > 0
                or (self.attack is not None and i == self.attack_path))

    def _mptcp(self) -> None:
        """Kernel MPTCP: limits in both hosts, a ``subflow`` endpoint per extra client path."""
        n = str(len(self.paths))
        for ns in (self.topo.client, self.topo.server):
            run_in(ns, ["sysctl", "-q", "-w", "net.mptcp.enabled=1"], check=False)
            run_in(ns, ["ip", "mptcp", "limits", "set", "subflows", n,
                        "add_addr_accepted", n], check=False)
        for i in list(self.topo.indices())[1:]:
            run_in(self.topo.client, ["ip", "mptcp", "endpoint", "add", PathAddrs(i).client,
                                      "dev", f"eth{i}", "id", str(i), "subflow"], check=False)

    # ---- the packet stage -------------------------------------------------------------
    def start_stage(self, i: int, attack: AttackConfig | None = None) -> None:
        """Start (or restart, with a new attack) the stage of router i."""
        assert self.workdir is not None
        if i in self.stages:
            self.stop_stage(i)
        attack = attack if attack is not None else (
            self.attack if i == self.attack_path else None)
        spec = self.paths[i - 1]
        ready = os.path.join(self.workdir, f"r{i}.ready")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ready)
        argv = [sys.executable, "-m", "mptcpsec.lab.net.stage", "--queue", "0",
                "--delay-ms", f"{spec.rtt_ms / 2:g}", "--jitter-ms", f"{spec.jitter_ms / 2:g}",
                "--report", self.report_path(i), "--evidence",
                os.path.join(self.workdir, f"r{i}-evidence.pcap"), "--ready", ready]
        if attack is not None:
            argv += ["--attack", attack.name, "--after", str(attack.after_bytes),
                     "--direction", attack.direction, "--drop-seconds",
                     str(attack.drop_seconds)]
        with open(os.path.join(self.workdir, f"r{i}-stage.log"), "w") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", self.topo.router(i), *argv],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=log, env=_env(), start_new_session=True)
        self.stages[i] = proc
        deadline = time.monotonic() + 15
        while not os.path.exists(ready):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"the packet stage of router {i} did not start: "
                               + self.stage_log(i)[-500:])
            time.sleep(0.05)
        rules = run_in(self.topo.router(i), ["iptables-legacy", "-t", "mangle", "-S",
                                             "FORWARD"]).stdout
        if "NFQUEUE" not in rules:
            run_in(self.topo.router(i), ["iptables-legacy", "-t", "mangle", "-A", "FORWARD",
                                         "-p", "tcp", "-j", "NFQUEUE", "--queue-num", "0"])

    def stop_stage(self, i: int) -> dict[str, Any]:
        """Stop router i's stage (its traffic stops until a new one starts); its report."""
        proc = self.stages.pop(i, None)
        if proc is not None:
            _stop(proc)
        return self.stage_report(i)

    def report_path(self, i: int) -> str:
        assert self.workdir is not None
        return os.path.join(self.workdir, f"r{i}.json")

    def stage_report(self, i: int) -> dict[str, Any]:
        try:
            with open(self.report_path(i)) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def stage_log(self, i: int) -> str:
        assert self.workdir is not None
        try:
            with open(os.path.join(self.workdir, f"r{i}-stage.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # ---- running programs -------------------------------------------------------------
    def popen(self, host: str, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``host`` (client, server, r1..); killed at exit."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("env", _env())
        proc = subprocess.Popen(["ip", "netns", "exec", self.topo.host(host), *argv],
                                start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def run(self, host: str, argv: list[str], timeout: float = 60,
            ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host`` to completion (killed after ``timeout`` seconds)."""
        proc = self.popen(host, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            out, err = proc.communicate()
        finally:
            self.procs.remove(proc)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def capture(self, host: str, iface: str, out: str, snaplen: int = 256,
                ) -> subprocess.Popen[Any]:
        """Start a pcap capture of ``iface`` in ``host`` (stopped at exit or by ``_stop``)."""
        ready = out + ".ready"
        proc = self.popen(host, [sys.executable, "-m", "mptcpsec.lab.net.capture", "--iface",
                                 iface, "--out", out, "--snaplen", str(snaplen), "--ready",
                                 ready], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not os.path.exists(ready):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"capture on {host}/{iface} did not start")
            time.sleep(0.05)
        return proc

    def set_link(self, i: int, up: bool) -> None:
        self.topo.set_link(i, up)


def _env() -> dict[str, str]:
    """The environment of lab programs: this interpreter's package on the path."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                else "")
    return env


def _stop(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """SIGTERM the process group (``ip netns exec`` and its child), then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue

"""`mptcpsec lab up|down|status|exec`: the network-namespace lab, by hand (needs root)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from ._common import CliError

STATE_DIR = "/run/mptcpsec-lab"

EPILOG = """\
The lab is a client host, one router per path and a server host, each a network namespace
(names mpsl-<run>-cli, -srv, -r1..), joined by veth pairs; addresses from the documentation
ranges, no link to the host's namespace. The server's address on every path is 203.0.113.1;
path i's client address is 192.0.2.(16i+1). Kernel MPTCP is configured in both hosts (one
`subflow` endpoint per extra client path).

examples:
  mptcpsec lab up --path 50:10 --path 20:40            # prints the run id
  mptcpsec lab exec server -- iperf3 -s -D
  mptcpsec lab exec client -- iperf3 -c 203.0.113.1 -B 192.0.2.17 -t 5
  mptcpsec lab exec client -- python -m mptcpsec connect -c 203.0.113.1:7000 \\
        -b 192.0.2.17 -c 203.0.113.1:7000 -b 192.0.2.33 --verify 10MB
  mptcpsec lab link 2 down                             # path 2's link, at run time
  mptcpsec lab status
  mptcpsec lab down                                    # the only (or --run ID) lab
  mptcpsec lab down --all                              # every leftover of ours

The unprivileged loopback lab (`mptcpsec demo`, `mptcpsec bench` without --net netns)
needs none of this.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="network-namespace lab: hosts, routers, kernel MPTCP (root)",
                       description="Build, use and remove the namespaced lab by hand.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    acts = p.add_subparsers(dest="lab_cmd", metavar="ACTION")
    up = acts.add_parser("up", help="build a lab and leave it running")
    up.add_argument("--path", action="append", metavar="RATE_MBIT:RTT_MS[:LOSS%]",
                    help="one path (repeat); rate 0: unlimited (default: two 50:10 paths)")
    up.add_argument("--jitter-ms", type=float, default=0.0, help="extra delay, every path")
    up.add_argument("--attack", metavar="NAME", help="a packet-level attack in --attack-path "
                    "(see `mptcpsec demo --net netns --help`)")
    up.add_argument("--attack-path", type=int, default=1)
    up.add_argument("--attack-after", type=int, default=300_000, metavar="BYTES")
    up.set_defaults(func=_up)
    down = acts.add_parser("down", help="remove a lab (and every process in it)")
    down.add_argument("--run", help="the run id (default: the only one)")
    down.add_argument("--all", action="store_true",
                      help="every namespace of ours (prefix mpsl-), also a crashed run's")
    down.set_defaults(func=_down)
    st = acts.add_parser("status", help="our labs, their hosts and paths")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_status)
    ex = acts.add_parser("exec", help="run a command in a host: client, server, r1..")
    ex.add_argument("host")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    ex.add_argument("--run", help="the run id (default: the only one); before HOST")
    ex.set_defaults(func=_exec)
    ln = acts.add_parser("link", help="take a path's link down or up")
    ln.add_argument("path", type=int)
    ln.add_argument("state", choices=("up", "down"))
    ln.add_argument("--run", help="the run id (default: the only one)")
    ln.set_defaults(func=_link)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _lab_modules() -> Any:
    try:
        from ..lab.net import env, topology
    except ImportError as exc:  # pragma: no cover - pyroute2 is imported lazily
        raise CliError(f"the namespace lab is not installed: {exc} (pip install "
                       "'.[netlab]')") from None
    return env, topology


def _state_file(run_id: str) -> str:
    return os.path.join(STATE_DIR, f"{run_id}.json")


def _load(run_id: str | None) -> dict[str, Any]:
    _, topology = _lab_modules()
    runs = topology.runs()
    if run_id is None:
        if not runs:
            raise CliError("no lab is up (mptcpsec lab up)")
        if len(runs) > 1:
            raise CliError(f"several labs are up ({', '.join(runs)}): give --run")
        run_id = next(iter(runs))
    if run_id not in runs:
        raise CliError(f"no lab {run_id!r} (mptcpsec lab status)")
    try:
        with open(_state_file(run_id)) as f:
            state = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        state = {"run_id": run_id, "paths": [], "stages": {}}
    state["namespaces"] = runs[run_id]
    return state


def _up(args: argparse.Namespace) -> int:
    env, topology = _lab_modules()
    from ..lab.net.attacker import AttackConfig
    from ..lab.net.names import ATTACKS

    try:
        specs = [topology.PathSpec.parse(p) for p in (args.path or ["50:10", "50:10"])]
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for s in specs:
        s.jitter_ms = args.jitter_ms
    attack = None
    if args.attack:
        if args.attack not in ATTACKS:
            raise CliError(f"unknown attack {args.attack!r} (choose from {', '.join(ATTACKS)})")
        attack = AttackConfig(args.attack, args.attack_after)
    os.makedirs(STATE_DIR, exist_ok=True)
    lab = env.NetLab(specs, attack=attack, attack_path=args.attack_path)
    lab.workdir = os.path.join(STATE_DIR, lab.topo.run_id)
    os.makedirs(lab.workdir, exist_ok=True)
    try:
        lab.__enter__()
    except topology.LabError as exc:
        raise CliError(str(exc)) from None
    # leave it running: forget the processes so nothing is torn down on our exit
    state = {"run_id": lab.topo.run_id, "paths": [vars(s) for s in specs],
             "stages": {str(i): p.pid for i, p in lab.stages.items()},
             "workdir": lab.workdir, "created": time.time()}
    with open(_state_file(lab.topo.run_id), "w") as f:
        json.dump(state, f)
    lab.stages.clear()
    lab.procs.clear()
    print(lab.topo.run_id)
    print(f"hosts: client={lab.topo.client} server={lab.topo.server} routers="
          + ",".join(lab.topo.router(i) for i in lab.topo.indices()), file=sys.stderr)
    for i, s in zip(lab.topo.indices(), specs, strict=True):
        a = topology.PathAddrs(i)
        print(f"path {i}: client {a.client} -> router {lab.topo.router(i)} -> server "
              f"{topology.SERVER_ADDR} ({s.label()})", file=sys.stderr)
    print(f"remove with: mptcpsec lab down --run {lab.topo.run_id}", file=sys.stderr)
    return 0


def _down(args: argparse.Namespace) -> int:
    _, topology = _lab_modules()
    if os.geteuid() != 0:
        raise CliError("removing namespaces needs root")
    if args.all:
        gone = topology.cleanup_all()
        for name in os.listdir(STATE_DIR) if os.path.isdir(STATE_DIR) else []:
            _remove_state(name.removesuffix(".json"))
        print(f"removed {len(gone)} namespace(s)" + (f": {', '.join(gone)}" if gone else ""))
        return 0
    state = _load(args.run)
    for ns in state["namespaces"]:
        topology.remove_namespace(ns)
    _remove_state(state["run_id"])
    print(f"removed lab {state['run_id']}")
    return 0


def _remove_state(run_id: str) -> None:
    import shutil

    for path in (_state_file(run_id), os.path.join(STATE_DIR, run_id)):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.unlink(path)


def _status(args: argparse.Namespace) -> int:
    _, topology = _lab_modules()
    out = []
    for run_id, names in topology.runs().items():
        try:
            with open(_state_file(run_id)) as f:
                state = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            state = {"paths": [], "note": "no state file (a crashed run? mptcpsec lab down "
                     "--all removes it)"}
        procs = {ns: len(topology.namespace_pids(ns)) for ns in names}
        out.append({"run_id": run_id, "namespaces": names, "processes": procs, **state})
    if args.json:
        print(json.dumps({"labs": out}, indent=1))
        return 0
    if not out:
        print("no lab is up")
    for lab in out:
        paths = ", ".join(topology.PathSpec(**p).label() for p in lab.get("paths", []))
        print(f"lab {lab['run_id']}: {len(lab['namespaces'])} namespaces"
              + (f"; paths: {paths}" if paths else "") + (f" ({lab['note']})"
                                                         if "note" in lab else ""))
        for ns in lab["namespaces"]:
            print(f"  {ns}: {lab['processes'][ns]} process(es)")
    return 0


def _exec(args: argparse.Namespace) -> int:
    _, topology = _lab_modules()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise CliError("give a command: mptcpsec lab exec HOST -- CMD ...")
    state = _load(args.run)
    topo = topology.Topology([topology.PathSpec()] * max(1, len(state["namespaces"]) - 2),
                             run_id=state["run_id"])
    try:
        ns = topo.host(args.host)
    except topology.LabError as exc:
        raise CliError(str(exc)) from None
    from ..lab.net.env import _env

    return subprocess.call(["ip", "netns", "exec", ns, *cmd], env=_env())


def _link(args: argparse.Namespace) -> int:
    _, topology = _lab_modules()
    state = _load(args.run)
    topo = topology.Topology([topology.PathSpec()] * max(1, len(state["namespaces"]) - 2),
                             run_id=state["run_id"])
    if args.path not in topo.indices():
        raise CliError(f"no path {args.path}")
    topo.set_link(args.path, args.state == "up")
    print(f"path {args.path} {args.state}")
    return 0

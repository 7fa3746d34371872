"""``--net netns`` for ``mptcpsec demo`` and ``mptcpsec bench transfer|failover``.

The commands keep their loopback behaviour (unprivileged: loopback aliases and TCP relays,
record-aware attacks); with ``--net netns`` they hand over to this module, which runs the
same experiment on namespaced IP paths with the packet-level attacker and the kernel's MPTCP
beside mptcpsec (root).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from ...errors import NetCliError as NetCliError
from .names import ATTACKS

#: loopback attack names that have a packet-level counterpart
LOOPBACK_TO_NETNS = {"bitflip-data": "bitflip", "replay": "replay", "drop": "drop",
                     "inject": "inject", "rst": "rst"}
NET_HELP = ("loopback (default, unprivileged): aliases of 127.0.0.1 and TCP relays, "
            "record-aware attacks, mptcpsec's own baselines; netns (root): hosts and routers "
            "in network namespaces, the packet-level attacker in a router, the real kernel "
            "MPTCP and TLS over it beside mptcpsec")


NETNS_TRANSFER_BYTES = 40_000_000


def add_demo_args(p: argparse.ArgumentParser) -> None:
    """``--net`` on ``mptcpsec demo``; the packet-level attack names (and ``all``) join the
    choices of its ``--attack``; ``--attack-path`` defaults to 2 on loopback, 1 on netns
    (the path that carries MP_CAPABLE, whose keys the MPTCP-aware forgeries need)."""
    p.add_argument("--net", choices=("loopback", "netns"), default="loopback", help=NET_HELP)
    for action in p._actions:
        if action.dest == "attack" and action.choices is not None:
            extra = [a for a in (*ATTACKS, "all") if a not in action.choices]
            action.choices = (*action.choices, *extra)
            action.help = (action.help or "") + (
                ". With --net netns (packet level, kernel MPTCP too): " + ", ".join(ATTACKS)
                + ", or all (every attack, one table)")
        if action.dest == "attack_path":
            action.default = None
            action.help = "which path the attacker sits on, from 1 (default: 2; with --net " \
                          "netns: 1)"


def loopback_args(args: argparse.Namespace) -> str | None:
    """Fill loopback defaults; an error message if a netns-only attack was asked for."""
    from ..attacks import ATTACKS as LOOPBACK

    if args.attack_path is None:
        args.attack_path = 2
    if args.attack not in (*LOOPBACK, "none", None):
        return f"--attack {args.attack} is a packet-level attack: add --net netns (root)"
    return None


def _progress(quiet: bool):
    def show(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)
    return show


def _prereq() -> None:
    from .env import check_prerequisites

    why = check_prerequisites()
    if why:
        raise NetCliError(f"--net netns: the namespace lab {why}")


def run_demo(args: argparse.Namespace) -> int:
    """``mptcpsec demo --net netns [--compare] [--attack NAME|all] [--json]``."""
    from .attacker import AttackConfig
    from .scenarios import MODES, AttackPlan, format_table, run_attacks

    _prereq()
    name = args.attack or "none"
    name = LOOPBACK_TO_NETNS.get(name, name)
    if name not in (*ATTACKS, "none", "all"):
        raise NetCliError(f"--attack {args.attack} has no packet-level form; with --net "
                          f"netns choose from {', '.join(ATTACKS)} or all")
    attacks = ATTACKS if name == "all" else (name,)
    modes = MODES if (args.compare or name == "all") else ("mptcpsec",)
    for one in attacks:
        if one != "none":
            AttackConfig(one, args.after or 0, args.direction)  # validates
    nbytes = min(args.bytes, 50_000_000)
    after = args.after if args.after else 300_000
    if after >= nbytes // 2:
        after = nbytes // 4
    from .topology import PathSpec

    path = PathSpec(args.rate_mbps or None, 2 * args.delay_ms)  # --delay-ms is one way
    plan = AttackPlan(attacks=attacks, modes=modes, nbytes=nbytes, after_bytes=after,
                      paths=(path, path),
                      attack_path=args.attack_path or 1,
                      direction=args.direction, key_exchange=args.key_exchange)
    if plan.attack_path not in (1, 2):
        raise NetCliError("--net netns has two paths: --attack-path 1 or 2")
    runs = run_attacks(plan, _progress(args.quiet or False))
    if args.json:
        doc = {"net": "netns", "runs": [r.to_dict() for r in runs]}
        print(json.dumps(doc if (args.compare or len(runs) > 1) else runs[0].to_dict(),
                         indent=2, default=str))
    else:
        print(format_table(runs))
        for r in runs:
            if r.error and not r.intact:
                print(f"{r.attack} / {r.mode}: {r.error}")
    mine = [r for r in runs if r.mode == "mptcpsec"]
    return 0 if all(r.intact for r in mine) else 1


def add_bench_args(p: argparse.ArgumentParser, failover: bool = False) -> None:
    p.add_argument("--net", choices=("loopback", "netns"), default="loopback", help=NET_HELP
                   + ". With netns only --path, --bytes (default 40M there), --repeats, "
                   "--out, --json apply; rows: mptcpsec (one subflow per path), kernel-mptcp "
                   "(one subflow per path), tcp and tls (path 1)")
    default = "two 50:10 paths; path 1's link goes down" if failover else "50:10 and 20:40"
    p.add_argument("--path", action="append", metavar="RATE_MBIT:RTT_MS[:LOSS%]",
                   help=f"--net netns: one path (repeat; default: {default})")


def _paths(args: argparse.Namespace) -> list[Any]:
    from .topology import PathSpec

    try:
        return [PathSpec.parse(p) for p in (args.path or ["50:10", "20:40"])]
    except ValueError as exc:
        raise NetCliError(str(exc)) from None


def _write(args: argparse.Namespace, name: str, doc: dict[str, Any]) -> str:
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{name}-netns.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    return path


def run_transfer(args: argparse.Namespace) -> int:
    """``mptcpsec bench transfer --net netns --path 50:10 --path 20:40``."""
    from dataclasses import asdict

    from .scenarios import format_transfer, run_transfer as run

    _prereq()
    paths = _paths(args)
    if len(paths) < 2:
        raise NetCliError("--net netns transfer needs two --path at least (split-path)")
    # the loopback default (256 MB) would take minutes per row at tens of Mbit/s: the
    # caller says which default it has (``bytes_default``), this package imports no perf
    default = getattr(args, "bytes_default", None)
    nbytes = NETNS_TRANSFER_BYTES if args.bytes == default else args.bytes
    t0 = time.monotonic()
    rows, meta = run(paths, nbytes=nbytes, repeats=args.repeats,
                     progress=_progress(args.quiet))
    doc = {"bench": "transfer", "net": "netns", **meta, "bytes": nbytes,
           "repeats": args.repeats, "rows": [asdict(r) for r in rows],
           "seconds": round(time.monotonic() - t0, 1),
           "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    path = _write(args, "transfer", doc)
    if args.json:
        print(json.dumps(doc, indent=1, default=str))
    else:
        print(format_transfer(rows, meta))
        print(f"\nwrote {path}")
    return 0


def run_failover(args: argparse.Namespace) -> int:
    """``mptcpsec bench failover --net netns``: path 1's link goes down mid-echo."""
    from dataclasses import asdict

    from .scenarios import format_failover, run_failover as run

    _prereq()
    paths = _paths(args) if args.path else _paths(argparse.Namespace(path=["50:10", "50:10"]))
    t0 = time.monotonic()
    rows = run(paths, progress=_progress(args.quiet))
    doc = {"bench": "failover", "net": "netns", "paths": [vars(p) for p in paths],
           "rows": [asdict(r) for r in rows], "seconds": round(time.monotonic() - t0, 1)}
    path = _write(args, "failover", doc)
    if args.json:
        print(json.dumps(doc, indent=1, default=str))
    else:
        print(format_failover(rows))
        print(f"\nwrote {path}")
    return 0

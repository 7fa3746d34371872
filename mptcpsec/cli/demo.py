"""`mptcpsec demo`: a secure echo over two paths, one of them attacked, watched live."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from ._common import (
    SCHEDULERS,
    CliError,
    add_attack_args,
    attack_from_args,
    output_file,
    plot_file,
    positive_float,
    run_async,
    size,
)

EPILOG = """\
what you see: the echo server listens on 127.0.0.1 and 127.0.0.2; each path goes through
a proxy (`mptcpsec proxy`) that delays it a little and, on path 2, attacks one record
after 1 MB. mptcpsec detects the forgery (the record's tag fails), drops that subflow,
tells the peer over the clean one and re-sends what was in flight: the echo comes back
intact, and the verdict shows the SHA-256 of what was sent and what came back.

examples:
  mptcpsec demo                                   # the defaults above
  mptcpsec demo --compare                         # plain vs tls-over-plain vs mptcpsec
  mptcpsec demo --attack replay --attack-after 5MB --key-exchange tls
  mptcpsec demo --attack bitflip-option --option dss --field data_ack --direction s2c
  mptcpsec demo --paths 3 --attack-path 3 --bytes 50MB --rate-mbps 0
  mptcpsec demo --compare --json > runs.json      # machine-readable, no live view
  mptcpsec demo --plot demo.png --pcap demo.pcap  # throughput plot; capture for Wireshark
  mptcpsec demo --net netns --compare --attack all   # root: kernel MPTCP, TLS over it,
                                                     # mptcpsec under packet-level attacks
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="watch an attack on one path fail against mptcpsec (and --compare)",
        description="Echo data over several paths through attacker proxies and show, live, "
        "what the attack does: mptcpsec drops the poisoned subflow and completes intact.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paths", type=int, default=2, help="number of paths (default: 2)")
    p.add_argument("--mode", choices=("mptcpsec", "plain", "tls-over-plain"),
                   default="mptcpsec", help="what to protect the stream with")
    p.add_argument("--key-exchange", "-k", choices=("split-path", "tls", "psk"),
                   default="split-path", help="mptcpsec key exchange (default: split-path)")
    p.add_argument("--bytes", type=size, default=20_000_000, metavar="BYTES",
                   help="how much to echo (default: 20MB)")
    p.add_argument("--attack-path", type=int, default=2, metavar="N",
                   help="which path the attacker sits on, from 1 (default: 2)")
    add_attack_args(p, default="bitflip-data", default_after=1_000_000)
    e = p.add_argument_group("paths")
    e.add_argument("--delay-ms", type=positive_float, default=5.0,
                   help="one-way delay of every path (default: 5)")
    e.add_argument("--rate-mbps", type=positive_float, default=50.0,
                   help="rate limit of every path, per direction; 0: unlimited (default: 50)")
    e.add_argument("--scheduler", choices=SCHEDULERS, default="round-robin",
                   help="round-robin (default) spreads records over every path")
    o = p.add_argument_group("output")
    o.add_argument("--compare", action="store_true",
                   help="run the same attack against plain, tls-over-plain and mptcpsec and "
                   "print a table")
    o.add_argument("--json", action="store_true",
                   help='print the result as JSON (with --compare: {"runs": [...]})')
    o.add_argument("--plot", metavar="FILE.png", type=plot_file,
                   help="per-subflow throughput over time, the attack marked (.png, .svg or "
                   ".pdf)")
    o.add_argument("--pcap", metavar="FILE", type=output_file,
                   help="capture every record (client side); with --compare, one file per "
                   "mode (FILE-MODE.pcap)")
    o.add_argument("--trace", metavar="FILE", type=output_file,
                   help="records as JSON lines (as --pcap)")
    o.add_argument("--no-live", action="store_true",
                   help="plain progress lines even on a terminal")
    o.add_argument("--quiet", "-q", action="store_true", help="only the verdict (or JSON)")
    from ..lab.net.commands import add_demo_args

    add_demo_args(p)
    p.set_defaults(func=_run)


def _suffixed(path: str | None, mode: str, compare: bool) -> str | None:
    if path is None or not compare:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}-{mode}{ext}"


def _scenarios(args: argparse.Namespace) -> list[Any]:
    from ..lab.scenarios import MAX_PATHS, Scenario

    if not 1 <= args.paths <= MAX_PATHS:
        raise CliError(f"--paths must be 1..{MAX_PATHS}")
    attack = attack_from_args(args)
    modes = ["plain", "tls-over-plain", "mptcpsec"] if args.compare else [args.mode]
    out = []
    for mode in modes:
        sc = Scenario(mode=mode, key_exchange=args.key_exchange, paths=args.paths,
                      nbytes=args.bytes, attack=attack, attack_path=args.attack_path,
                      delay_ms=args.delay_ms, rate_mbps=args.rate_mbps or None,
                      scheduler=args.scheduler,
                      pcap=_suffixed(args.pcap, mode, args.compare),
                      trace=_suffixed(args.trace, mode, args.compare))
        try:
            sc.validate()
        except ValueError as exc:
            raise CliError(str(exc)) from None
        out.append(sc)
    return out


def _run(args: argparse.Namespace) -> int:
    from ..lab.net import commands as net

    if args.net == "netns":
        try:
            return net.run_demo(args)
        except net.NetCliError as exc:
            raise CliError(str(exc)) from None
    if (msg := net.loopback_args(args)) is not None:
        raise CliError(msg)
    return _run_loopback(args)


def _run_loopback(args: argparse.Namespace) -> int:
    from ..demo.live import LiveView, PlainLines
    from ..lab.scenarios import Observer, run_scenario

    scenarios = _scenarios(args)
    live = (not args.json and not args.quiet and not args.no_live and sys.stdout.isatty()
            and os.environ.get("TERM") != "dumb")

    async def main(stop: asyncio.Event) -> list[Any]:
        results = []
        for i, sc in enumerate(scenarios):
            label = f"{i + 1}/{len(scenarios)} {sc.mode}" if len(scenarios) > 1 else ""
            job: Any
            if live:
                view = LiveView(sc, title=f"mptcpsec demo {label}".strip())
                with view:
                    job = asyncio.ensure_future(run_scenario(sc, view))
                    await _until(job, stop)
                    if job.done() and not job.cancelled() and job.exception() is None:
                        view.stats = job.result().subflows  # the final states
                        view.phase("done")
            else:
                obs: Observer = Observer() if (args.quiet or args.json) else PlainLines(
                    sc, sys.stderr if args.json else sys.stdout, label)
                job = asyncio.ensure_future(run_scenario(sc, obs))
                await _until(job, stop)
            if stop.is_set():
                raise KeyboardInterrupt
            results.append(job.result())
            if not args.json and not args.quiet and len(scenarios) > 1:
                print()
        return results

    outcome = run_async(main)
    if isinstance(outcome, int):
        return outcome
    results = outcome
    if args.plot:
        from ..demo.plot import plot_results

        try:
            plot_results(results, args.plot)
        except OSError as exc:
            raise CliError(f"cannot write the plot {args.plot!r}: "
                           f"{exc.strerror or exc}") from None
    if args.json:
        from ..demo.verdict import to_json

        doc = {"runs": [to_json(r) for r in results]} if args.compare else to_json(results[0])
        print(json.dumps(doc, indent=2, default=str))
    else:
        _print_verdicts(results, args, live)
        if args.plot:
            print(f"plot written to {args.plot}")
    return _exit_status(results)


def _exit_status(results: list[Any]) -> int:
    """0 only if mptcpsec came back intact and the attack fired in every run: a run whose
    attack never fired shows nothing, and a comparison of such runs proves nothing."""
    idle = [r.mode for r in results if r.attack and not r.strikes]
    if idle:
        print(f"mptcpsec demo: the attack did not fire in: {', '.join(idle)} (too little "
              "data crossed the attacked path: raise --bytes or lower --attack-after)",
              file=sys.stderr)
        return 1
    mine = [r for r in results if r.mode == "mptcpsec"]
    return 0 if all(r.intact for r in mine) else 1


async def _until(job: asyncio.Future[Any], stop: asyncio.Event) -> None:
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([job, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not job.done():
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)


def _print_verdicts(results: list[Any], args: argparse.Namespace, rich_out: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..demo.verdict import explanation, headline, table_row

    # Not a terminal: no hard wrapping (a pipe or file gets whole lines).
    console = Console(highlight=False, width=None if rich_out else 120, soft_wrap=not rich_out)
    colour = {"INTACT": "bold green", "CORRUPTED": "bold red", "ABORTED": "bold yellow",
              "STALLED": "bold yellow"}
    if len(results) > 1:
        rows = [table_row(r) for r in results]
        table = Table(title=f"the same attack ({results[0].attack}) on path "
                      f"{results[0].attack_path}, three ways")
        for col in rows[0]:
            table.add_column(col)
        for row in rows:
            cells = list(row.values())
            cells[-1] = f"[{colour.get(cells[-1], '')}]{cells[-1]}[/]"
            table.add_row(*cells)
        console.print(table)
        for r in results:
            console.print(f"[bold]{r.mode}[/]: {explanation(r)}")
        return
    r = results[0]
    h = headline(r)
    console.print(f"\n[bold]verdict[/] ({r.mode}, key exchange {r.key_exchange}, "
                  f"{r.duration_s:.2f} s)")
    console.print(f"  sha256 sent   {r.sha256_sent}")
    console.print(f"  sha256 echoed {r.sha256_echoed}")
    console.print(f"  {r.bytes_echoed:,} of {r.bytes_sent:,} bytes echoed")
    for s in r.subflows:
        reason = f": {s['reason']}" if s["reason"] and s["state"] != "closed" else ""
        console.print(f"  subflow {s['id']} ({str(s['local']).rpartition(':')[0]} -> "
                      f"{s['remote']}) {s['state']}{reason}; sent {int(s['bytes_sent']):,} "
                      f"bytes, {int(s['reinjected_bytes']):,} of them re-sent elsewhere")
    console.print(f"  [{colour.get(h, '')}]{h}[/] - {explanation(r)}")

"""`mptcpsec proxy`: one emulated, optionally hostile path between a client and a server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from ._common import (
    CliError,
    add_attack_args,
    address,
    attack_from_args,
    listen_address,
    positive_float,
    run_async,
    size,
)

EPILOG = """\
examples:
  # path 2 of a connection through a proxy that flips a bit after 1 MB:
  mptcpsec serve --listen 127.0.0.1:7000 --listen 127.0.0.2:7000
  mptcpsec proxy --listen 127.0.0.2:7001 --upstream 127.0.0.2:7000 \\
                 --delay-ms 5 --attack bitflip-data --after 1MB
  mptcpsec connect --connect 127.0.0.1:7000 --connect 127.0.0.2:7001 --bind 127.0.0.2 \\
                   --no-join --verify 20MB

  # a slow, lossy-looking path without an attack:
  mptcpsec proxy --listen 127.0.0.3:7001 --upstream 127.0.0.3:7000 --delay-ms 40 \\
                 --rate-mbps 20

The proxy sees the record stream of every subflow through it. It prints one line per
connection and per strike; Ctrl-C stops it (with --json: a summary on stdout).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "proxy", help="relay one path with delay, rate limit, blackhole and record attacks",
        description="A TCP relay for one path: it emulates the path (one-way delay, rate "
        "limit, blackhole) and can attack the records on it, as an on-path attacker would.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", required=True, type=listen_address, metavar="HOST:PORT",
                   help="where clients connect")
    p.add_argument("--upstream", required=True, type=address, metavar="HOST:PORT",
                   help="the server address behind the proxy")
    e = p.add_argument_group("path emulation")
    e.add_argument("--delay-ms", type=positive_float, default=0.0,
                   help="one-way delay per direction (RTT grows by twice this)")
    e.add_argument("--rate-mbps", type=positive_float, help="rate limit per direction")
    e.add_argument("--blackhole-after", type=size, metavar="BYTES",
                   help="after this many client-to-server bytes, drop everything silently")
    add_attack_args(p, default="none")
    p.add_argument("--json", action="store_true", help="on exit, print a JSON summary")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..lab.proxy import Proxy

    spec = attack_from_args(args)
    if args.rate_mbps == 0:
        raise CliError("--rate-mbps must be > 0 (leave it out for no limit)")

    def say(text: str) -> None:
        if not args.quiet:
            print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    async def main(stop: asyncio.Event) -> int:
        proxy = Proxy(args.listen, args.upstream, delay_ms=args.delay_ms,
                      rate_mbps=args.rate_mbps, blackhole_after=args.blackhole_after,
                      attack=spec, name="proxy",
                      on_strike=lambda s: say(f"ATTACK flow {s.flow} {s.direction} record "
                                              f"{s.record_index + 1} ({s.record_type}, stream "
                                              f"offset {s.stream_offset}): {s.detail}"))
        started = time.time()
        try:
            await proxy.start()
        except OSError as exc:
            raise CliError(f"cannot listen on {args.listen[0]}:{args.listen[1]}: "
                           f"{exc.strerror or exc}") from None
        host, port = proxy.address
        say(f"proxy {host}:{port} -> {args.upstream[0]}:{args.upstream[1]}"
            f"{_path_text(args)}; attack: {spec.describe() if spec else 'none'}")
        seen: dict[int, bool] = {}
        try:
            while not stop.is_set():
                for f in proxy.relay.flows:
                    closed = f.closed.is_set()
                    if f.index not in seen:
                        peer = f.client_writer.get_extra_info("peername") or ("?", 0)
                        say(f"flow {f.index} from {peer[0]}:{peer[1]}")
                    if closed and not seen.get(f.index):
                        say(f"flow {f.index} ended: {_flow_bytes(f)}")
                    seen[f.index] = closed
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
        finally:
            stats = proxy.stats()
            await proxy.close()
        say("stopped")
        if args.json:
            for strike in stats["strikes"]:  # seconds since the proxy started, not epoch
                strike["t"] = round(float(strike.pop("time")) - started, 4)
                strike["record_number"] = int(strike["record_index"]) + 1
            for key in ("listen", "upstream"):  # HOST:PORT, as on the command line
                host, port = stats[key]
                stats[key] = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
            print(json.dumps(stats, indent=2))
        return 0

    return int(run_async(main))


def _path_text(args: argparse.Namespace) -> str:
    parts = []
    if args.delay_ms:
        parts.append(f"delay {args.delay_ms:g} ms")
    if args.rate_mbps:
        parts.append(f"rate {args.rate_mbps:g} Mbit/s")
    if args.blackhole_after is not None:
        parts.append(f"blackhole after {args.blackhole_after} bytes")
    return f" ({', '.join(parts)})" if parts else ""


def _flow_bytes(f: Any) -> str:
    return ", ".join(f"{d.value} {n:,} bytes" for d, n in f.bytes_in.items())

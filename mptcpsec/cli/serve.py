"""`mptcpsec serve`: an echo (or discard) server on several addresses."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from ..errors import MptcpsecError
from ._common import CliError, add_connection_args, address, build_config, run_async

EPILOG = """\
examples:
  mptcpsec serve --listen 127.0.0.1:7000 --listen 127.0.0.2:7000
  mptcpsec serve -l 127.0.0.1:7000 -l 127.0.0.2:7000 -k tls            # prints the --pin
  mptcpsec serve -l 127.0.0.1:7000 -k tls --cert srv.pem --key srv.key --client-cert \\
                 --cafile clients-ca.pem
  MPTCPSEC_PSK=$(openssl rand -hex 32) mptcpsec serve -l 127.0.0.1:7000 -k psk
  mptcpsec serve -l 127.0.0.1:7000 -l 127.0.0.2:7000 --identity server.id  # split-path TOFU
  mptcpsec serve -l 127.0.0.1:7000 -l 127.0.0.2:7000 --discard --once --json

split-path (the default) needs a client with two paths; the server needs no credentials.
Ctrl-C stops the server.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run an echo (or discard) server on several addresses",
        description="Listen on every --listen address; each connection may use any of them "
        "as subflows. Echo what each connection sends (or --discard it).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", "-l", action="append", required=True, metavar="HOST:PORT",
                   type=address, help="an address to listen on (repeat for each path)")
    p.add_argument("--discard", action="store_true", help="read and drop instead of echoing")
    p.add_argument("--announce", action="append", default=[], metavar="HOST:PORT",
                   type=address, help="announce this address to clients (ADD_ADDR)")
    p.add_argument("--once", action="store_true", help="exit after the first connection")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary line per connection on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no log lines on stderr")
    add_connection_args(p, "server")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..aio.api import MptcpsecStream, serve
    from ..aio.capture import open_sink
    from ..protocol.events import SubflowClosed, SubflowPoisoned

    cfg, info = build_config(args, "server")
    cfg.announce = list(args.announce)

    def say(text: str) -> None:
        if not args.quiet:
            print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    async def main(stop: asyncio.Event) -> int:
        count = {"n": 0}
        done = asyncio.Event()

        async def handler(stream: MptcpsecStream) -> None:
            count["n"] += 1
            n = count["n"]
            t0 = time.monotonic()
            stats = stream.subflow_stats()
            say(f"connection {n}: {cfg.mode}/{cfg.key_exchange}, subflows "
                + ", ".join(f"{s['id']}={s['remote']}" for s in stats))

            def on_event(ev: Any) -> None:
                if isinstance(ev, SubflowPoisoned):
                    who = "peer reports" if ev.reported_by_peer else "detected"
                    say(f"connection {n}: subflow {ev.subflow_id} POISONED ({who}: "
                        f"{ev.reason}: {ev.detail})")
                elif isinstance(ev, SubflowClosed) and not ev.clean:
                    say(f"connection {n}: subflow {ev.subflow_id} dropped: {ev.reason}")

            stream.add_event_listener(on_event)
            total = 0
            try:
                while data := await stream.read(1 << 16):
                    total += len(data)
                    if not args.discard:
                        stream.write(data)
                        await stream.drain()
                stream.close()  # our DATA_FIN after the last echoed byte
                with contextlib.suppress(MptcpsecError, asyncio.TimeoutError):
                    await stream.wait_closed(10)
            except MptcpsecError:
                pass
            finally:
                summary = {"connection": n, "mode": cfg.mode, "key_exchange": cfg.key_exchange,
                           "bytes_received": total, "echoed": not args.discard,
                           "error": stream.error, "duration_s": round(time.monotonic() - t0, 3),
                           "subflows": stream.subflow_stats(),
                           "events": [e.to_dict() for e in stream.events]}
                say(f"connection {n}: {total:,} bytes {'discarded' if args.discard else 'echoed'}"
                    + (f", error: {stream.error}" if stream.error else ""))
                if args.json:
                    print(json.dumps(summary, default=str), flush=True)
                if args.once:
                    done.set()

        sink = open_sink(pcap=args.pcap, trace=args.trace)
        try:
            server = await serve(handler, args.listen, cfg, sink=sink)
        except OSError as exc:
            raise CliError(f"cannot listen: {exc.strerror or exc} (is the address local and "
                           "the port free?)") from None
        say("listening on " + ", ".join(f"{h}:{p}" for h, p in server.addresses)
            + f" ({cfg.mode}, key exchange {cfg.key_exchange}, "
            f"{'discard' if args.discard else 'echo'})")
        if "fingerprint" in info:
            say(f"tls certificate fingerprint: {info['fingerprint']}"
                + (" (self-signed; clients: --pin it)" if info.get("self_signed") else ""))
        if "identity" in info:
            say(f"split-path identity (ed25519): {info['identity']}")
        try:
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(done.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
        finally:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 3)
            if sink is not None:
                sink.close()
        say("stopped")
        return 0

    return int(run_async(main))

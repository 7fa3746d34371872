"""`mptcpsec serve`: an echo (or discard) server on several addresses."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import time
from typing import Any

from ..errors import MptcpsecError
from ._common import (
    CliError,
    add_connection_args,
    address,
    build_config,
    listen_address,
    positive_float,
    run_async,
)

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


#: The reason a connection still open after the shutdown grace period is fast-closed with.
SHUTDOWN = "server shutting down"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run an echo (or discard) server on several addresses",
        description="Listen on every --listen address; each connection may use any of them\n"
        "as subflows. Echo what each connection sends (or --discard it, or with --stdio\n"
        "relay one connection to stdin/stdout, like `nc -l`). Logs one line per\n"
        "connection, join, closed subflow and refused attempt (address and reason).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", "-l", action="append", required=True, metavar="HOST:PORT",
                   type=listen_address,
                   help="an address to listen on, repeat for each path (port 0: a free one)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--discard", action="store_true",
                      help="read and drop instead of echoing")
    what.add_argument("--stdio", action="store_true",
                      help="serve one connection: what it sends goes to stdout, stdin goes "
                      "to it (DATA_FIN at EOF); exit status 0 only if it closed cleanly")
    p.add_argument("--announce", action="append", default=[], metavar="HOST:PORT",
                   type=address, help="announce this address to clients (ADD_ADDR)")
    p.add_argument("--once", action="store_true", help="exit after the first connection")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary line per connection on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no log lines on stderr "
                   "(--log-file still gets them)")
    p.add_argument("--grace", type=positive_float, default=3.0, metavar="SECONDS",
                   help="on Ctrl-C/SIGTERM: how long live connections get to finish after "
                   "the server's DATA_FIN before they are fast-closed (default: %(default)g)")
    add_connection_args(p, "server")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..aio.api import MptcpsecServer, MptcpsecStream
    from ..aio.capture import open_sink
    from ..protocol.events import (
        ConnectionTerminated,
        DataReinjected,
        HandshakeCompleted,
        SubflowClosed,
        SubflowEstablished,
        SubflowPoisoned,
    )
    from ..wire.pcap import MultiSink
    from ._logging import LOG, RateLimited, RecordLog
    from ._stdio import relay_stdio

    if args.stdio and args.json:
        raise CliError("--stdio writes the connection's bytes to stdout: drop --json")
    cfg, info = build_config(args, "server")
    cfg.announce = list(args.announce)
    log = LOG.getChild("serve")
    refused = RateLimited(log)
    settings = (f"--mode {cfg.mode}, -k {cfg.key_exchange if cfg.mode == 'mptcpsec' else 'none'}"
                f", --algorithm {cfg.algorithm.value}")
    verbose = log.isEnabledFor(logging.DEBUG)

    def on_refused(remote: tuple[str, int] | None, reason: str) -> None:
        who = f"{remote[0]}:{remote[1]}" if remote else "?"
        refused.warning(f"refused {who}: {reason}")

    def on_connection_event(n: int, remote: tuple[str, int] | None, ev: Any) -> None:
        who = f"{remote[0]}:{remote[1]}" if remote else "?"
        if isinstance(ev, HandshakeCompleted):
            handled.add(n)
            numbers.append(n)  # its handler starts next, in this order
            log.info(f"connection {n} from {who}: {ev.mode}, key exchange {ev.key_exchange}, "
                     f"{ev.algorithm}")
        elif isinstance(ev, ConnectionTerminated):
            if ev.error is not None and ev.error.endswith(SHUTDOWN):
                pass  # logged by _shut_down
            elif ev.error is not None and n not in handled:
                refused.warning(f"refused {who} (connection {n}): handshake failed: {ev.error}"
                                f" (this server: {settings}; a client with other settings "
                                "fails like this)")
            elif ev.error is not None:
                log.warning(f"connection {n}: failed: {ev.error}")
            else:
                log.info(f"connection {n}: closed")
        elif isinstance(ev, SubflowEstablished) and ev.join:
            log.info(f"connection {n}: subflow {ev.subflow_id} joined from {ev.remote}"
                     + (" (backup)" if ev.backup else ""))
        elif isinstance(ev, SubflowPoisoned):
            how = "peer reports" if ev.reported_by_peer else "detected"
            log.warning(f"connection {n}: subflow {ev.subflow_id} POISONED ({how}: "
                        f"{ev.reason}: {ev.detail})")
        elif isinstance(ev, SubflowClosed):
            if ev.clean:
                log.info(f"connection {n}: subflow {ev.subflow_id} closed")
            else:
                log.warning(f"connection {n}: subflow {ev.subflow_id} dropped: {ev.reason}")
        elif isinstance(ev, DataReinjected) or verbose:
            log.debug(f"connection {n}: {ev.kind} {ev.to_dict()}")

    handled: set[int] = set()  # connections whose handshake completed
    numbers: collections.deque[int] = collections.deque()
    live: dict[int, MptcpsecStream] = {}

    async def main(stop: asyncio.Event) -> int:
        count = {"n": 0, "failed": 0}
        done = asyncio.Event()

        async def handler(stream: MptcpsecStream) -> None:
            count["n"] += 1
            n = numbers.popleft() if numbers else count["n"]
            live[n] = stream
            t0 = time.monotonic()
            stats = stream.subflow_stats()
            log.info(f"connection {n}: subflows "
                     + ", ".join(f"{s['id']}={s['remote']}" for s in stats))
            total = 0
            try:
                if args.stdio:
                    code = await relay_stdio(stream, stop)
                    count["failed"] += code != 0
                    return
                while data := await stream.read(1 << 16):
                    total += len(data)
                    if not args.discard and not stop.is_set():  # shutting down: no echo
                        stream.write(data)
                        await stream.drain()
                stream.close()  # our DATA_FIN after the last echoed byte
                with contextlib.suppress(MptcpsecError, asyncio.TimeoutError):
                    await stream.wait_closed(10)
            except MptcpsecError:
                count["failed"] += args.stdio
            finally:
                live.pop(n, None)
                if not args.stdio:
                    summary = {"connection": n, "mode": cfg.mode,
                               "key_exchange": cfg.key_exchange, "bytes_received": total,
                               "echoed": not args.discard, "error": stream.error,
                               "duration_s": round(time.monotonic() - t0, 3),
                               "subflows": stream.subflow_stats(),
                               "events": [e.to_dict() for e in stream.events]}
                    error = stream.error
                    log.info(f"connection {n}: {total:,} bytes "
                             f"{'discarded' if args.discard else 'echoed'}"
                             + ("" if not error or error.endswith(SHUTDOWN)
                                else f", error: {error}"))
                    if args.json:
                        print(json.dumps(summary, default=str), flush=True)
                if args.once or args.stdio:
                    done.set()

        sinks = [s for s in (open_sink(pcap=args.pcap, trace=args.trace),
                             RecordLog(log) if verbose else None) if s is not None]
        sink = sinks[0] if len(sinks) == 1 else MultiSink(*sinks) if sinks else None
        server = MptcpsecServer(handler, cfg, sink=sink)
        server.on_refused = on_refused
        server.on_connection_event = on_connection_event
        try:
            await server.start(args.listen)
        except OSError as exc:
            if sink is not None:
                sink.close()
            where = ", ".join(f"{h}:{p}" for h, p in args.listen)
            raise CliError(f"cannot listen on {where}: {exc.strerror or exc} (is the address "
                           "one of this host's, and the port free?)") from None
        what = "stdio" if args.stdio else "discard" if args.discard else "echo"
        log.info("listening on " + ", ".join(f"{h}:{p}" for h, p in server.addresses)
                 + f" ({cfg.mode}, key exchange {cfg.key_exchange}, {cfg.algorithm.value}, "
                 f"{what})")
        if "fingerprint" in info:
            log.info(f"tls certificate fingerprint: {info['fingerprint']}"
                     + (" (self-signed; clients: --pin it)" if info.get("self_signed") else ""))
        if "identity" in info:
            log.info(f"split-path identity (ed25519): {info['identity']}")
        try:
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(done.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            if stop.is_set() and live:
                await _shut_down(live, args.grace, log)
        finally:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 3)
            if sink is not None:
                sink.close()
            refused.flush()
        log.info("stopped" + (" (interrupted)" if stop.is_set() else ""))
        if args.stdio:
            return 130 if stop.is_set() and not count["n"] else int(bool(count["failed"]))
        return 0

    return int(run_async(main))


async def _shut_down(live: dict[int, Any], grace: float, log: Any) -> None:
    """Ctrl-C with clients connected: DATA_FIN to each (an authenticated end of stream), a
    grace period to finish, then MP_FASTCLOSE for those still open."""
    log.info(f"shutting down: closing {len(live)} live connection(s)")
    streams = dict(live)
    for stream in streams.values():
        with contextlib.suppress(MptcpsecError):
            stream.close()

    async def closed(stream: Any) -> None:
        with contextlib.suppress(MptcpsecError, asyncio.TimeoutError):
            await asyncio.wait_for(stream._driver.closed.wait(), grace)

    await asyncio.gather(*(closed(s) for s in streams.values()))
    for n, stream in streams.items():
        if not stream._driver.closed.is_set():
            log.info(f"connection {n}: fast-closed (did not finish within {grace:g} s)")
            stream.abort(SHUTDOWN)
    # The MP_FASTCLOSE may sit behind full socket buffers: let each socket deliver it
    # (bounded by the driver's linger) before the process exits and drops it.
    await asyncio.gather(*(s._driver.wait_flushed() for s in streams.values()))

"""`mptcpsec connect`: a client over several paths; netcat-like, or a verified echo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from ..errors import MptcpsecError
from ._common import (
    CliError,
    add_connection_args,
    address,
    build_config,
    fmt_bytes,
    positive_float,
    resolve_key_exchange,
    run_async,
    size,
)
from ._hints import connect_failure, handshake_hint
from ._stdio import relay_stdio

EPILOG = """\
examples:
  # two paths, verify a 20 MB echo (exit status 0 only if it came back intact):
  mptcpsec connect -c 127.0.0.1:7000 -c 127.0.0.2:7000 --verify 20MB
  mptcpsec connect -c 127.0.0.1:7000 -c 127.0.0.2:7000 --verify 4MB --json
  # force path 2 through a proxy, and use exactly these paths:
  mptcpsec connect -c 127.0.0.1:7000 -b 127.0.0.1 -c 127.0.0.2:7001 -b 127.0.0.2 --no-join \\
                   --verify 20MB
  # like netcat: stdin to the server, the server's bytes to stdout
  echo hello | mptcpsec connect -c 127.0.0.1:7000 -c 127.0.0.2:7000
  # tls, verifying the server by the fingerprint `mptcpsec serve -k tls` printed:
  mptcpsec connect -c 127.0.0.1:7000 -k tls --pin 3f5a...
  # split-path, trusting the server's identity on first use:
  mptcpsec connect -c 127.0.0.1:7000 -c 127.0.0.2:7000 --known-hosts ~/.mptcpsec_known_hosts

Each --connect is one path (subflow); --bind gives the local address of the path in the same
position. split-path (the default) needs two paths: the key exchange is split over them.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "connect", help="connect over several paths: netcat-like, or --verify an echo",
        description="Open one secure multipath connection, one subflow per --connect. "
        "Without --verify/--send, stdin goes to the server and what it sends back goes to "
        "stdout.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connect", "-c", action="append", required=True, type=address,
                   metavar="HOST:PORT", help="a server address: one path (repeat)")
    p.add_argument("--bind", "-b", action="append", default=[], metavar="HOST",
                   help="local address of the path at the same position (repeat)")
    p.add_argument("--backup", action="append", type=int, default=[], metavar="N",
                   help="path N (counting from 1) is a backup, used only when no other is left")
    p.add_argument("--no-join", action="store_true",
                   help="use exactly these paths: ignore addresses the server announces")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--verify", type=size, metavar="BYTES",
                      help="send BYTES of random data and check the echo (SHA-256)")
    what.add_argument("--send", type=size, metavar="BYTES",
                      help="send BYTES of random data, read nothing back (a --discard server)")
    p.add_argument("--json", action="store_true",
                   help="with --verify/--send: print a JSON summary (as `mptcpsec demo "
                   "--json`); exit status 0 only if the echo came back intact")
    p.add_argument("--timeout", type=positive_float, default=15.0, metavar="SECONDS",
                   help="give up when connecting and the key exchange take longer, or when "
                   "nothing moved for this long (default: %(default)g)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    add_connection_args(p, "client")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..aio.api import Path

    resolve_key_exchange(args)
    if len(args.bind) > len(args.connect):
        raise CliError("more --bind than --connect: give one --bind per path, in order")
    if args.mode == "mptcpsec" and args.key_exchange == "split-path" and len(args.connect) < 2:
        raise CliError("split-path needs two paths: give two --connect (or -k tls / -k psk)")
    for n in args.backup:
        if not 1 <= n <= len(args.connect):
            raise CliError(f"--backup {n}: there are only {len(args.connect)} paths")
    cfg, _ = build_config(args, "client", first_remote=args.connect[0])
    if args.no_join:
        cfg.join_announced = False
    binds = args.bind + [None] * (len(args.connect) - len(args.bind))
    paths = [Path(remote, local=b, backup=(i + 1) in args.backup)
             for i, (remote, b) in enumerate(zip(args.connect, binds, strict=True))]

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    async def main(stop: asyncio.Event) -> int:
        from ..aio.api import connect
        from ..aio.capture import open_sink
        from ..lab.scenarios import _EventTap

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        events: list[dict[str, Any]] = []
        tap = _EventTap("client", t0, _Live(say), events)
        sink = open_sink(pcap=args.pcap, trace=args.trace)
        try:
            stream = await asyncio.wait_for(
                connect(paths, cfg, trace=tap, sink=sink,  # type: ignore[arg-type]
                        timeout=args.timeout), args.timeout)
        except (OSError, asyncio.TimeoutError, MptcpsecError) as exc:
            if sink is not None:
                sink.close()
            raise CliError(connect_failure(exc, args, paths, events)) from None
        try:
            if args.verify is None and args.send is None:
                return await relay_stdio(stream, stop)
            return await _measure(args, stream, events, t0, stop, say)
        finally:
            stream._driver.shutdown()
            if sink is not None:
                sink.close()

    return int(run_async(main))


class _Live:
    """Prints the protocol events worth a line while the connection runs."""

    def __init__(self, say: Any) -> None:
        self.say = say

    def event(self, side: str, t: float, ev: Any) -> None:
        kind = ev.kind
        if kind == "handshake_completed":
            self.say(f"[{t:6.3f}s] connected: {ev.mode}, key exchange {ev.key_exchange}, "
                     f"{ev.algorithm}")
        elif kind == "subflow_established":
            self.say(f"[{t:6.3f}s] subflow {ev.subflow_id} up: {ev.local} -> {ev.remote}"
                     + (" (backup)" if ev.backup else ""))
        elif kind == "subflow_poisoned":
            who = "the server reports" if ev.reported_by_peer else "detected"
            self.say(f"[{t:6.3f}s] subflow {ev.subflow_id} POISONED ({who}: {ev.reason}) "
                     "- dropped, its data re-sent on the others")
        elif kind == "subflow_closed" and not ev.clean:
            self.say(f"[{t:6.3f}s] subflow {ev.subflow_id} dropped: {ev.reason}")
        elif kind == "connection_terminated" and ev.error and not ev.error.startswith(
                "aborted: "):  # our own abort: the command says why itself
            self.say(f"[{t:6.3f}s] connection failed: {ev.error}")


async def _measure(args: argparse.Namespace, stream: Any, events: list[dict[str, Any]],
                   t0: float, stop: asyncio.Event, say: Any) -> int:
    from ..lab.scenarios import ScenarioResult
    from ._transfer import transfer

    loop = asyncio.get_running_loop()
    echo = args.verify is not None
    nbytes = args.verify if echo else args.send
    bar = _Progress(nbytes, args.quiet, echo=echo)
    t_start = loop.time()
    job = asyncio.ensure_future(transfer(stream, nbytes, echo=echo, stall_timeout=args.timeout,
                                         progress=bar.update))
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([job, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not job.done():
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
        bar.close()
        stream.abort("interrupted")
        say("interrupted")
        return 130
    run = job.result()
    bar.close()
    elapsed = loop.time() - t_start
    kx = next((e["key_exchange"] for e in events if e["event"] == "handshake_completed"),
              args.key_exchange if args.mode == "mptcpsec" else "none")
    server_error = next((e["error"] for e in events if e["side"] == "server"
                         and e["event"] == "connection_terminated" and e["error"]), None)
    res = ScenarioResult(
        mode=args.mode, key_exchange=kx, attack=None, attack_path=None, bytes_sent=run.sent,
        bytes_echoed=run.received, sha256_sent=run.sha_sent.hexdigest(),
        sha256_echoed=run.sha_back.hexdigest() if echo else None,  # type: ignore[arg-type]
        intact=run.intact, outcome=run.outcome, error=run.error,
        detected=any(e["event"] == "subflow_poisoned" for e in events),
        duration_s=round(loop.time() - t0, 3), subflows=stream.subflow_stats(), events=events,
        strikes=[], first_difference=run.first_difference, server_error=server_error)
    if args.json:
        doc = res.to_dict()
        doc["check"] = "echo" if echo else "delivery"  # --send: nothing comes back to hash
        doc["note"] = run.hint
        print(json.dumps(doc, indent=2, default=str))
    else:
        rate = run.sent * 8 / elapsed / 1e6 if elapsed > 0 else 0.0
        say(f"sent {run.sent:,} bytes in {elapsed:.2f} s ({rate:.0f} Mbit/s)")
        if echo:
            say(f"  sha256 sent   {res.sha256_sent}")
            say(f"  sha256 echoed {res.sha256_echoed}")
        if run.hint and run.outcome == "completed":
            say(f"  note: {run.hint}")
        word = "INTACT" if echo else "DELIVERED"
        if res.intact:
            say(f"  {word}")
        else:  # printed even with --quiet: the exit status alone does not say why
            print(f"  NOT {word} ({res.outcome}: {res.error})", file=sys.stderr, flush=True)
            if run.error and not run.received and not run.hint:
                print(f"  hint: {handshake_hint(run.error, args)}", file=sys.stderr,
                      flush=True)
    return 0 if res.intact else 1


class _Progress:
    """A rich progress bar on a terminal; a line per quarter otherwise."""

    def __init__(self, total: int, quiet: bool, echo: bool) -> None:
        self.total, self.quiet, self.echo = total, quiet, echo
        self._bar: Any = None
        self._next_line = 0.25
        self._t0 = time.monotonic()
        if quiet or not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self._bar = Progress("[progress.description]{task.description}", BarColumn(),
                             DownloadColumn(), TransferSpeedColumn(),
                             console=Console(stderr=True), transient=True)
        self._sent = self._bar.add_task("sent", total=total)
        self._echoed = self._bar.add_task("echoed", total=total) if echo else None
        self._bar.start()

    def update(self, sent: int, echoed: int) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._sent, completed=sent)
            if self._echoed is not None:
                self._bar.update(self._echoed, completed=echoed)
            return
        done = (echoed if self.echo else sent) / max(1, self.total)
        while done >= self._next_line and self._next_line <= 1.0:
            print(f"  {self._next_line:4.0%} {fmt_bytes(self._next_line * self.total)} "
                  f"{'echoed' if self.echo else 'sent'} "
                  f"({time.monotonic() - self._t0:.1f} s)", file=sys.stderr, flush=True)
            self._next_line += 0.25

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

"""`mptcpsec connect`: a client over several paths; netcat-like, or a verified echo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from typing import Any

from ..errors import MptcpsecError
from ._common import (
    CliError,
    add_connection_args,
    address,
    build_config,
    fmt_bytes,
    run_async,
    size,
)

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
    p.add_argument("--timeout", type=float, default=15.0,
                   help="give up when nothing moved for this many seconds")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    add_connection_args(p, "client")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..aio.api import Path

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
        from ..lab.scenarios import Observer, _EventTap

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        events: list[dict[str, Any]] = []
        tap = _EventTap("client", t0, _Live(say), events)
        sink = open_sink(pcap=args.pcap, trace=args.trace)
        try:
            stream = await connect(paths, cfg, trace=tap, sink=sink)  # type: ignore[arg-type]
        except (OSError, asyncio.TimeoutError) as exc:
            if sink is not None:
                sink.close()
            raise CliError(f"cannot connect: {exc or 'timed out'} (is `mptcpsec serve` "
                           "running there, with the same --mode and --key-exchange?)") from None
        except MptcpsecError:
            if sink is not None:
                sink.close()
            raise
        try:
            if args.verify is None and args.send is None:
                return await _netcat(stream, stop)
            return await _measure(args, stream, events, t0, stop, say, Observer)
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
        elif kind == "connection_terminated" and ev.error:
            self.say(f"[{t:6.3f}s] connection failed: {ev.error}")


async def _netcat(stream: Any, stop: asyncio.Event) -> int:
    """stdin -> stream (DATA_FIN at EOF); stream -> stdout until the peer's DATA_FIN."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)

    def read_stdin() -> None:  # a daemon thread: never holds the process at exit
        fd = sys.stdin.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            fut = asyncio.run_coroutine_threadsafe(queue.put(data), loop)
            with contextlib.suppress(Exception):
                fut.result()
            if not data:
                return

    threading.Thread(target=read_stdin, daemon=True).start()

    async def upstream() -> None:
        while data := await queue.get():
            stream.write(data)
            await stream.drain()
        stream.close()

    async def downstream() -> None:
        out = sys.stdout.buffer
        while data := await stream.read(65536):
            out.write(data)
            out.flush()

    up = asyncio.ensure_future(upstream())
    down = asyncio.ensure_future(downstream())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([down, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (up, down, stopper):
            t.cancel()
        results = await asyncio.gather(up, down, return_exceptions=True)
    if stop.is_set():
        stream.abort("interrupted")
        return 130
    for r in results:
        if isinstance(r, MptcpsecError):
            raise r
    with contextlib.suppress(MptcpsecError, asyncio.TimeoutError):
        await stream.wait_closed(5)
    return 0


async def _measure(args: argparse.Namespace, stream: Any, events: list[dict[str, Any]],
                   t0: float, stop: asyncio.Event, say: Any, observer_cls: Any) -> int:
    from ..lab.scenarios import EchoRun, echo_transfer, make_result

    loop = asyncio.get_running_loop()
    nbytes = args.verify if args.verify is not None else args.send
    payload = os.urandom(nbytes)
    bar = _Progress(nbytes, args.quiet, echo=args.verify is not None)

    class Obs(observer_cls):  # type: ignore[misc,valid-type]
        def progress(self, sample: Any, stats: Any) -> None:
            bar.update(sample.sent, sample.echoed)

    t_start = loop.time()
    if args.verify is not None:
        job = asyncio.ensure_future(echo_transfer(stream, payload, stall_timeout=args.timeout,
                                                  observer=Obs(), t0=t0))
    else:
        job = asyncio.ensure_future(_send_only(stream, payload, args.timeout, Obs(), t0))
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
    run: EchoRun = job.result()
    bar.close()
    elapsed = loop.time() - t_start
    res = make_result(args.mode, args.key_exchange, run, subflows=stream.subflow_stats(),
                      events=events, duration=loop.time() - t0)
    if args.send is not None:  # nothing comes back: "intact" means all of it was accepted
        res.intact = res.outcome == "completed" and run.sent == nbytes
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, default=str))
    else:
        rate = run.sent * 8 / elapsed / 1e6 if elapsed > 0 else 0.0
        say(f"sent {run.sent:,} bytes in {elapsed:.2f} s ({rate:.0f} Mbit/s)")
        if args.verify is not None:
            say(f"  sha256 sent   {res.sha256_sent}")
            say(f"  sha256 echoed {res.sha256_echoed}")
        verdict = "INTACT" if res.intact else f"NOT INTACT ({res.outcome}: {res.error})"
        say(f"  {verdict}")
    return 0 if res.intact else 1


async def _send_only(stream: Any, payload: bytes, stall_timeout: float, obs: Any,
                     t0: float) -> Any:
    from ..lab.scenarios import EchoRun, Sample

    loop = asyncio.get_running_loop()
    run = EchoRun(payload)
    try:
        for i in range(0, len(payload), 65536):
            stream.write(payload[i:i + 65536])
            run.sent = min(len(payload), i + 65536)
            await asyncio.wait_for(stream.drain(), stall_timeout)
            obs.progress(Sample(loop.time() - t0, run.sent, 0, {}), [])
        stream.close()
        await asyncio.wait_for(stream.read(), stall_timeout * 4)  # until the server's FIN
        await stream.wait_closed(5)
    except asyncio.TimeoutError:
        run.outcome, run.error = "stalled", f"no progress for {stall_timeout:.0f} s"
    except MptcpsecError as exc:
        run.outcome, run.error = "aborted", str(exc)
    return run


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

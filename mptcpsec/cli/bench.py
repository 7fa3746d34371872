"""`mptcpsec bench ...`: measurements, each peer measured in the same run.

``crypto`` prints a table (or JSON). ``transfer``, ``failover``, ``handshake`` and ``scale``
print a table and write ``<out>/<bench>.json`` and ``<out>/<bench>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from ..crypto import Algorithm
from ..perf import crypto as cb


def _csv(kind: type, choices: tuple[str, ...] | None = None):
    def parse(text: str) -> tuple:
        items = tuple(kind(x.strip()) for x in text.split(",") if x.strip())
        if not items:
            raise argparse.ArgumentTypeError("give at least one value")
        if choices is not None:
            bad = [x for x in items if x not in choices]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown: {', '.join(map(str, bad))} (choose from {', '.join(choices)})")
        return items
    return parse


class _DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, lists written as they are typed
    (``64,1024,16384``, not a Python tuple); options without help still show it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if (action.option_strings and d not in (None, False, argparse.SUPPRESS)
                and "%(default)" not in text):
            shown = ",".join(map(str, d)) if isinstance(d, (tuple, list)) else str(d)
            text = f"{text} (default: {shown.replace('%', '%%')})".lstrip()
        return text


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="measure crypto and transfer throughput",
                           description="Benchmarks. Each prints a table (or JSON) with every "
                           "peer measured in the same run.")
    kinds = bench.add_subparsers(dest="bench", metavar="BENCH")
    crypto = kinds.add_parser(
        "crypto",
        help="per-record AEAD throughput: C core vs cryptography, pynacl, openssl speed",
        description="Seal/open throughput of MPTCPsec records for each algorithm and size. "
        "Implementations: core-batch (C core, many records per call), core (C core, one "
        "Python call per record), cryptography (one call per record), pynacl (ChaCha20-"
        "Poly1305 only) and openssl-speed (`openssl speed -aead -evp` of the same libcrypto, "
        "wall time). Each figure is the median of --repeats interleaved runs.",
        formatter_class=_DefaultsFormatter,
    )
    crypto.add_argument("--json", action="store_true",
                        help='print {"results": [{alg, op, size, impl, MBps, runs}, ...]}')
    crypto.add_argument("--sizes", type=_csv(int), default=cb.SIZES,
                        help="plaintext bytes per record, comma-separated")
    crypto.add_argument("--algs", type=_csv(str, tuple(a.value for a in Algorithm)),
                        default=tuple(a.value for a in Algorithm), help="algorithms")
    crypto.add_argument("--ops", type=_csv(str, cb.OPS), default=cb.OPS, help="seal and/or open")
    crypto.add_argument("--impls", type=_csv(str, cb.IMPLS), default=cb.IMPLS,
                        help="implementations to measure")
    crypto.add_argument("--repeats", type=int, default=5, help="interleaved runs per figure")
    crypto.add_argument("--seconds", type=float, default=0.2,
                        help="duration of one run of an in-process implementation")
    crypto.add_argument("--openssl-seconds", type=int, default=1,
                        help="duration of one `openssl speed` run")
    crypto.add_argument("--quiet", action="store_true", help="no progress on stderr")
    crypto.set_defaults(func=_run_crypto)
    _register_system_benches(kinds)
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)(i?)[bB]?\s*$")


def _size(text: str, allow_zero: bool = False) -> int:
    """Bytes: 1000, 64K, 256M, 1G (powers of 1000), 64KiB, 16MiB (powers of 1024)."""
    m = _SIZE.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4096, 64K, 256M, 1MiB)")
    value, unit, binary = m.groups()
    power = " kmg".index(unit.lower() or " ")
    n = int(float(value) * (1024 if binary else 1000) ** power)
    if n < 0 or (n == 0 and not allow_zero):
        raise argparse.ArgumentTypeError("must be positive")
    return n


def _size_or_zero(text: str) -> int:
    return _size(text, allow_zero=True)


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return v
    return parse


def _common(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--out", default=os.path.join("out", "bench"),
                   help=f"directory for {name}.json and {name}.png")
    p.add_argument("--json", action="store_true",
                   help="print the JSON document instead of the table")
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _register_system_benches(kinds: argparse._SubParsersAction) -> None:
    from ..perf import failover, handshake, scale, transfer

    fmt = _DefaultsFormatter
    t = kinds.add_parser(
        "transfer", formatter_class=fmt,
        help="one-way bulk throughput: mptcpsec vs TLS 1.3, TCP and kernel MPTCP",
        description="One-way bulk transfer over loopback. The sinks of every peer run in a "
        "separate process, the clients here. Rows: mptcpsec over 1, 2, 4, 8 subflows "
        "(AES-128-GCM, one row ChaCha20-Poly1305), TLS 1.3 over one asyncio connection "
        "(standard ssl, AES-128-GCM), plain asyncio TCP, the kernel's MPTCP socket when it "
        "has one; then mptcpsec over record sizes. Median of interleaved runs.")
    t.add_argument("--bytes", type=_size, default=transfer.TransferConfig.nbytes,
                   help="bytes per run (K/M/G: powers of 1000, KiB/MiB: of 1024)")
    t.add_argument("--subflows", type=_csv(int), default=transfer.SUBFLOWS,
                   help="mptcpsec subflow counts")
    t.add_argument("--record-sizes", type=_csv(int), default=transfer.RECORD_SIZES,
                   help="max_record values for the sweep (2 subflows, AES-128-GCM)")
    t.add_argument("--peers", type=_csv(str, transfer.PEER_CHOICES),
                   default=transfer.PEER_CHOICES, help="rows to measure")
    t.add_argument("--no-chacha", action="store_true", help="leave out the ChaCha20 row")
    t.add_argument("--repeats", type=_positive(int), default=3, help="interleaved runs per row")
    t.add_argument("--warmup-bytes", type=_size_or_zero,
                   default=transfer.TransferConfig.warmup_bytes,
                   help="untimed bytes per row before the runs")
    _common(t, "transfer")
    from ..lab.net.commands import add_bench_args

    add_bench_args(t)
    t.set_defaults(func=_run_transfer)

    f = kinds.add_parser(
        "failover", formatter_class=fmt,
        help="delivery stall when one path tampers with a record (emulated RTT)",
        description="Two emulated paths; one bit flipped in a DATA record on path 2; time "
        "from that record leaving the sender until the application has its bytes (re-sent "
        "on path 1), bytes lost or duplicated. The server runs in a separate process.")
    f.add_argument("--rtt-ms", type=_positive(float), default=failover.FailoverConfig.rtt_ms,
                   help="round trip of each path")
    f.add_argument("--bytes", type=_size, default=failover.FailoverConfig.nbytes,
                   help="bytes sent per run")
    f.add_argument("--tamper-after", type=_size, default=failover.FailoverConfig.tamper_after,
                   help="bytes on path 2 before the bit flip")
    f.add_argument("--chunk", type=_size, default=failover.FailoverConfig.chunk,
                   help="bytes per paced write")
    f.add_argument("--interval-ms", type=_positive(float),
                   default=failover.FailoverConfig.interval_ms, help="pause between writes")
    f.add_argument("--repeats", type=_positive(int), default=failover.FailoverConfig.repeats,
                   help="runs (a fresh connection each)")
    f.add_argument("--key-exchange", choices=("split-path", "tls", "psk"),
                   default=failover.FailoverConfig.key_exchange,
                   help="key exchange of each connection")
    _common(f, "failover")
    add_bench_args(f, failover=True)
    f.set_defaults(func=_run_failover)

    h = kinds.add_parser(
        "handshake", formatter_class=fmt,
        help="time to the first application byte per key exchange (emulated RTTs)",
        description="tls, split-path and psk over two emulated paths (both orders, and "
        "without delay for the computing time); time until the client is ready and until "
        "the server application has the first byte, in round trips of the slower path.")
    h.add_argument("--fast-rtt-ms", type=float, default=handshake.HandshakeConfig.fast_rtt_ms,
                   help="round trip of the fast emulated path, ms")
    h.add_argument("--slow-rtt-ms", type=_positive(float),
                   default=handshake.HandshakeConfig.slow_rtt_ms,
                   help="round trip of the slow emulated path, ms (results are in its units)")
    h.add_argument("--key-exchanges", type=_csv(str, handshake.KEY_EXCHANGES),
                   default=handshake.KEY_EXCHANGES,
                   help="key exchanges to time, comma-separated")
    h.add_argument("--repeats", type=_positive(int), default=handshake.HandshakeConfig.repeats,
                   help="connections per key exchange and path order (median reported)")
    _common(h, "handshake")
    h.set_defaults(func=_run_handshake)

    c = kinds.add_parser(
        "scale", formatter_class=fmt,
        help="many concurrent 2-subflow connections doing echo: memory, throughput, CPU",
        description="Open N connections (2 subflows each) to an echo server in a separate "
        "process; memory per idle connection (RSS before and after), then all echo at once: "
        "throughput, CPU seconds per GB, errors; memory after the traffic; clean close.")
    c.add_argument("--connections", type=_positive(int),
                   default=scale.ScaleConfig.connections,
                   help="concurrent connections, 2 subflows each")
    c.add_argument("--echo-bytes", type=_size, default=scale.ScaleConfig.echo_bytes,
                   help="bytes each connection echoes")
    c.add_argument("--chunk", type=_size, default=scale.ScaleConfig.chunk, help="write size")
    c.add_argument("--key-exchange", choices=("split-path", "tls", "psk"),
                   default=scale.ScaleConfig.key_exchange,
                   help="key exchange of each connection")
    _common(c, "scale")
    c.set_defaults(func=_run_scale)

    from ..perf import tunnel

    tn = kinds.add_parser(
        "tunnel", formatter_class=fmt,
        help="the converter (curl via tunnel and gateway) against direct TCP",
        description="Over two emulated paths: curl's time to first byte direct and through "
        "the tunnel (no pool, warm pool, early SOCKS reply, forward), bulk download against "
        "`mptcpsec connect --send` over the same paths, and parallel connections per second.")
    tn.add_argument("--fast-rtt-ms", type=float, default=tunnel.TunnelBenchConfig.fast_rtt_ms)
    tn.add_argument("--slow-rtt-ms", type=float, default=tunnel.TunnelBenchConfig.slow_rtt_ms)
    tn.add_argument("--repeats", type=_positive(int), default=tunnel.TunnelBenchConfig.repeats)
    tn.add_argument("--bytes", type=_size, default=tunnel.TunnelBenchConfig.bulk_bytes,
                    help="bulk download size")
    tn.add_argument("--parallel", type=_positive(int),
                    default=tunnel.TunnelBenchConfig.parallel)
    tn.add_argument("--batches", type=_positive(int), default=tunnel.TunnelBenchConfig.batches)
    tn.add_argument("--pool", type=_positive(int), default=tunnel.TunnelBenchConfig.pool,
                    help="pool size of the pooled tunnels")
    _common(tn, "tunnel")
    tn.set_defaults(func=_run_tunnel)


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if args.quiet:
        return None
    tty = sys.stderr.isatty()

    def show(msg: str) -> None:
        if tty:
            print(f"\r\033[K{msg}", end="", file=sys.stderr, flush=True)
        else:
            print(msg, file=sys.stderr, flush=True)
    return show


def _finish(args: argparse.Namespace, name: str, rep: Any, table: str,
            plot: Callable[[Any, str], str], started: float, load0: list[float]) -> int:
    from ..perf import report

    if not args.quiet and sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)
    doc = rep.as_dict()
    doc["seconds"] = round(time.monotonic() - started, 1)
    doc["loadavg_before"] = load0
    doc["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    path = report.write_json(args.out, name, doc)
    png = None if args.no_plot else plot(rep, args.out)
    if args.json:
        print(json.dumps({"bench": name, **doc}, indent=1, default=str))
    else:
        print(table)
        print(f"\nwrote {path}" + (f" and {png}" if png else ""))
    return 0


def _netns(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from ..lab.net.commands import NetCliError

    try:
        return run(args)
    except NetCliError as exc:
        raise SystemExit(f"mptcpsec bench: {exc}") from None


def _run_transfer(args: argparse.Namespace) -> int:
    from ..lab.net import commands as net
    from ..perf import transfer

    if args.net == "netns":
        args.bytes_default = transfer.TransferConfig.nbytes
        return _netns(net.run_transfer, args)
    if any(s < 1 or s > 8 for s in args.subflows):
        raise SystemExit("mptcpsec bench transfer: subflows must be 1..8")
    if any(s < 1 or s > 65519 for s in args.record_sizes):
        raise SystemExit("mptcpsec bench transfer: record sizes must be 1..65519 bytes")
    cfg = transfer.TransferConfig(nbytes=args.bytes, subflows=tuple(args.subflows),
                                  record_sizes=tuple(args.record_sizes), peers=tuple(args.peers),
                                  chacha=not args.no_chacha, repeats=args.repeats,
                                  warmup_bytes=args.warmup_bytes)
    started, load0 = time.monotonic(), [round(x, 2) for x in os.getloadavg()]
    rep = transfer.run_transfer(cfg, _progress(args))
    return _finish(args, "transfer", rep, transfer.format_report(rep), transfer.plot, started,
                   load0)


def _run_failover(args: argparse.Namespace) -> int:
    from ..lab.net import commands as net
    from ..perf import failover

    if args.net == "netns":
        return _netns(net.run_failover, args)
    cfg = failover.FailoverConfig(rtt_ms=args.rtt_ms, nbytes=args.bytes,
                                  tamper_after=args.tamper_after, chunk=args.chunk,
                                  interval_ms=args.interval_ms, repeats=args.repeats,
                                  key_exchange=args.key_exchange)
    started, load0 = time.monotonic(), [round(x, 2) for x in os.getloadavg()]
    rep = failover.run_failover(cfg, _progress(args))
    return _finish(args, "failover", rep, failover.format_report(rep), failover.plot, started,
                   load0)


def _run_handshake(args: argparse.Namespace) -> int:
    from ..perf import handshake

    if args.fast_rtt_ms < 0:
        raise SystemExit("mptcpsec bench handshake: --fast-rtt-ms must be >= 0")
    cfg = handshake.HandshakeConfig(fast_rtt_ms=args.fast_rtt_ms, slow_rtt_ms=args.slow_rtt_ms,
                                    key_exchanges=tuple(args.key_exchanges),
                                    repeats=args.repeats)
    started, load0 = time.monotonic(), [round(x, 2) for x in os.getloadavg()]
    rep = handshake.run_handshake(cfg, _progress(args))
    return _finish(args, "handshake", rep, handshake.format_report(rep), handshake.plot,
                   started, load0)


def _run_scale(args: argparse.Namespace) -> int:
    from ..perf import scale

    cfg = scale.ScaleConfig(connections=args.connections, echo_bytes=args.echo_bytes,
                            chunk=args.chunk, key_exchange=args.key_exchange)
    started, load0 = time.monotonic(), [round(x, 2) for x in os.getloadavg()]
    rep = scale.run_scale(cfg, _progress(args))
    return _finish(args, "scale", rep, scale.format_report(rep), scale.plot, started, load0)


def _run_tunnel(args: argparse.Namespace) -> int:
    from ..perf import tunnel

    cfg = tunnel.TunnelBenchConfig(fast_rtt_ms=args.fast_rtt_ms, slow_rtt_ms=args.slow_rtt_ms,
                                   repeats=args.repeats, bulk_bytes=args.bytes,
                                   parallel=args.parallel, batches=args.batches, pool=args.pool)
    started, load0 = time.monotonic(), [round(x, 2) for x in os.getloadavg()]
    rep = tunnel.run_tunnel(cfg, _progress(args))
    return _finish(args, "tunnel", rep, tunnel.format_report(rep), tunnel.plot, started, load0)


def _run_crypto(args: argparse.Namespace) -> int:
    if any(s <= 0 or s > 65519 for s in args.sizes):
        raise SystemExit("mptcpsec bench crypto: sizes must be 1..65519 bytes")
    if args.repeats < 1 or args.seconds <= 0 or args.openssl_seconds < 1:
        raise SystemExit("mptcpsec bench crypto: --repeats, --seconds, --openssl-seconds "
                         "must be positive")
    cfg = cb.CryptoBenchConfig(
        sizes=tuple(args.sizes), algs=tuple(Algorithm.parse(a) for a in args.algs),
        ops=tuple(args.ops), impls=tuple(args.impls), repeats=args.repeats,
        seconds=args.seconds, openssl_seconds=args.openssl_seconds)
    if "openssl-speed" in cfg.impls and not cb.openssl_available():
        print("note: no `openssl` program on PATH; openssl-speed rows are left out",
              file=sys.stderr)

    def progress(msg: str) -> None:
        if not args.quiet and sys.stderr.isatty():
            print(f"\r\033[K{msg}", end="", file=sys.stderr, flush=True)
        elif not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    rows = cb.run_crypto_bench(cfg, progress)
    if not args.quiet and sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)
    versions = cb.libcrypto_versions()
    if args.json:
        print(json.dumps({"results": [r.as_dict() for r in rows], "openssl": versions},
                         indent=1))
        return 0
    print(cb.format_table(rows))
    print()
    print(cb.version_note(versions))
    print()
    for alg in ("aes-128-gcm",):
        for size in cfg.sizes:
            for peer in ("openssl-speed", "cryptography"):
                r = cb.ratio(rows, alg, "seal", size, "core-batch", peer)
                if r is not None:
                    print(f"{alg} seal {size:>5} B: core-batch / {peer} = {r:.2f}x")
    return 0

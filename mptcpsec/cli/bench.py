"""`mptcpsec bench ...`: throughput measurements, each peer measured in the same run."""

from __future__ import annotations

import argparse
import json
import sys

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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])


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
    if args.json:
        print(json.dumps({"results": [r.as_dict() for r in rows]}, indent=1))
        return 0
    print(cb.format_table(rows))
    print()
    for alg in ("aes-128-gcm",):
        for size in cfg.sizes:
            for peer in ("openssl-speed", "cryptography"):
                r = cb.ratio(rows, alg, "seal", size, "core-batch", peer)
                if r is not None:
                    print(f"{alg} seal {size:>5} B: core-batch / {peer} = {r:.2f}x")
    return 0

"""Helpers shared by the `demo`, `proxy`, `serve` and `connect` subcommands: argument
types (addresses, sizes), attack options, key-exchange options -> ConnectionConfig, and an
asyncio runner with a clean Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ..crypto.aead import Algorithm
from ..errors import MptcpsecError
from ..lab.attacks import ATTACKS, OPTION_NAMES, AttackSpec
from ..protocol.config import KEY_EXCHANGES, MODES, ConnectionConfig

T = TypeVar("T")

SCHEDULERS = ("lowest-rtt", "round-robin", "redundant")


class CliError(MptcpsecError):
    """A command-line problem; the message says what to do."""


# ------------------------------------------------------------------ argument types

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?)?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def size(text: str) -> int:
    """Bytes: 4000000, 4MB, 4M, 500k, 1MiB (k/M/G are powers of ten, Ki/Mi/Gi of two)."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 20MB, 500k, 1MiB)")
    value = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    return int(value)


def address(text: str, default_host: str | None = None) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT, or just PORT when a default host applies."""
    text = text.strip()
    host: str | None
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    elif text.isdigit():
        host, port = default_host, text
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        hint = " or PORT" if default_host else ""
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT{hint}")
    return host, int(port)


def positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


# ------------------------------------------------------------------ attacks

def add_attack_args(p: argparse.ArgumentParser, default: str | None = None,
                    default_after: int = 0) -> None:
    g = p.add_argument_group("attack (record-aware, one strike)")
    g.add_argument("--attack", choices=(*ATTACKS, "none"), default=default,
                   help="what the attacker does to one record (default: %(default)s). "
                   "bitflip-data: flip a bit of a DATA body; bitflip-option: change one "
                   "MPTCP option field (--option, --field); replay/drop/reorder/inject/"
                   "truncate: a record repeated, deleted, swapped, forged, cut; rst: reset "
                   "the subflow")
    when = g.add_mutually_exclusive_group()
    when.add_argument("--after", "--attack-after", dest="after", type=size,
                      default=default_after, metavar="BYTES",
                      help="strike at the first eligible record after this much of the "
                      "record stream (default: %(default)s)")
    when.add_argument("--after-records", type=int, metavar="N",
                      help="strike at the first eligible record from record N on")
    g.add_argument("--direction", choices=("c2s", "s2c"), default="c2s",
                   help="c2s: client to server; s2c: the other way (default: %(default)s)")
    g.add_argument("--option", choices=tuple(OPTION_NAMES), default="dss",
                   help="bitflip-option: which MPTCP option (default: %(default)s)")
    g.add_argument("--field", default="dsn",
                   help="bitflip-option: which field, e.g. dsn, data_ack, data_len for dss; "
                   "edge for mps-window (default: %(default)s)")
    g.add_argument("--bit", type=int, metavar="N",
                   help="bitflip-data: the bit to flip, counted from the body's end")


def attack_from_args(args: argparse.Namespace) -> AttackSpec | None:
    if args.attack in (None, "none"):
        return None
    try:
        return AttackSpec(args.attack, after_bytes=args.after or 0,
                          after_records=args.after_records, direction=args.direction,
                          option=args.option, field=args.field, bit=args.bit)
    except ValueError as exc:
        raise CliError(str(exc)) from None


# ------------------------------------------------------------------ connection options

def add_connection_args(p: argparse.ArgumentParser, role: str) -> None:
    """Mode, key exchange and its credentials, scheduler, captures."""
    g = p.add_argument_group("security")
    g.add_argument("--mode", choices=MODES, default="mptcpsec",
                   help="mptcpsec (default), or a comparison baseline: plain (RFC 8684, "
                   "nothing protected), tls-over-plain (one TLS session over plain)")
    g.add_argument("--key-exchange", "-k", choices=KEY_EXCHANGES, default="split-path",
                   help="split-path (default: shares and nonces over two paths, needs two), "
                   "tls (TLS 1.3 certificates), psk (pre-shared key)")
    g.add_argument("--algorithm", choices=[a.value for a in Algorithm],
                   default=Algorithm.AES_128_GCM.value, help="record AEAD")
    g.add_argument("--psk-file", metavar="FILE",
                   help="psk: the key (hex, or base64:...); default: $MPTCPSEC_PSK")
    g.add_argument("--psk-identity", default="", help="psk: the key's name")
    if role == "server":
        g.add_argument("--cert", metavar="PEM", help="tls: server certificate (with --key); "
                       "default: a fresh self-signed one whose fingerprint is printed")
        g.add_argument("--key", metavar="PEM", help="tls: the certificate's private key")
        g.add_argument("--client-cert", action="store_true",
                       help="tls: require a client certificate (verified with --cafile or "
                       "--pin)")
        g.add_argument("--cafile", metavar="PEM", help="tls: CA for client certificates")
        g.add_argument("--pin", metavar="SHA256", help="tls: the client certificate's "
                       "SHA-256 fingerprint")
        g.add_argument("--identity", metavar="FILE",
                       help="split-path: sign with this Ed25519 identity (hex seed; created "
                       "0600 if missing), so clients can trust it on first use")
    else:
        g.add_argument("--cafile", metavar="PEM", help="tls: CA that signed the server")
        g.add_argument("--pin", metavar="SHA256",
                       help="tls: the server certificate's SHA-256 fingerprint (as `serve` "
                       "prints it)")
        g.add_argument("--server-name", help="tls: the name to verify (default: the first "
                       "--connect host); split-path: the known_hosts name (default HOST:PORT)")
        g.add_argument("--cert", metavar="PEM", help="tls: client certificate (with --key)")
        g.add_argument("--key", metavar="PEM", help="tls: the client certificate's key")
        g.add_argument("--known-hosts", metavar="FILE",
                       help="split-path: remember the server's identity on first use and "
                       "refuse a different one later")
        g.add_argument("--require-identity", action="store_true",
                       help="split-path: refuse servers without an identity key")
    g.add_argument("--keylog", metavar="FILE", help="append connection secrets (key log) "
                   "to FILE, for `mptcpsec pcap --keylog` (default: $SSLKEYLOGFILE if set)")
    t = p.add_argument_group("transport")
    t.add_argument("--scheduler", choices=SCHEDULERS, default="lowest-rtt",
                   help="which subflow carries the next records (default: %(default)s)")
    t.add_argument("--pcap", metavar="FILE", help="write every record to a pcap (Wireshark "
                   "decodes the MPTCP options)")
    t.add_argument("--trace", metavar="FILE", help="write every record as JSON lines")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path!r}: {exc.strerror}") from None


def load_identity(path: str) -> bytes:
    """An Ed25519 seed in hex; a missing file is created (0600) with a fresh seed."""
    from ..crypto.splitpath import generate_identity_seed

    p = Path(path)
    if not p.exists():
        seed = generate_identity_seed()
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(seed.hex() + "\n")
        return seed
    try:
        seed = bytes.fromhex(_read(path, "identity file").decode("ascii").strip())
    except (ValueError, UnicodeDecodeError):
        raise CliError(f"identity file {path!r} is not a hex seed; delete it to make a new "
                       "one") from None
    if len(seed) != 32:
        raise CliError(f"identity file {path!r} must hold 32 bytes (64 hex digits)")
    return seed


def build_config(args: argparse.Namespace, role: str,
                 first_remote: tuple[str, int] | None = None) -> tuple[ConnectionConfig, dict]:
    """The ConnectionConfig for these arguments, and facts worth printing (fingerprint...)."""
    from ..crypto.keyschedule import Role

    r = Role.SERVER if role == "server" else Role.CLIENT
    info: dict[str, Any] = {}
    cfg = ConnectionConfig(mode=args.mode, key_exchange=args.key_exchange,
                           algorithm=Algorithm(args.algorithm), scheduler=args.scheduler)
    kx = args.key_exchange
    key_log = _key_log(args)
    if kx == "psk" and args.mode == "mptcpsec":
        from ..aio.stores import load_psk
        from ..crypto.psk import PskConfig

        secret = load_psk(args.psk_file)
        cfg.psk = PskConfig(r, secret, args.psk_identity.encode(), key_log)
    if (kx == "tls" and args.mode == "mptcpsec") or args.mode == "tls-over-plain":
        cfg.tls = _tls_config(args, r, first_remote, info, key_log)
    if kx == "split-path" and args.mode == "mptcpsec":
        from ..crypto.splitpath import SplitPathConfig, identity_public_key

        if role == "server":
            seed = load_identity(args.identity) if args.identity else None
            if seed is not None:
                info["identity"] = identity_public_key(seed).hex()
            cfg.split_path = SplitPathConfig(r, identity_seed=seed, keylog_file=key_log)
        else:
            name = args.server_name or (f"{first_remote[0]}:{first_remote[1]}"
                                        if first_remote else None)
            from ..aio.stores import FileKnownHosts

            known = FileKnownHosts(args.known_hosts) if args.known_hosts else None
            cfg.split_path = SplitPathConfig(r, known_hosts=known, server_name=name,
                                             require_identity=args.require_identity,
                                             keylog_file=key_log)
    try:
        cfg.validate()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return cfg, info


def _key_log(args: argparse.Namespace) -> Any:
    """The key log to write: --keylog FILE, else $SSLKEYLOGFILE, else none."""
    from ..aio.keylog import open_key_log
    from ..crypto.keylog import KeyLogError

    try:
        return open_key_log(getattr(args, "keylog", None))
    except KeyLogError as exc:
        raise CliError(str(exc)) from None


def _tls_config(args: argparse.Namespace, role: Any, first_remote: tuple[str, int] | None,
                info: dict[str, Any], key_log: Any = None) -> Any:
    from ..crypto.tls_keys import TlsConfig

    if bool(args.cert) != bool(args.key):
        raise CliError("give --cert and --key together")
    if args.pin:
        from ..crypto.certs import parse_fingerprint

        try:
            parse_fingerprint(args.pin)
        except ValueError as exc:
            raise CliError(f"--pin: {exc} (64 hex digits, colons allowed)") from None
    cert = _read(args.cert, "certificate") if args.cert else None
    key = _read(args.key, "private key") if args.key else None
    ca = _read(args.cafile, "CA file") if args.cafile else None
    if role.value == "server":
        if cert is None:
            from ..crypto.certs import generate_self_signed

            bundle = generate_self_signed("localhost")
            cert, key = bundle.cert_pem, bundle.key_pem
            info["self_signed"] = True
        from ..crypto.certs import fingerprint_sha256

        info["fingerprint"] = fingerprint_sha256(cert)
        if args.client_cert and not (args.cafile or args.pin):
            raise CliError("--client-cert needs --cafile or --pin to verify clients with")
        return TlsConfig(role, cert_pem=cert, key_pem=key, ca_pem=ca,
                         pin_sha256=args.pin, require_client_cert=args.client_cert,
                         keylog_file=key_log)
    if not (args.cafile or args.pin):
        raise CliError("tls: give --pin SHA256 (the fingerprint `mptcpsec serve` prints) or "
                       "--cafile PEM to verify the server")
    name = args.server_name or (first_remote[0] if first_remote else None)
    return TlsConfig(role, cert_pem=cert, key_pem=key, ca_pem=ca, pin_sha256=args.pin,
                     server_name=name, keylog_file=key_log)


# ------------------------------------------------------------------ running

def run_async(main: Callable[[asyncio.Event], Awaitable[T]]) -> T | int:
    """Run ``main(stop)``; Ctrl-C or SIGTERM sets ``stop`` (a second Ctrl-C aborts)."""

    async def runner() -> T | int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.current_task()
        hits = {"n": 0}

        def on_signal() -> None:
            hits["n"] += 1
            if hits["n"] == 1:
                stop.set()
            elif task is not None:
                task.cancel()

        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
        try:
            return await main(stop)
        except asyncio.CancelledError:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(runner())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"

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

from cryptography.exceptions import UnsupportedAlgorithm as UnsupportedAlgorithmError_

from ..crypto.aead import Algorithm
from ..errors import CliError as CliError
from ..lab.attacks import ATTACKS, OPTION_NAMES, AttackSpec
from ..protocol.config import KEY_EXCHANGES, MODES, ConnectionConfig

T = TypeVar("T")

SCHEDULERS = ("lowest-rtt", "round-robin", "redundant")


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
    """HOST:PORT, [IPv6]:PORT, or just PORT when a default host applies; port 1..65535."""
    text = text.strip()
    host: str | None
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise argparse.ArgumentTypeError(f"{text!r}: expected [IPv6]:PORT")
    elif text.isdigit():
        host, port = default_host, text
    else:
        host, _, port = text.rpartition(":")
        if host.count(":") and not _is_ipv6(host):
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected HOST:PORT (an IPv6 address goes in brackets: [::1]:7000)")
    hint = " or PORT" if default_host else ""
    if not host or not port:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT{hint}")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: the port {port!r} is not a number")
    if not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: port {int(port)} out of range (1..65535)")
    return host, int(port)


def listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT to listen on; port 0 asks the kernel for a free port (printed)."""
    text = text.strip()
    if text.endswith(":0"):
        host, _ = address(text[:-2] + ":1")
        return host, 0
    return address(text)


def _is_ipv6(text: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def output_file(text: str) -> str:
    """A file the command will write: checked before anything runs, so a typo in a
    directory name fails in a second rather than after the whole run."""
    check_writable(text)
    return text


#: Formats `--plot` writes (matplotlib's Agg, PDF and SVG backends).
PLOT_FORMATS = (".png", ".svg", ".pdf")


def plot_file(text: str) -> str:
    if os.path.splitext(text)[1].lower() not in PLOT_FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r}: a plot is written as "
                                         f"{', '.join(PLOT_FORMATS)}; name the file so")
    return output_file(text)


def check_writable(path: str, what: str = "output file") -> None:
    """Open `path` for writing once (and remove it again if it was not there), so every
    reason it cannot be written (no directory, permissions, a read-only or virtual file
    system) shows up now, with the file's name."""
    p = Path(path)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {what} {path!r}: it is a directory")
    existed = p.exists()
    try:
        with open(p, "ab" if existed else "xb"):
            pass
        if not existed:
            p.unlink()
    except OSError as exc:
        parent = p.parent if str(p.parent) else Path(".")
        reason = (f"directory {str(parent)!r} does not exist" if not parent.is_dir()
                  else exc.strerror or str(exc))
        raise argparse.ArgumentTypeError(f"cannot write {what} {path!r}: {reason}") from None


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
    g.add_argument("--key-exchange", "-k", choices=KEY_EXCHANGES, default=None,
                   help="split-path (shares and nonces over two paths, needs two), tls "
                   "(TLS 1.3 certificates), psk (pre-shared key). Default: the key exchange "
                   "whose options are given (--pin/--cafile/--cert/--key/--client-cert: tls; "
                   "--psk-file/--psk-identity: psk), else split-path. An option of another "
                   "key exchange than -k is an error, never ignored")
    g.add_argument("--algorithm", choices=[a.value for a in Algorithm],
                   default=Algorithm.AES_128_GCM.value, help="record AEAD")
    g.add_argument("--psk-file", metavar="FILE",
                   help="psk: the key (hex, or base64:...); default: $MPTCPSEC_PSK")
    g.add_argument("--psk-identity", help="psk: the key's name")
    if role == "server":
        g.add_argument("--cert", metavar="PEM", help="tls: server certificate (with --key); "
                       "default: a fresh self-signed one whose fingerprint is printed")
        g.add_argument("--key", metavar="PEM", help="tls: the certificate's private key")
        g.add_argument("--client-cert", action="store_true",
                       help="tls: require a client certificate (verified with --cafile or "
                       "--pin, which imply this option)")
        g.add_argument("--cafile", metavar="PEM", help="tls: CA for client certificates "
                       "(requires one)")
        g.add_argument("--pin", metavar="SHA256", help="tls: the client certificate's "
                       "SHA-256 fingerprint (requires one)")
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
    g.add_argument("--keylog", metavar="FILE", type=output_file,
                   help="append connection secrets (key log) to FILE, for `mptcpsec pcap "
                   "--keylog` (default: $SSLKEYLOGFILE if set)")
    t = p.add_argument_group("transport")
    t.add_argument("--scheduler", choices=SCHEDULERS, default="lowest-rtt",
                   help="which subflow carries the next records (default: %(default)s)")
    t.add_argument("--pcap", metavar="FILE", type=output_file,
                   help="write every record to a pcap (Wireshark decodes the MPTCP options; "
                   "`mptcpsec pcap --dissector-path` for the records); IPv4 and IPv6 paths")
    t.add_argument("--trace", metavar="FILE", type=output_file,
                   help="write every record as JSON lines")


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


#: Which key exchange each credential option belongs to (dest name -> key exchange).
#: Checked so that no credential is silently ignored.
CREDENTIALS = {
    "cert": "tls", "key": "tls", "cafile": "tls", "pin": "tls", "client_cert": "tls",
    "psk_file": "psk", "psk_identity": "psk",
    "identity": "split-path", "known_hosts": "split-path", "require_identity": "split-path",
    # gateway and tunnel: how clients are known
    "psk_clients": "psk", "allowed_clients": "split-path", "client_identity": "split-path",
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def resolve_key_exchange(args: argparse.Namespace) -> str:
    """Check the credential options against the key exchange, and pick it when -k was left
    out: credentials of exactly one key exchange select it; credentials of another key
    exchange than an explicit -k (or than the mode uses) are an error naming the right -k."""
    given = {dest: kx for dest, kx in CREDENTIALS.items()
             if getattr(args, dest, None) not in (None, False, "")}
    wanted = sorted(set(given.values()))
    kx = getattr(args, "key_exchange", None)
    mode = getattr(args, "mode", "mptcpsec")
    if mode == "plain" and given:
        raise CliError(f"--mode plain uses no credentials: drop "
                       f"{', '.join(_flag(d) for d in given)}")
    if mode == "tls-over-plain":
        other = [d for d, k in given.items() if k != "tls"]
        if other:
            raise CliError(f"--mode tls-over-plain uses tls credentials only: "
                           f"{', '.join(_flag(d) for d in other)} belong to -k "
                           f"{given[other[0]]}")
        args.key_exchange = kx or "split-path"
        return str(args.key_exchange)
    if kx is None:
        if len(wanted) > 1:
            raise CliError("credentials of several key exchanges given: "
                           + "; ".join(f"{_flag(d)} is for -k {k}" for d, k in given.items()))
        args.key_exchange = wanted[0] if wanted else "split-path"
        return str(args.key_exchange)
    wrong = {d: k for d, k in given.items() if k != kx}
    if wrong:
        d, k = next(iter(wrong.items()))
        names = ", ".join(_flag(x) for x in wrong)
        raise CliError(f"{names} {'is' if len(wrong) == 1 else 'are'} for -k {k}, not -k {kx}: "
                       f"use -k {k}, or drop {_flag(d) if len(wrong) == 1 else 'them'}")
    return str(kx)


def build_config(args: argparse.Namespace, role: str,
                 first_remote: tuple[str, int] | None = None
                 ) -> tuple[ConnectionConfig, dict[str, Any]]:
    """The ConnectionConfig for these arguments, and facts worth printing (fingerprint...).

    Every credential file is read and parsed here, before any socket exists, so that a bad
    one is an error naming the file rather than a failed handshake later."""
    from ..crypto.keyschedule import Role

    resolve_key_exchange(args)
    r = Role.SERVER if role == "server" else Role.CLIENT
    info: dict[str, Any] = {}
    cfg = ConnectionConfig(mode=args.mode, key_exchange=args.key_exchange,
                           algorithm=Algorithm(args.algorithm), scheduler=args.scheduler)
    kx = args.key_exchange
    key_log = key_log_from_args(args)
    if kx == "psk" and args.mode == "mptcpsec":
        from ..aio.stores import load_psk
        from ..crypto.psk import PskConfig

        secret = load_psk(args.psk_file)
        cfg.psk = PskConfig(r, secret, (args.psk_identity or "").encode(), key_log)
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


def key_log_from_args(args: argparse.Namespace) -> Any:
    """The key log to write: --keylog FILE, else $SSLKEYLOGFILE, else none."""
    from ..aio.keylog import open_key_log
    from ..crypto.keylog import KeyLogError

    try:
        return open_key_log(getattr(args, "keylog", None))
    except KeyLogError as exc:
        raise CliError(str(exc)) from None


def load_certificate(path: str, what: str = "certificate") -> bytes:
    """The PEM bytes of `path` after checking it holds an X.509 certificate."""
    from cryptography import x509

    pem = _read(path, what)
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise CliError(f"{what} {path!r} is not a PEM certificate (expected "
                       "'-----BEGIN CERTIFICATE-----')") from None
    return pem


def load_private_key(path: str, cert_pem: bytes | None, cert_path: str | None) -> bytes:
    """The PEM bytes of `path` after checking it is an unencrypted private key that
    belongs to the certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    pem = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise CliError(f"private key {path!r} is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithmError_):
        raise CliError(f"private key {path!r} is not a PEM private key (expected "
                       "'-----BEGIN PRIVATE KEY-----')") from None
    if cert_pem is not None:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
        fmt = serialization.PublicFormat.SubjectPublicKeyInfo
        enc = serialization.Encoding.DER
        if cert.public_key().public_bytes(enc, fmt) != key.public_key().public_bytes(enc, fmt):
            raise CliError(f"private key {path!r} does not belong to certificate "
                           f"{cert_path!r}")
    return pem


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
    cert = load_certificate(args.cert) if args.cert else None
    key = load_private_key(args.key, cert, args.cert) if args.key else None
    ca = load_certificate(args.cafile, "CA file") if args.cafile else None
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
                         pin_sha256=args.pin,
                         require_client_cert=bool(args.client_cert or args.cafile or args.pin),
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

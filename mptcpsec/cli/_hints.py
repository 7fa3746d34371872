"""Turn a failed connection attempt into a message that says what to check.

The handshake does not negotiate mode, key exchange or AEAD yet, so a mismatch shows up
as whatever the first foreign record broke; this module names the local settings and the
mismatch that such an error most likely means.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import socket
from typing import Any

#: (substring of the engine's error, what it most likely means). First match wins.
_MISMATCH = (
    ("wrong version number", "the server does not speak TLS here: it runs another --mode or "
     "-k"),
    ("unexpected type 0x3", "the server does not run -k psk"),
    ("no mp_capable key", "the server does not run --mode plain"),
    ("bad-tag", "the server derives other keys: another --algorithm, another pre-shared key, "
     "or another -k"),
    ("authentication", "the server derives other keys: another --algorithm, another "
     "pre-shared key, or another -k"),
    ("without an authenticated close", "the server closed the connection during the key "
     "exchange: it refused it (another --mode, -k or --algorithm, or credentials it does not "
     "accept; its log says which)"),
    ("unexpected-record", "the server sent a record the key exchange did not expect: "
     "another --mode or -k"),
)


def local_settings(args: argparse.Namespace) -> str:
    kx = args.key_exchange if args.mode == "mptcpsec" else "none"
    return f"--mode {args.mode}, -k {kx}, --algorithm {args.algorithm}"


def client_cert_hint(error: str, args: argparse.Namespace) -> str | None:
    """TLS 1.3 finishes on the client before the server has checked the client's
    certificate; the server's refusal then arrives as a HANDSHAKE record on an established
    subflow (an alert), which the engine reports as an unexpected record."""
    low = error.lower()
    if args.key_exchange != "tls" or not ("certificate required" in low
                                          or "unexpected-record" in low
                                          or "tlsv13 alert" in low):
        return None
    if not getattr(args, "cert", None):
        return ("the server requires a client certificate: give --cert PEM --key PEM (one "
                "that its --cafile or --pin accepts)")
    return (f"the server refused the client certificate {args.cert!r} (its --cafile or "
            "--pin does not accept it)")


def handshake_hint(error: str, args: argparse.Namespace) -> str:
    """Why a handshake that reached the server most likely failed."""
    low = error.lower()
    cert = client_cert_hint(error, args)
    if cert is not None:
        return cert
    for needle, meaning in _MISMATCH:
        if needle in low:
            return f"{meaning}; local settings: {local_settings(args)}"
    return f"check that the server uses the same settings: {local_settings(args)}"


def connect_failure(exc: BaseException, args: argparse.Namespace, paths: list[Any],
                    events: list[dict[str, Any]]) -> str:
    """One message for a failed `connect`: address problems, timeouts, mismatches."""
    first = paths[0].remote
    where = f"{first[0]}:{first[1]}"
    if isinstance(exc, socket.gaierror):
        hosts = ", ".join(dict.fromkeys(p.remote[0] for p in paths))
        return f"cannot resolve {hosts}: {exc.strerror or exc}"
    if isinstance(exc, asyncio.TimeoutError):  # before OSError: TimeoutError is one
        up = any(e.get("event") == "subflow_established" for e in events)
        if up:
            return (f"the key exchange did not complete within --timeout {args.timeout:g} s: "
                    f"the server does not answer as mptcpsec with {local_settings(args)}")
        return (f"no mptcpsec answer from {where} within --timeout {args.timeout:g} s: is "
                "`mptcpsec serve` running there, with the same --mode and -k?")
    if isinstance(exc, OSError):
        code = exc.errno
        if code in (errno.EADDRNOTAVAIL, errno.EADDRINUSE) and args.bind:
            return (f"cannot bind the local address ({', '.join(args.bind)}): "
                    f"{exc.strerror or exc} (is it an address of this host?)")
        if code == errno.ECONNREFUSED:
            return (f"connection refused at {where}: is `mptcpsec serve` running there, "
                    "on every --connect address?")
        return f"cannot connect to {where}: {exc.strerror or exc}"
    cert = client_cert_hint(str(exc), args)
    if cert is not None:
        return f"{cert} (the connection failed: {exc})"
    return f"connection failed: {exc} ({handshake_hint(str(exc), args)})"

"""The baseline peers of the lab, run inside a namespace: kernel MPTCP, TLS 1.3 over kernel
MPTCP, TCP and TLS 1.3 over TCP (mptcpsec itself runs as ``python -m mptcpsec serve|connect``).

Server: ``python -m mptcpsec.lab.net.peers serve --proto kernel-mptcp --listen ADDR:PORT``
echoes (or ``--discard``-s) each connection. Client: ``… client --proto … --connect
ADDR:PORT --bind ADDR --bytes N [--send]`` sends N random bytes, reads the echo back (unless
``--send``) and prints one JSON line: SHA-256 of both, the outcome, the kernel's MPTCP_INFO
(subflows, fallback) when the socket is MPTCP.

Outcomes: ``completed`` (everything came back; ``intact`` says whether it is the same),
``truncated`` (the peer closed early), ``aborted`` (TLS refused a record: detected),
``killed`` (the connection was reset), ``stalled`` (no progress for ``--timeout`` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
from typing import Any

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
SOL_MPTCP = 284
MPTCP_INFO = 1
PROTOS = ("kernel-mptcp", "tls-over-kernel-mptcp", "tcp", "tls")


def _sock(proto: str) -> socket.socket:
    ipproto = IPPROTO_MPTCP if "mptcp" in proto else socket.IPPROTO_TCP
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM, ipproto)


def mptcp_info(sock: socket.socket) -> dict[str, Any] | None:
    """The head of ``struct mptcp_info`` (linux/mptcp.h): subflows, announced addresses,
    and whether the connection fell back to plain TCP."""
    try:
        raw = sock.getsockopt(SOL_MPTCP, MPTCP_INFO, 64)
    except OSError:
        return None
    if len(raw) < 12:
        return None
    subflows, sig, acc, sub_max, _, acc_max, flags = struct.unpack_from("=6BxxI", raw)
    return {"subflows": subflows, "add_addr_signal": sig, "add_addr_accepted": acc,
            "subflows_max": sub_max, "add_addr_accepted_max": acc_max,
            "fallback": bool(flags & 1)}


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def serve(args: argparse.Namespace) -> int:
    lsock = _sock(args.proto)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(_hostport(args.listen))
    lsock.listen(16)
    ctx = None
    if args.proto.startswith("tls"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(args.cert, args.key)
    print(json.dumps({"listening": args.listen, "proto": args.proto}), flush=True)
    served = 0
    while args.connections == 0 or served < args.connections:
        conn, _ = lsock.accept()
        served += 1
        threading.Thread(target=_echo, args=(conn, ctx, args.discard), daemon=True).start()
    time.sleep(args.linger)
    return 0


def _echo(conn: socket.socket, ctx: ssl.SSLContext | None, discard: bool) -> None:
    s: Any = conn
    try:
        conn.settimeout(60)
        if ctx is not None:
            s = ctx.wrap_socket(conn, server_side=True)
        if discard:  # the client announces its length; "K" once all of it was read
            head = b""
            while len(head) < 8 and (more := s.recv(8 - len(head))):
                head += more
            left = int.from_bytes(head, "big") if len(head) == 8 else 0
            while left > 0 and (data := s.recv(min(left, 1 << 16))):
                left -= len(data)
            if left == 0:
                s.sendall(b"K")
            return
        while True:
            data = s.recv(1 << 16)
            if not data:
                break
            s.sendall(data)
    except ssl.SSLError as exc:  # a tampered record: say so (the lab reads it as "detected")
        print(json.dumps({"tls_error": str(exc)}), flush=True)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            s.close()


def client(args: argparse.Namespace) -> int:
    """Send (and read back) ``--bytes``; one asyncio loop drives both directions, so a TLS
    session is never used from two threads at once."""
    data = os.urandom(args.bytes)
    res: dict[str, Any] = {"mode": args.proto, "bytes_sent": 0, "bytes_echoed": 0,
                           "sha256_sent": hashlib.sha256(data).hexdigest(),
                           "sha256_echoed": None, "outcome": None, "error": None,
                           "intact": False, "detected": False}
    t0 = time.monotonic()
    raw = _sock(args.proto)
    raw.settimeout(args.timeout)
    info_samples: list[dict[str, Any]] = []
    received = bytearray()
    sent = {"n": 0}
    try:
        if args.bind:
            raw.bind((args.bind, 0))
        raw.connect(_hostport(args.connect))
        raw.setblocking(False)
        asyncio.run(_exchange(args, raw, data, received, sent, info_samples, res))
    except ssl.SSLError as exc:  # a record failed (here or at the server, which then left)
        res["outcome"], res["error"], res["detected"] = "aborted", f"TLS: {exc}", True
    except (ConnectionResetError, BrokenPipeError) as exc:
        res["outcome"], res["error"] = "killed", f"{type(exc).__name__}: {exc}"
    except TimeoutError:
        res["outcome"], res["error"] = "stalled", f"no progress for {args.timeout:g} s"
    except OSError as exc:
        res["outcome"], res["error"] = "killed", f"{type(exc).__name__}: {exc}"
    res["bytes_sent"] = sent["n"]
    res["duration_s"] = round(time.monotonic() - t0, 3)
    if not args.send:
        res["bytes_echoed"] = len(received)
        res["sha256_echoed"] = hashlib.sha256(received).hexdigest()
        res["intact"] = res["outcome"] == "completed" and bytes(received) == data
        if res["outcome"] == "completed" and not res["intact"]:
            res["outcome"] = "corrupted"
    else:
        res["intact"] = res["outcome"] == "completed"
    if info_samples:
        res["mptcp_info"] = {"max_subflows": max(i["subflows"] for i in info_samples),
                             "final": info_samples[-1],
                             "fallback": any(i["fallback"] for i in info_samples),
                             "add_addr_accepted": max(i["add_addr_accepted"]
                                                      for i in info_samples)}
    nbytes = res["bytes_sent"] if args.send else res["bytes_echoed"]
    res["MBps"] = round(nbytes / 1e6 / res["duration_s"], 3) if res["duration_s"] else None
    with contextlib.suppress(OSError):
        raw.close()
    print(json.dumps(res), flush=True)
    return 0 if res["intact"] else 1


async def _exchange(args: argparse.Namespace, raw: socket.socket, data: bytes,
                    received: bytearray, sent: dict[str, int],
                    info_samples: list[dict[str, Any]], res: dict[str, Any]) -> None:
    ctx = None
    host = _hostport(args.connect)[0]
    if args.proto.startswith("tls"):
        ctx = ssl.create_default_context(cafile=args.cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        sock=raw, ssl=ctx, server_hostname=host if ctx else None, limit=1 << 20),
        args.timeout)

    def sample() -> None:
        if (i := mptcp_info(raw)) is not None:
            info_samples.append(i)

    async def write_all() -> None:
        if args.send:  # a --discard server acknowledges the whole length with one byte
            writer.write(len(data).to_bytes(8, "big"))
        view = memoryview(data)
        for off in range(0, len(data), 1 << 16):
            writer.write(view[off:off + (1 << 16)])
            await asyncio.wait_for(writer.drain(), args.timeout)
            sent["n"] = min(len(data), off + (1 << 16))

    w = asyncio.ensure_future(write_all())
    try:
        last = 0.0
        if args.send:
            while not w.done():
                await asyncio.wait([w], timeout=0.2)
                sample()
            w.result()
            # the server's "K" once it read everything (TLS has no half-close to wait for)
            ack = await asyncio.wait_for(reader.read(1), args.timeout)
            if ack == b"K":
                res["outcome"] = "completed"
            else:
                res["outcome"], res["error"] = "truncated", "the server did not read it all"
            return
        while len(received) < len(data):
            chunk = await asyncio.wait_for(reader.read(1 << 16), args.timeout)
            if not chunk:
                res["outcome"] = "truncated"
                res["error"] = "the peer closed the connection early"
                break
            received += chunk
            if time.monotonic() - last > 0.2:
                last = time.monotonic()
                sample()
        else:
            res["outcome"] = "completed"
        sample()
    finally:
        w.cancel()
        with contextlib.suppress(BaseException):
            await w
        writer.transport.abort()


def make_cert(directory: str, ip: str) -> tuple[str, str]:
    """A self-signed certificate for ``ip`` (the TLS baselines verify it against itself)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mptcpsec lab")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = os.path.join(directory, "lab-cert.pem")
    key_path = os.path.join(directory, "lab-key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mptcpsec.lab.net.peers",
                                 description="Baseline echo peers for the namespace lab.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--proto", choices=PROTOS, required=True)
    s.add_argument("--listen", required=True, metavar="ADDR:PORT")
    s.add_argument("--discard", action="store_true")
    s.add_argument("--connections", type=int, default=0, help="0: serve until killed")
    s.add_argument("--linger", type=float, default=2.0)
    s.add_argument("--cert")
    s.add_argument("--key")
    c = sub.add_parser("client")
    c.add_argument("--proto", choices=PROTOS, required=True)
    c.add_argument("--connect", required=True, metavar="ADDR:PORT")
    c.add_argument("--bind")
    c.add_argument("--bytes", type=int, default=2_000_000)
    c.add_argument("--send", action="store_true", help="send only (a --discard server)")
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--cafile")
    args = ap.parse_args(argv)
    return serve(args) if args.cmd == "serve" else client(args)


if __name__ == "__main__":
    sys.exit(main())

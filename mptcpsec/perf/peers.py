"""The peers mptcpsec is measured against, behind one small stream interface.

Peers: ``mptcpsec`` (this project), ``tls`` (TLS 1.3 over one asyncio connection with the
standard `ssl` module), ``tcp`` (plain asyncio TCP streams) and ``kernel-mptcp`` (the
kernel's MPTCP socket, ``IPPROTO_MPTCP``, no encryption). Every peer runs the same server
handlers (`sink`, `echo`) and the same client code, so a comparison differs only in the
transport.

The bulk protocol: the client sends an 8-byte length N and N bytes; the sink answers with
16 bytes, the count it received and the server CPU microseconds the transfer took. The
``timeline`` handler reads until EOF and answers with what it got and when (failover), the
``first-byte`` handler answers one byte with when its handler started and when the byte
came (handshake); ``echo`` sends everything back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..aio.api import MptcpsecServer, MptcpsecStream, Path, connect, serve
from ..crypto.keyschedule import Role, Secret
from ..crypto.psk import PskConfig
from ..crypto.tls_keys import TlsConfig
from ..protocol.config import ConnectionConfig

PEERS = ("mptcpsec", "tls", "tcp", "kernel-mptcp")
IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
SOL_MPTCP = 284
MPTCP_INFO = 1
HEADER = struct.Struct("!Q")
REPLY = struct.Struct("!QQ")
#: Bytes a reader asks for at once, and the asyncio stream buffer limit (all peers alike).
CHUNK = 1 << 20
Address = tuple[str, int]


class Conn(Protocol):
    """What the bench handlers and clients need from a byte stream."""

    async def read(self, n: int) -> bytes: ...
    async def readexactly(self, n: int) -> bytes: ...
    def write(self, data: bytes | memoryview) -> None: ...
    async def drain(self) -> None: ...
    async def aclose(self) -> None: ...


class AsyncioConn:
    """An asyncio (reader, writer) pair: the tls, tcp and kernel-mptcp peers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read(self, n: int) -> bytes:
        return await self.reader.read(n)

    async def readexactly(self, n: int) -> bytes:
        return await self.reader.readexactly(n)

    def write(self, data: bytes | memoryview) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 5)

    def socket(self) -> socket.socket | None:
        return self.writer.get_extra_info("socket")


class StreamConn:
    """An mptcpsec stream."""

    def __init__(self, stream: MptcpsecStream) -> None:
        self.stream = stream

    async def read(self, n: int) -> bytes:
        return await self.stream.read(n)

    async def readexactly(self, n: int) -> bytes:
        return await self.stream.readexactly(n)

    def write(self, data: bytes | memoryview) -> None:
        self.stream.write(data)

    async def drain(self) -> None:
        await self.stream.drain()

    async def aclose(self) -> None:
        self.stream.close()
        with contextlib.suppress(Exception):
            await self.stream.wait_closed(5)


# ---------------------------------------------------------------------- handlers

async def sink(conn: Conn) -> None:
    """Read the announced number of bytes, answer with the count and the CPU time taken."""
    (n,) = HEADER.unpack(await conn.readexactly(HEADER.size))
    cpu0 = time.process_time()
    got = 0
    while got < n:
        data = await conn.read(min(CHUNK, n - got))
        if not data:
            raise ConnectionError(f"peer closed after {got} of {n} bytes")
        got += len(data)
    conn.write(REPLY.pack(got, round((time.process_time() - cpu0) * 1e6)))
    await conn.drain()


async def echo(conn: Conn) -> None:
    """Send back everything, until the peer closes."""
    while True:
        data = await conn.read(1 << 16)
        if not data:
            return
        conn.write(data)
        await conn.drain()


async def timeline(conn: Conn) -> None:
    """Read until EOF, noting (monotonic time, bytes so far) per read; answer with a JSON
    document (8-byte length first): received, sha256, reads."""
    digest = hashlib.sha256()
    got = 0
    reads: list[tuple[float, int]] = []
    while True:
        data = await conn.read(CHUNK)
        if not data:
            break
        now = time.monotonic()
        digest.update(data)
        got += len(data)
        reads.append((now, got))
    body = json.dumps({"received": got, "sha256": digest.hexdigest(), "reads": reads}).encode()
    conn.write(HEADER.pack(len(body)) + body)
    await conn.drain()


FIRST_BYTE = struct.Struct("!dd")


async def first_byte(conn: Conn) -> None:
    """Answer the first byte with (handler start, byte arrival), monotonic seconds."""
    start = time.monotonic()
    await conn.readexactly(1)
    conn.write(FIRST_BYTE.pack(start, time.monotonic()))
    await conn.drain()


HANDLERS: dict[str, Callable[[Conn], Awaitable[None]]] = {
    "sink": sink, "echo": echo, "timeline": timeline, "first-byte": first_byte}


# ---------------------------------------------------------------------- configuration

@dataclass
class PeerKeys:
    """What both ends of the bench share: the psk, and the server's TLS certificate."""

    psk: bytes
    cert_pem: bytes = b""
    key_pem: bytes = b""
    fingerprint: str = ""

    def public(self) -> dict[str, str]:
        return {"psk": self.psk.hex(), "cert_pem": self.cert_pem.decode(),
                "fingerprint": self.fingerprint}

    @classmethod
    def generate(cls, psk: bytes) -> PeerKeys:
        from ..crypto.certs import generate_self_signed

        bundle = generate_self_signed("localhost", ["localhost", "127.0.0.1"])
        return cls(psk, bundle.cert_pem, bundle.key_pem, bundle.fingerprint)


@dataclass
class MptcpsecOptions:
    """The ConnectionConfig fields a bench varies; everything else keeps its default."""

    key_exchange: str = "psk"
    algorithm: str = "aes-128-gcm"
    max_record: int = 16384
    scheduler: str = "lowest-rtt"
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self, role: Role, keys: PeerKeys) -> ConnectionConfig:
        cfg = ConnectionConfig(key_exchange=self.key_exchange, algorithm=self.algorithm,
                               max_record=self.max_record, scheduler=self.scheduler,
                               **self.extra)
        if self.key_exchange == "psk":
            cfg.psk = PskConfig(role, Secret(keys.psk))
        elif self.key_exchange == "tls":
            if role is Role.SERVER:
                cfg.tls = TlsConfig(role, cert_pem=keys.cert_pem, key_pem=keys.key_pem)
            else:
                cfg.tls = TlsConfig(role, pin_sha256=keys.fingerprint)
        return cfg

    def as_dict(self) -> dict[str, Any]:
        return {"key_exchange": self.key_exchange, "algorithm": self.algorithm,
                "max_record": self.max_record, "scheduler": self.scheduler,
                "extra": self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MptcpsecOptions:
        return cls(**d)


def kernel_mptcp_available() -> bool:
    """Whether the kernel lets us open an MPTCP socket (net.mptcp.enabled and support)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP):
            pass
    except OSError:
        return False
    try:
        with open("/proc/sys/net/mptcp/enabled", encoding="ascii") as f:
            return f.read().strip() == "1"
    except OSError:
        return True


def mptcp_subflows(sock: socket.socket | None) -> int | None:
    """Subflows of a kernel MPTCP connection (MPTCP_INFO); None if it fell back to TCP."""
    if sock is None:
        return None
    try:
        info = sock.getsockopt(SOL_MPTCP, MPTCP_INFO, 64)
    except OSError:
        return None
    return 1 + info[0] if info else None  # mptcpi_subflows counts the additional ones


# ---------------------------------------------------------------------- servers

async def _serve_asyncio(handler: Callable[[Conn], Awaitable[None]], host: str,
                         ssl_ctx: Any = None, mptcp: bool = False) -> asyncio.Server:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = AsyncioConn(reader, writer)
        try:
            await handler(conn)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.read(), 30)  # until the client closes
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    if mptcp:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(256)
        sock.setblocking(False)
        return await asyncio.start_server(on_client, sock=sock, limit=CHUNK)
    return await asyncio.start_server(on_client, host, 0, ssl=ssl_ctx, limit=CHUNK,
                                      backlog=512)


def tls_server_context(keys: PeerKeys) -> Any:
    import ssl
    import tempfile
    from pathlib import Path as FsPath

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with tempfile.TemporaryDirectory() as d:
        cert, key = FsPath(d, "cert.pem"), FsPath(d, "key.pem")
        cert.write_bytes(keys.cert_pem)
        key.write_bytes(keys.key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


def tls_client_context(cert_pem: str) -> Any:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cadata=cert_pem)
    return ctx


async def start_server(peer: str, handler_name: str, hosts: Sequence[str], keys: PeerKeys,
                       options: MptcpsecOptions | None = None,
                       ) -> tuple[list[Address], Callable[[], None], MptcpsecServer | None]:
    """Start one peer's server; returns its addresses, a close function, the mptcpsec server."""
    handler = HANDLERS[handler_name]
    if peer == "mptcpsec":
        opts = options or MptcpsecOptions()

        async def on_stream(stream: MptcpsecStream) -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await handler(StreamConn(stream))

        server = await serve(on_stream, [(h, 0) for h in hosts],
                             opts.config(Role.SERVER, keys))
        return list(server.addresses), server.close, server
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}")
    ssl_ctx = tls_server_context(keys) if peer == "tls" else None
    srv = await _serve_asyncio(handler, hosts[0], ssl_ctx, mptcp=peer == "kernel-mptcp")
    host, port = srv.sockets[0].getsockname()[:2]
    return [(host, port)], srv.close, None


# ---------------------------------------------------------------------- clients

async def open_conn(peer: str, addresses: Sequence[Address], keys: PeerKeys,
                    options: MptcpsecOptions | None = None, subflows: int = 1,
                    local_hosts: Sequence[str] | None = None,
                    cert_pem: str = "") -> tuple[Conn, dict[str, Any]]:
    """Connect to a peer's server; returns the stream and what is known about it."""
    if peer == "mptcpsec":
        opts = options or MptcpsecOptions()
        hosts = local_hosts or [a[0] for a in addresses]
        paths = [Path(addresses[i], local=hosts[i]) for i in range(subflows)]
        stream = await connect(paths, opts.config(Role.CLIENT, keys))
        return StreamConn(stream), {"subflows": subflows}
    if peer == "tls":
        ctx = tls_client_context(cert_pem or keys.cert_pem.decode())
        reader, writer = await asyncio.open_connection(*addresses[0], ssl=ctx,
                                                       server_hostname="localhost", limit=CHUNK)
        ssl_obj = writer.get_extra_info("ssl_object")
        info: dict[str, Any] = {"subflows": 1, "cipher": ssl_obj.cipher()[0] if ssl_obj else None,
                                "version": ssl_obj.version() if ssl_obj else None}
        return AsyncioConn(reader, writer), info
    if peer == "tcp":
        reader, writer = await asyncio.open_connection(*addresses[0], limit=CHUNK)
        return AsyncioConn(reader, writer), {"subflows": 1}
    if peer == "kernel-mptcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
        try:
            # A blocking connect (to loopback: immediate): asyncio's sock_connect resolves
            # the address with the socket's protocol, which getaddrinfo rejects for MPTCP.
            sock.settimeout(10)
            sock.connect(addresses[0])
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=CHUNK)
        conn = AsyncioConn(reader, writer)
        return conn, {"subflows": mptcp_subflows(conn.socket())}
    raise ValueError(f"unknown peer {peer!r}")


@dataclass(frozen=True)
class BulkSample:
    """One one-way bulk transfer."""

    nbytes: int
    seconds: float
    client_cpu: float
    server_cpu: float

    @property
    def MBps(self) -> float:
        return self.nbytes / self.seconds / 1e6


def payload_block(size: int = 16 << 20, seed: int = 7) -> bytes:
    """The bytes every peer sends (cycled): the same pseudo-random block for all of them."""
    import random

    return random.Random(seed).randbytes(size)


async def bulk_send(conn: Conn, block: bytes, nbytes: int, write_size: int = CHUNK,
                    ) -> BulkSample:
    """Send ``nbytes`` (``block`` cycled) and wait for the sink's answer."""
    view = memoryview(block)
    conn.write(HEADER.pack(nbytes))
    c0 = time.process_time()
    t0 = time.perf_counter()
    sent, off = 0, 0
    while sent < nbytes:
        k = min(write_size, nbytes - sent, len(block) - off)
        conn.write(view[off:off + k])
        sent += k
        off = (off + k) % len(block)
        await conn.drain()
    got, server_us = REPLY.unpack(await conn.readexactly(REPLY.size))
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if got != nbytes:
        raise ConnectionError(f"sink received {got} of {nbytes} bytes")
    return BulkSample(nbytes, seconds, cpu, server_us / 1e6)


def with_options(options: MptcpsecOptions, **changes: Any) -> MptcpsecOptions:
    return replace(options, **changes)

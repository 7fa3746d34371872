"""A sample capture of the real protocol: two engines over real loopback sockets.

``mptcpsec pcap --sample`` runs this. A server (``serve``) listens on 127.0.0.1 and
127.0.0.2 and a client (``connect``) opens a connection; the client's records, as they
cross its sockets, go to a capture sink. Nothing is scripted below the public API, so
every record is what the engine produces (papers/SPEC.md sections 2-10):

1. subflow 0 (127.0.0.1): the key exchange in clear HANDSHAKE records (a real TLS 1.3
   handshake by default), the server's ADD_ADDR announcement, DATA with 64-bit DSNs and
   DATA_ACKs, the echo;
2. subflow 1 (from 127.0.0.2, through a relay on 127.0.0.2): an authenticated join
   (JOIN records), MP_PRIO to backup and back, DATA on both subflows (round-robin) with
   KEY_UPDATEs every few records;
3. the relay flips one bit of a server record on subflow 1: the client poisons the
   subflow, reports it on subflow 0 (MP_TCPRST + SUBFLOW), and the data in flight on it
   is re-sent on subflow 0;
4. DATA_FIN and CLOSE records end the connection.

The client's key log goes to memory, so the result can open every record (plaintext,
and a key lookup for :class:`~mptcpsec.wire.pcap.RecordDecryptor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..aio.api import MptcpsecStream, Path, connect, serve
from ..crypto import Algorithm, active_backend_name
from ..crypto.certs import generate_self_signed
from ..crypto.keylog import parse_keylog
from ..crypto.keyschedule import Role, Secret
from ..crypto.psk import PskConfig
from ..crypto.tls_keys import TlsConfig
from ..errors import SampleError as SampleError
from ..protocol.config import ConnectionConfig
from ..protocol.events import Event, SubflowEstablished, SubflowPoisoned
from ..wire.decrypt import KeylogKeys
from ..wire.header import RecordHeader, RecordType
from ..wire.options import MptcpOption, decode_options
from ..wire.pcap import Endpoint, KeyLookup, RecordDecryptor, RecordSink
from ..wire.records import Record, is_protected
from .relay import HookContext, RecordHook, Relay

#: split-path is left out: its two key-exchange subflows leave no room for a join here.
KEY_EXCHANGES = ("tls", "psk")
#: Records per direction between key updates: several KEY_UPDATEs in a short sample.
KEY_UPDATE_RECORDS = 4
CHUNK = 8192


@dataclass(frozen=True)
class SampleRecord:
    """One record as it crossed the client's sockets: wire bytes, options, plaintext."""

    subflow_id: int
    from_client: bool
    ts: float
    wire: bytes
    type: int
    flags: int
    options: tuple[MptcpOption, ...]
    #: The opened body (empty for option-only records; the raw body when it did not open).
    plaintext: bytes
    opened: bool


@dataclass
class SampleResult:
    algorithm: str
    backend: str
    key_exchange: str
    subflows: dict[int, tuple[Endpoint, Endpoint]]
    records: list[SampleRecord]
    client_idsn: int
    server_idsn: int
    sent: bytes
    echoed: bytes
    keys: KeyLookup
    announced: tuple[str, int]
    poisoned: int | None
    events: list[Event] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return hashlib.sha256(self.sent).digest() == hashlib.sha256(self.echoed).digest()


class _Collector:
    """A capture sink that keeps every event and forwards it to the caller's sink."""

    def __init__(self, sink: RecordSink | None) -> None:
        self.sink = sink
        self.records: list[tuple[int, bool, bytes, float]] = []
        self.subflows: dict[int, tuple[Endpoint, Endpoint]] = {}
        self.info: dict[str, Any] | None = None

    def subflow_open(self, subflow_id: int, client: Endpoint, server: Endpoint,
                     ts: float | None = None) -> None:
        self.subflows[subflow_id] = (client, server)
        if self.sink is not None:
            self.sink.subflow_open(subflow_id, client, server, ts)

    def record(self, subflow_id: int, from_client: bool, record: bytes,
               ts: float | None = None) -> None:
        self.records.append((subflow_id, from_client, bytes(record),
                             time.time() if ts is None else ts))
        if self.sink is not None:
            self.sink.record(subflow_id, from_client, record, ts)

    def subflow_close(self, subflow_id: int, reset: bool = False,
                      ts: float | None = None) -> None:
        if self.sink is not None:
            self.sink.subflow_close(subflow_id, reset, ts)

    def connection_info(self, info: dict[str, Any], ts: float | None = None) -> None:
        self.info = dict(info)
        fn = getattr(self.sink, "connection_info", None)
        if fn is not None:
            fn(info, ts)

    def close(self) -> None:
        """The caller closes its own sink."""


class _BitFlip:
    """A relay hook: once armed, flips one tag bit of the next server DATA record."""

    def __init__(self) -> None:
        self.armed = False
        self.flipped = 0

    def __call__(self, record: bytes, ctx: HookContext) -> bytes:
        header = RecordHeader.unpack(record)
        if not self.armed or header.type != RecordType.DATA or header.body_len <= 16:
            return record
        self.armed = False
        self.flipped += 1
        tampered = bytearray(record)
        tampered[-1] ^= 0x01
        return bytes(tampered)


def _configs(key_exchange: str, algorithm: Algorithm, log: io.StringIO,
             announce: tuple[str, int]) -> tuple[ConnectionConfig, ConnectionConfig]:
    common: dict[str, Any] = {"key_exchange": key_exchange, "algorithm": algorithm,
                              "scheduler": "round-robin",
                              "key_update_records": KEY_UPDATE_RECORDS}
    client = ConnectionConfig(join_announced=False, **common)
    server = ConnectionConfig(announce=[announce], **common)
    if key_exchange == "tls":
        bundle = generate_self_signed("localhost")
        server.tls = TlsConfig(Role.SERVER, cert_pem=bundle.cert_pem, key_pem=bundle.key_pem)
        client.tls = TlsConfig(Role.CLIENT, pin_sha256=bundle.fingerprint, keylog_file=log)
    else:
        psk = os.urandom(32)
        server.psk = PskConfig(Role.SERVER, Secret(psk))
        client.psk = PskConfig(Role.CLIENT, Secret(psk), keylog_file=log)
    return client, server


async def _echo(stream: MptcpsecStream) -> None:
    while True:
        data = await stream.read(65536)
        if not data:
            break
        stream.write(data)
        await stream.drain()


class _Watch:
    """Wakes a waiter at each event of the connection (no polling)."""

    def __init__(self, stream: MptcpsecStream) -> None:
        self.stream = stream
        self.changed = asyncio.Event()
        stream.add_event_listener(lambda _event: self.changed.set())

    async def until(self, pred: Callable[[Event], bool], timeout: float, what: str) -> Event:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = next((e for e in self.stream.events if pred(e)), None)
            if found is not None:
                return found
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise SampleError(f"timed out waiting for {what}") from None


def _free_port(addresses: tuple[str, str]) -> int:
    """A TCP port free on both addresses (the server listens on the same port on each)."""
    for _ in range(20):
        with socket.create_server((addresses[0], 0)) as first:
            port = int(first.getsockname()[1])
            try:
                with socket.create_server((addresses[1], port)):
                    return port
            except OSError:
                continue
    raise SampleError(f"no port free on both {addresses[0]} and {addresses[1]}")


async def _exchange(collector: _Collector, *, key_exchange: str, algorithm: Algorithm,
                    payload: bytes, addresses: tuple[str, str], timeout: float,
                    log: io.StringIO) -> dict[str, Any]:
    flip = _BitFlip()
    port = _free_port(addresses)
    announce = (addresses[1], port)
    client_cfg, server_cfg = _configs(key_exchange, algorithm, log, announce)
    srv = await serve(_echo, [(addresses[0], port), (addresses[1], port)], server_cfg)
    relay = Relay((addresses[1], 0), (addresses[1], port), s2c=RecordHook(flip),
                  name="subflow 1")
    relay_addr = await relay.start()
    sent, echoed = bytearray(), bytearray()
    try:
        stream = await connect([Path((addresses[0], port), addresses[0])], client_cfg,
                               sink=collector, timeout=timeout)
        conn = stream.connection
        watch = _Watch(stream)

        async def send(part: bytes) -> None:
            for i in range(0, len(part), CHUNK):
                stream.write(part[i:i + CHUNK])
                await stream.drain()
            sent.extend(part)
            echoed.extend(await asyncio.wait_for(stream.readexactly(len(part)), timeout))

        n = len(payload)
        parts = [payload[: n // 6], payload[n // 6: n // 3], payload[n // 3: n // 2],
                 payload[n // 2: 5 * n // 6], payload[5 * n // 6:]]
        await send(parts[0])
        # 2. the join, MP_PRIO both ways, data on both subflows with key updates
        joined = await stream.add_path(Path(relay_addr, addresses[1]))
        if joined is None:
            raise SampleError("the join could not open its TCP connection")
        sid = joined
        await watch.until(lambda e: isinstance(e, SubflowEstablished) and e.subflow_id == sid,
                          timeout, "the join")
        conn.set_backup(sid, True)
        await send(parts[1])
        conn.set_backup(sid, False)
        await send(parts[2])
        # 3. one flipped bit on subflow 1: poisoned, reported, re-sent
        flip.armed = True
        pieces = [parts[3][i:i + CHUNK] for i in range(0, len(parts[3]), CHUNK)]
        # The server's scheduler picks its subflows: echo more (bounded) until one record
        # crossed subflow 1.
        for _ in range(16):
            if flip.flipped:
                break
            await send(pieces.pop(0) if pieces else os.urandom(1024))
        if not flip.flipped:
            raise SampleError("no server DATA record crossed subflow 1 to be tampered with")
        for piece in pieces:
            await send(piece)
        poison = await watch.until(lambda e: isinstance(e, SubflowPoisoned), timeout,
                                   "the poisoned subflow")
        await send(parts[4])
        # 4. DATA_FIN and CLOSE
        stream.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await stream.wait_closed(timeout)
        keys = conn.keys
        assert isinstance(poison, SubflowPoisoned)
        return {"sent": bytes(sent), "echoed": bytes(echoed), "announced": announce,
                "poisoned": poison.subflow_id,
                "client_idsn": keys.client_idsn if keys else 0,
                "server_idsn": keys.server_idsn if keys else 0,
                "events": list(stream.events)}
    finally:
        await relay.close()
        srv.close()
        await srv.wait_closed()


def _open_records(collector: _Collector, keys: KeylogKeys, protected_mode: bool
                  ) -> list[SampleRecord]:
    """Every captured record with its options and, where it opens, its plaintext."""
    opener = RecordDecryptor(keys, observer=keys.observe, protected_mode=protected_mode)
    out = []
    try:
        for sid, from_client, wire, ts in collector.records:
            rec = Record.decode(wire)
            opened = opener(sid, from_client, wire)
            is_open = opened != wire or not is_protected(rec.type, rec.flags, protected_mode)
            out.append(SampleRecord(sid, from_client, ts, wire, rec.type, rec.flags,
                                    tuple(decode_options(rec.options)),
                                    Record.decode(opened).body, is_open))
    finally:
        opener.close()
    return out


def run_sample(sink: RecordSink | None = None, *, algorithm: str = "aes-128-gcm",
               payload_len: int = 96 * 1024, key_exchange: str = "tls",
               addresses: tuple[str, str] = ("127.0.0.1", "127.0.0.2"),
               timeout: float = 15.0) -> SampleResult:
    """Run the sample connection; every client record goes to ``sink`` as it crosses."""
    if key_exchange not in KEY_EXCHANGES:
        raise SampleError(f"the sample runs tls or psk, not {key_exchange!r}")
    if payload_len < 8192:
        raise SampleError("the sample sends at least 8192 bytes")
    alg = Algorithm.parse(algorithm)
    payload = os.urandom(payload_len)
    log = io.StringIO()
    collector = _Collector(sink)

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(
            _exchange(collector, key_exchange=key_exchange, algorithm=alg, payload=payload,
                      addresses=addresses, timeout=timeout, log=log), 4 * timeout)

    try:
        facts = asyncio.run(bounded())
    except (OSError, asyncio.TimeoutError) as exc:
        raise SampleError(f"sample exchange failed: {exc!r}") from exc
    if collector.info is None:
        raise SampleError("the connection reported no key facts")
    keys = KeylogKeys(parse_keylog(log.getvalue()), collector.info)
    records = _open_records(collector, keys, collector.info.get("mode", "mptcpsec") == "mptcpsec")
    return SampleResult(alg.value, active_backend_name(), key_exchange,
                        dict(collector.subflows), records, facts["client_idsn"],
                        facts["server_idsn"], facts["sent"], facts["echoed"], keys,
                        facts["announced"], facts["poisoned"], facts["events"])


__all__ = ["KEY_EXCHANGES", "SampleError", "SampleRecord", "SampleResult", "run_sample"]

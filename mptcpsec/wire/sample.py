"""A short, real MPTCPsec record exchange over two loopback TCP subflows.

It exists to produce honest sample captures (``mptcpsec pcap --sample``) and to test the
pcap export end to end: every record is sealed and opened by the crypto backend (C core
by default) with random per-subflow, per-direction keys, crosses a real TCP socket, is
split by :class:`~mptcpsec.wire.records.RecordParser` on the receiving side and checked
against the per-type rules. Each side reports what it *received* to a
:class:`~mptcpsec.wire.pcap.RecordSink`, so the capture holds the bytes that crossed
the sockets, on the real addresses and ports.

The exchange (client C, server S; subflow 0 on the first address, 1 on the second):

1. subflow 0: plaintext HANDSHAKE records both ways (MP_CAPABLE, version 1);
   S announces a third address in a CONTROL record (ADD_ADDR with its RFC 8684 HMAC);
2. C sends DATA (DSS: 64-bit DSN and DATA_ACK); S echoes it in DATA records;
3. subflow 1: JOIN records (MP_JOIN SYN + SUBFLOW id, SYN/ACK, ACK, RFC 8684 HMACs);
   more DATA and echo; C sends KEY_UPDATE and continues under the next key;
4. C marks subflow 1 as backup (MP_PRIO), reports it reset on subflow 0 (MP_TCPRST with
   a SUBFLOW option) and closes it (CLOSE both ways);
5. C sends the last DATA with DATA_FIN; S echoes, sends its DATA_FIN and a DATA_ACK;
   CLOSE both ways.

This is a fixture for captures, not the connection engine: keys are drawn at random
in-process instead of being established.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from ..errors import MptcpsecError, RecordError
from .header import RecordType
from .options import (
    AddAddr,
    Dss,
    MpCapable,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MptcpOption,
    PoisonReason,
    TcpRstReason,
)
from .pcap import Endpoint, RecordSink
from .records import (
    Record,
    RecordParser,
    RecordSpec,
    check_record,
    clear_handshake,
    close_spec,
    control_spec,
    data_ack_spec,
    data_spec,
    data_template,
    is_protected,
    join_record,
    key_update_spec,
    subflow_reset_spec,
)

CHUNK = 16384
HANDSHAKE_MESSAGE = b"MPTCPsec sample exchange: keys drawn at random in-process, no key exchange"


class SampleError(MptcpsecError):
    """The sample exchange did not complete as scripted."""


@dataclass(frozen=True)
class SampleRecord:
    """One record as the receiving side got it: wire bytes, decoded options, plaintext."""

    subflow_id: int
    from_client: bool
    ts: float
    wire: bytes
    type: int
    flags: int
    options: tuple[MptcpOption, ...]
    plaintext: bytes


@dataclass
class SampleResult:
    algorithm: str
    backend: str
    subflows: dict[int, tuple[Endpoint, Endpoint]]
    records: list[SampleRecord]
    client_idsn: int
    server_idsn: int
    sent: bytes
    echoed: bytes
    keys: Callable[[int, bool, int], tuple[str, bytes, bytes] | None]
    announced: tuple[str, int] = ("", 0)

    @property
    def intact(self) -> bool:
        return hashlib.sha256(self.sent).digest() == hashlib.sha256(self.echoed).digest()


class _KeyTable:
    """Random (key, iv) per (subflow, direction, generation), shared by both sides."""

    def __init__(self, algorithm: str, key_len: int) -> None:
        self.algorithm = algorithm
        self.key_len = key_len
        self._table: dict[tuple[int, bool, int], tuple[bytes, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, sid: int, from_client: bool, generation: int) -> tuple[bytes, bytes]:
        with self._lock:
            k = (sid, from_client, generation)
            if k not in self._table:
                self._table[k] = (os.urandom(self.key_len), os.urandom(12))
            return self._table[k]

    def lookup(self, sid: int, from_client: bool,
               generation: int) -> tuple[str, bytes, bytes] | None:
        with self._lock:
            found = self._table.get((sid, from_client, generation))
        return None if found is None else (self.algorithm, found[0], found[1])


class _Side:
    """One end's subflows: sockets, sealers/openers, parsers, received-record log."""

    def __init__(self, is_client: bool, keys: _KeyTable, backend: Any, alg: Any,
                 log: Callable[[SampleRecord], None], timeout: float) -> None:
        self.is_client = is_client
        self.keys = keys
        self.backend = backend
        self.alg = alg
        self.log = log
        self.timeout = timeout
        self.socks: dict[int, socket.socket] = {}
        self.sealers: dict[int, Any] = {}
        self.openers: dict[int, Any] = {}
        self.send_gen: dict[int, int] = {}
        self.recv_gen: dict[int, int] = {}
        self.parsers: dict[int, RecordParser] = {}
        self.inbox: dict[int, list[SampleRecord]] = {}

    def attach(self, sid: int, sock: socket.socket) -> None:
        sock.settimeout(self.timeout)
        self.socks[sid] = sock
        self.parsers[sid] = RecordParser()
        self.inbox[sid] = []
        self.send_gen[sid] = self.recv_gen[sid] = 0
        self.sealers[sid] = self._aead(sid, self.is_client, 0, seal=True)
        self.openers[sid] = self._aead(sid, not self.is_client, 0, seal=False)

    def _aead(self, sid: int, from_client: bool, gen: int, seal: bool) -> Any:
        key, iv = self.keys.get(sid, from_client, gen)
        make = self.backend.sealer if seal else self.backend.opener
        return make(self.alg, key, iv)

    # -- sending
    def send_clear(self, sid: int, record: bytes) -> None:
        self.socks[sid].sendall(record)

    def send(self, sid: int, specs: list[RecordSpec]) -> None:
        self.socks[sid].sendall(self.sealers[sid].seal_records(specs))
        if any(s[0] == RecordType.KEY_UPDATE for s in specs):
            if specs[-1][0] != RecordType.KEY_UPDATE:
                raise SampleError("a KEY_UPDATE must end its batch")
            self._rekey_send(sid)

    def send_data(self, sid: int, data: bytes, dsn: int, data_ack: int) -> None:
        t = data_template(data_ack)
        out = self.sealers[sid].seal_chunks(data, CHUNK, RecordType.DATA, options=t.options,
                                            seq_off=t.seq_off, seq_base=dsn, len_off=t.len_off)
        self.socks[sid].sendall(out)

    def _rekey_send(self, sid: int) -> None:
        self.sealers[sid].close()
        self.send_gen[sid] += 1
        self.sealers[sid] = self._aead(sid, self.is_client, self.send_gen[sid], seal=True)

    # -- receiving
    def pump(self, sid: int) -> bool:
        """Read once from the subflow; returns False at end of stream."""
        data = self.socks[sid].recv(65536)
        if not data:
            self.parsers[sid].eof()
            return False
        for rec in self.parsers[sid].feed(data):
            self.inbox[sid].append(self._open(sid, rec))
        return True

    def _open(self, sid: int, rec: Record) -> SampleRecord:
        wire = rec.encode()
        plaintext = rec.body
        if is_protected(rec.type, rec.flags):
            buf = bytearray(wire)
            res = self.openers[sid].open_records(buf, max_records=1)
            if res.error is not None:
                raise SampleError(f"subflow {sid}: record failed to open: {res.error}")
            opened = res.records[0]
            plaintext = bytes(buf[opened.pt_offset:opened.pt_offset + opened.pt_len])
            if rec.type == RecordType.KEY_UPDATE:
                self.openers[sid].close()
                self.recv_gen[sid] += 1
                self.openers[sid] = self._aead(sid, not self.is_client, self.recv_gen[sid],
                                               seal=False)
        opts = check_record(rec.type, rec.flags, rec.options, len(plaintext))
        got = SampleRecord(sid, not self.is_client, time.time(), wire, rec.type, rec.flags,
                           tuple(opts), plaintext)
        self.log(got)
        return got

    def wait(self, sid: int, pred: Callable[[SampleRecord], bool]) -> SampleRecord:
        """Read subflow ``sid`` until a record matching ``pred`` arrives; return it."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, r in enumerate(self.inbox[sid]):
                if pred(r):
                    del self.inbox[sid][: i + 1]
                    return r
            if time.monotonic() > deadline:
                raise SampleError(f"subflow {sid}: timed out waiting for a record")
            if not self.pump(sid):
                raise SampleError(f"subflow {sid}: closed while waiting for a record")

    def close_all(self) -> None:
        for s in self.socks.values():
            s.close()
        for a in (*self.sealers.values(), *self.openers.values()):
            a.close()


def _dss(r: SampleRecord) -> Dss | None:
    return next((o for o in r.options if isinstance(o, Dss)), None)


class _Server(threading.Thread):
    """Echo server: answers handshakes and joins, echoes DATA, acknowledges, closes."""

    def __init__(self, side: _Side, listeners: list[socket.socket], keys64: tuple[int, int],
                 idsn: int, client_idsn: int, announce: tuple[str, int]) -> None:
        super().__init__(name="mptcpsec-sample-server", daemon=True)
        self.side = side
        self.listeners = listeners
        self.key_c, self.key_s = keys64
        self.next_dsn = idsn  # next DSN the server sends
        self.expect = client_idsn  # next DSN expected from the client
        self.announce = announce
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # reported to the caller's thread
            self.error = exc
        finally:
            self.done.set()

    def _serve(self) -> None:
        from ..crypto import rfc8684

        side = self.side
        sel = selectors.DefaultSelector()
        for i, lst in enumerate(self.listeners):
            sel.register(lst, selectors.EVENT_READ, ("listen", i))
        open_subflows = 0
        seen_any = False
        deadline = time.monotonic() + side.timeout
        while not seen_any or open_subflows:
            if time.monotonic() > deadline:
                raise SampleError("server timed out")
            for key, _ in sel.select(timeout=0.2):
                kind, sid = key.data
                if kind == "listen":
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    side.attach(sid, conn)
                    sel.register(conn, selectors.EVENT_READ, ("conn", sid))
                    open_subflows += 1
                    seen_any = True
                    continue
                alive = side.pump(sid)
                while side.inbox[sid]:
                    self._handle(sid, side.inbox[sid].pop(0), rfc8684)
                if not alive:
                    sel.unregister(side.socks[sid])
                    open_subflows -= 1
        sel.close()

    def _handle(self, sid: int, r: SampleRecord, rfc8684: Any) -> None:
        side = self.side
        if r.type == RecordType.HANDSHAKE:
            side.send_clear(sid, clear_handshake(HANDSHAKE_MESSAGE, [MpCapable()]))
            host, port = self.announce
            hmac = rfc8684.add_addr_hmac(self.key_s, self.key_c, 2, host, port)
            side.send(sid, [control_spec([AddAddr(2, IPv4Address(host), port, hmac)])])
        elif r.type == RecordType.JOIN:
            join = r.options[0]
            if isinstance(join, MpJoinSyn):
                self.nonce_c = join.nonce
                self.nonce_s = secrets.randbits(32)
                hmac = rfc8684.join_synack_hmac(self.key_s, self.key_c, self.nonce_s,
                                                self.nonce_c)
                side.send_clear(sid, join_record(MpJoinSynAck(join.address_id, hmac,
                                                              self.nonce_s)))
            elif isinstance(join, MpJoinAck):
                want = rfc8684.join_ack_hmac(self.key_c, self.key_s, self.nonce_c, self.nonce_s)
                if not rfc8684.verify(want, join.hmac):
                    raise SampleError("MP_JOIN ACK HMAC did not verify")
        elif r.type == RecordType.DATA:
            dss = _dss(r)
            assert dss is not None and dss.dsn is not None
            if dss.dsn != self.expect:
                raise SampleError(f"DSN {dss.dsn} out of order (expected {self.expect})")
            self.expect += dss.data_len
            if r.plaintext:
                side.send_data(sid, r.plaintext, self.next_dsn, self.expect)
                self.next_dsn += len(r.plaintext)
            if dss.data_fin:
                side.send(sid, [data_spec(self.next_dsn, b"", self.expect, data_fin=True)])
                self.next_dsn += 1
                side.send(sid, [data_ack_spec(self.expect)])
        elif r.type == RecordType.CLOSE:
            side.send(sid, [close_spec(self.expect)])
            side.socks[sid].shutdown(socket.SHUT_WR)


def run_sample(sink: RecordSink | None = None, *, algorithm: str = "aes-128-gcm",
               payload_len: int = 96 * 1024, addresses: tuple[str, str] = ("127.0.0.1",
                                                                         "127.0.0.2"),
               timeout: float = 10.0, backend: Any = None) -> SampleResult:
    """Run the scripted exchange; report received records to ``sink`` as they arrive."""
    from ..crypto import Algorithm, active_backend_name, get_backend, rfc8684

    alg = Algorithm.parse(algorithm)
    be = backend if backend is not None else get_backend()
    keys = _KeyTable(alg.value, alg.key_len)
    records: list[SampleRecord] = []
    lock = threading.Lock()

    def log(r: SampleRecord) -> None:
        with lock:
            records.append(r)
            if sink is not None:
                sink.record(r.subflow_id, r.from_client, r.wire, r.ts)

    key_c, key_s = secrets.randbits(64), secrets.randbits(64)
    idsn_c, idsn_s = secrets.randbits(63), secrets.randbits(63)
    payload = os.urandom(payload_len)
    if payload_len < 8192:
        raise SampleError("the sample sends at least 8192 bytes")
    tail = payload_len - 4096  # the last 4 KiB go in the DATA_FIN record
    n3, n2 = payload_len // 3, payload_len // 2
    parts = [payload[:n3], payload[n3:n2], payload[n2:tail], payload[tail:]]

    listeners = []
    try:
        for host in addresses:
            lst = socket.create_server((host, 0))
            listeners.append(lst)
    except OSError as exc:
        for lst in listeners:
            lst.close()
        raise SampleError(f"cannot listen on {addresses}: {exc}") from exc
    announce = ("127.0.0.3", listeners[0].getsockname()[1])
    client = _Side(True, keys, be, alg, log, timeout)
    server_side = _Side(False, keys, be, alg, log, timeout)
    server = _Server(server_side, listeners, (key_c, key_s), idsn_s, idsn_c, announce)
    server.start()
    subflows: dict[int, tuple[Endpoint, Endpoint]] = {}
    echoed = bytearray()
    sent_dsn = idsn_c
    try:
        def connect(sid: int) -> None:
            sock = socket.create_connection(listeners[sid].getsockname()[:2], timeout=timeout,
                                            source_address=(addresses[sid], 0))
            local, remote = sock.getsockname()[:2], sock.getpeername()[:2]
            subflows[sid] = (local, remote)
            if sink is not None:
                sink.subflow_open(sid, local, remote, time.time())
            client.attach(sid, sock)

        def send_and_echo(sid: int, data: bytes) -> None:
            nonlocal sent_dsn
            client.send_data(sid, data, sent_dsn, idsn_s + len(echoed))
            sent_dsn += len(data)
            while len(echoed) < sent_dsn - idsn_c:
                r = client.wait(sid, lambda r: r.type == RecordType.DATA)
                echoed.extend(r.plaintext)

        # 1-2. subflow 0: handshake, address announcement, data
        connect(0)
        client.send_clear(0, clear_handshake(HANDSHAKE_MESSAGE, [MpCapable()]))
        client.wait(0, lambda r: r.type == RecordType.HANDSHAKE)
        client.wait(0, lambda r: any(isinstance(o, AddAddr) for o in r.options))
        send_and_echo(0, parts[0])
        # 3. subflow 1: join, data, key update, data
        connect(1)
        nonce_c = secrets.randbits(32)
        token = rfc8684.token_from_key(key_s)
        client.send_clear(1, join_record(MpJoinSyn(1, token, nonce_c), subflow_id=1))
        synack = client.wait(1, lambda r: r.type == RecordType.JOIN).options[0]
        assert isinstance(synack, MpJoinSynAck)
        want = rfc8684.join_synack_hmac(key_s, key_c, synack.nonce, nonce_c)
        if not rfc8684.verify(want, synack.hmac):
            raise SampleError("MP_JOIN SYN/ACK HMAC did not verify")
        ack_hmac = rfc8684.join_ack_hmac(key_c, key_s, nonce_c, synack.nonce)
        client.send_clear(1, join_record(MpJoinAck(ack_hmac)))
        send_and_echo(1, parts[1])
        client.send(1, [key_update_spec()])
        send_and_echo(1, parts[2])
        # 4. subflow 1 becomes backup, is reported reset on subflow 0, and closes
        client.send(1, [control_spec([MpPrio(backup=True)])])
        client.send(0, [subflow_reset_spec(1, PoisonReason.NONE,
                                           TcpRstReason.ADMINISTRATIVELY_PROHIBITED)])
        client.send(1, [close_spec(idsn_s + len(echoed))])
        client.wait(1, lambda r: r.type == RecordType.CLOSE)
        client.socks[1].shutdown(socket.SHUT_WR)
        # 5. last data with DATA_FIN on subflow 0, then CLOSE
        final = parts[3]
        client.send(0, [data_spec(sent_dsn, final, idsn_s + len(echoed), data_fin=True)])
        sent_dsn += len(final) + 1
        while len(echoed) < len(payload):
            echoed.extend(client.wait(0, lambda r: r.type == RecordType.DATA).plaintext)
        client.wait(0, lambda r: r.type == RecordType.DATA and bool(_dss(r) and _dss(r).data_fin))  # type: ignore[union-attr]
        client.wait(0, lambda r: r.type == RecordType.CONTROL)
        client.send(0, [close_spec(idsn_s + len(echoed) + 1)])
        client.wait(0, lambda r: r.type == RecordType.CLOSE)
        client.socks[0].shutdown(socket.SHUT_WR)
        for sid in (0, 1):
            while client.pump(sid):  # drain to the server's FIN
                pass
        server.done.wait(timeout)
        if server.error is not None:
            raise SampleError(f"server failed: {server.error}") from server.error
        if not server.done.is_set():
            raise SampleError("server did not finish")
        if sink is not None:
            for sid in sorted(subflows):
                sink.subflow_close(sid, ts=time.time())
    except (OSError, RecordError) as exc:
        if server.error is not None:
            raise SampleError(f"server failed: {server.error}") from server.error
        raise SampleError(f"sample exchange failed: {exc}") from exc
    finally:
        client.close_all()
        server_side.close_all()
        for lst in listeners:
            lst.close()
    with lock:
        recs = sorted(records, key=lambda r: r.ts)
    return SampleResult(alg.value, getattr(be, "name", active_backend_name()), subflows, recs,
                        idsn_c, idsn_s, payload, bytes(echoed), keys.lookup, announce)


__all__ = ["HANDSHAKE_MESSAGE", "SampleError", "SampleRecord", "SampleResult", "run_sample"]

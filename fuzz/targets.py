"""Fuzz targets: every parser that reads bytes from the network, one function per target.

Each target takes arbitrary bytes and may raise only a typed `MptcpsecError` (the
contract for bad input); any other exception, or a broken invariant (an AssertionError),
is a finding. The functions run under atheris (`fuzz/run.py`) and, over a small seed
corpus, in the ordinary test suite.

    record-parser    RecordParser under any fragmentation, then the per-type rules
    options          option codec: decode, and encode(decode(x)) == x when it decodes
    handshake        split-path, psk and tls handshake messages, both roles, any path
    batch-opener     the C core's batch opener on random and on mutated sealed records
    endpoint         the server endpoint and engine fed a connection's first bytes
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from mptcpsec.crypto import get_backend
from mptcpsec.crypto.aead import Algorithm
from mptcpsec.crypto.keyschedule import Role, Secret
from mptcpsec.crypto.kx import Step
from mptcpsec.errors import KeyExchangeError, MptcpsecError
from mptcpsec.wire.header import HEADER_LEN, MAX_OPT_LEN, RecordType
from mptcpsec.wire.options import decode_options, encode_options
from mptcpsec.wire.records import RecordParser, check_record


class Input:
    """Consumes fuzz bytes as small integers and byte strings (never runs out)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)


def record_parser(data: bytes) -> None:
    inp = Input(data)
    max_body = 16400 + inp.u8() * 16
    parser = RecordParser(max_body=max_body, protected=bool(inp.u8() & 1))
    body = inp.rest()
    pos = 0
    cuts = list(body[:8]) or [1]
    i = 0
    while pos < len(body):
        n = 1 + cuts[i % len(cuts)]
        i += 1
        try:
            records = parser.feed(body[pos:pos + n])
        except MptcpsecError:
            return
        pos += n
        assert parser.buffered < parser.max_record_len
        for rec in records:
            assert rec.type in tuple(RecordType) and len(rec.options) <= MAX_OPT_LEN
            for pt_len in (len(rec.body), max(0, len(rec.body) - 16)):
                with contextlib.suppress(MptcpsecError):
                    check_record(rec.type, rec.flags, rec.options, pt_len)
    with contextlib.suppress(MptcpsecError):
        parser.eof()


def options(data: bytes) -> None:
    area = data[:MAX_OPT_LEN]
    try:
        decoded = decode_options(area)
    except MptcpsecError:
        return
    assert encode_options(decoded) == area, "decode/encode is not lossless"
    for rtype in RecordType:
        with contextlib.suppress(MptcpsecError):
            check_record(rtype, 0, area, 0)


_TLS_BUNDLE = None


def _make_kx(kind: int) -> object:
    global _TLS_BUNDLE
    from mptcpsec.crypto.psk import PskConfig, PskKeyExchange
    from mptcpsec.crypto.splitpath import SplitPathClient, SplitPathConfig, SplitPathServer

    key = Secret(bytes(range(32)))
    if kind == 0:
        return SplitPathClient(SplitPathConfig(Role.CLIENT))
    if kind == 1:
        return SplitPathServer(SplitPathConfig(Role.SERVER))
    if kind == 2:
        return PskKeyExchange(PskConfig(Role.CLIENT, key))
    if kind == 3:
        return PskKeyExchange(PskConfig(Role.SERVER, key))
    from mptcpsec.crypto.certs import generate_self_signed
    from mptcpsec.crypto.tls_keys import TlsConfig, TlsKeyExchange

    if _TLS_BUNDLE is None:
        _TLS_BUNDLE = generate_self_signed()
    b = _TLS_BUNDLE
    if kind == 4:
        return TlsKeyExchange(TlsConfig(Role.SERVER, cert_pem=b.cert_pem, key_pem=b.key_pem))
    return TlsKeyExchange(TlsConfig(Role.CLIENT, pin_sha256=b.fingerprint))


def _psk_hello(inp: Input) -> None:
    """psk v2 server fed a PSK_CLIENT_HELLO with fuzzed version, identity and binder: it
    never completes, and never answers with anything but an ABORT (SPEC 7.4)."""
    from mptcpsec.crypto import psk

    kx = psk.PskKeyExchange(psk.PskConfig(Role.SERVER, Secret(bytes(range(32)))))
    try:
        kx.start()
        ident = inp.take(inp.u8() % 8)
        hello = (bytes([psk.PSK_CLIENT_HELLO, inp.u8() % 4]) + inp.take(psk.NONCE_LEN)
                 + bytes([len(ident) + inp.u8() % 2]) + ident + inp.take(inp.u8() % 40))
        step = kx.receive(0, hello)
        assert step.result is None, "a forged hello completed the psk exchange"
        assert all(m[:1] == b"\x7f" for _, m in step.send), \
            "the psk server answered an unauthenticated hello"
    finally:
        kx.close()


def _split_path_claim(inp: Input) -> None:
    """split-path server with a genuine CLIENT_SHARE, then fuzzed messages on a claimed
    path 1 (ABORTs, CLIENT_NONCEs with fuzzed fields): a well-formed ABORT (two bytes or
    more) before a valid path-1 message never ends the exchange; nothing completes it
    (SPEC 7.3). A one-byte 0x7f is malformed, and malformed input ends it like any other."""
    from mptcpsec.crypto import splitpath as sp

    client = sp.SplitPathClient(sp.SplitPathConfig(Role.CLIENT))
    server = sp.SplitPathServer(sp.SplitPathConfig(Role.SERVER))
    try:
        server.start()
        first = dict(client.start().send)
        server.receive(sp.SHARE_PATH, first[sp.SHARE_PATH])
        sid = client.session_id
        for _ in range(1 + inp.u8() % 4):
            choice = inp.u8() % 3
            if choice == 0:
                msg = bytes([0x7F, inp.u8() % 3]) + inp.take(inp.u8() % 40)
            elif choice == 1:
                msg = bytes([sp.CLIENT_NONCE, inp.u8() % 3]) + sid + inp.take(64)
            else:
                msg = inp.take(inp.u8())
            step = server.receive(sp.NONCE_PATH, msg)
            assert step.result is None, "a forged path 1 completed the exchange"
            if (msg[:1] == b"\x7f" and len(msg) >= 2
                    and server._valid_paths == {sp.SHARE_PATH}):
                assert step.error is None, "an ABORT on a silent path ended the exchange"
            if step.error is not None:
                assert isinstance(step.error, KeyExchangeError)
                break
    finally:
        client.close()
        server.close()


def handshake(data: bytes) -> None:
    inp = Input(data)
    kind = inp.u8() % 8
    if kind == 6:
        _psk_hello(inp)
        return
    if kind == 7:
        _split_path_claim(inp)
        return
    kx = _make_kx(kind)
    try:
        kx.start()  # type: ignore[attr-defined]
        for _ in range(1 + inp.u8() % 4):
            path = inp.u8() % 3
            msg = inp.take(inp.u8() * 2)
            step = kx.receive(path, msg)  # type: ignore[attr-defined]
            assert isinstance(step, Step)
            assert step.result is None, "random bytes completed a key exchange"
            if step.error is not None:
                assert isinstance(step.error, KeyExchangeError)
                break
    except MptcpsecError:
        pass
    finally:
        kx.close()  # type: ignore[attr-defined]


_KEY = bytes(range(16))
_IV = bytes(range(12))


def batch_opener(data: bytes) -> None:
    inp = Input(data)
    backend = get_backend()
    mode = inp.u8()
    allowed = inp.u8() | 0x3E
    max_body = inp.u8() * 257
    opener = backend.opener(Algorithm.AES_128_GCM, _KEY, _IV)
    if mode & 1:  # genuine records, then the fuzzer's XOR mask over them
        sealer = backend.sealer(Algorithm.AES_128_GCM, _KEY, _IV)
        specs = [(RecordType.DATA, 0, b"", inp.take(inp.u8())) for _ in range(1 + mode % 5)]
        buf = bytearray(sealer.seal_records(specs))
        sealer.close()
        for i, b in enumerate(inp.rest()):
            buf[i % len(buf)] ^= b
    else:
        buf = bytearray(inp.rest())
    size = len(buf)
    try:
        res = opener.open_records(buf, max_body=max_body, allowed_types=allowed,
                                  max_records=64)
    except MptcpsecError:
        return
    finally:
        opener.close()
    assert 0 <= res.consumed <= size and len(buf) == size
    end = 0
    for rec in res.records:
        assert rec.end <= res.consumed and rec.pt_offset >= rec.opt_offset >= end + HEADER_LEN
        end = rec.end


def endpoint(data: bytes) -> None:
    from mptcpsec.crypto.psk import PskConfig
    from mptcpsec.protocol.config import ConnectionConfig
    from mptcpsec.protocol.endpoint import Routed, ServerEndpoint

    inp = Input(data)
    kind = inp.u8() % 3
    cfg = ConnectionConfig(key_exchange=("split-path", "psk", "tls")[kind] if kind < 2
                           else "psk", mode="plain" if kind == 2 else "mptcpsec",
                           psk=PskConfig(Role.SERVER, Secret(bytes(32))))
    ep = ServerEndpoint(cfg)
    handle = object()
    ep.accept(handle, ("127.0.0.1", 7000), ("127.0.0.1", 40000), 0.0)
    now = 0.0
    conn = None
    sid = 0
    while inp.pos < len(inp.data):
        chunk = inp.take(1 + inp.u8())
        now += 0.01
        if conn is None:
            r = ep.receive(handle, chunk, now)
            if r is None:
                continue
            if not isinstance(r, Routed):
                return
            conn, sid = r.connection, r.subflow_id
        else:
            conn.receive(sid, chunk, now)
        conn.data_to_send(now)
        while conn.next_event() is not None:
            pass
        if conn.ended:
            return


TARGETS: dict[str, Callable[[bytes], None]] = {
    "record-parser": record_parser,
    "options": options,
    "handshake": handshake,
    "batch-opener": batch_opener,
    "endpoint": endpoint,
}


def seeds(name: str) -> list[bytes]:
    """A few structured inputs per target (a corpus for atheris, and the smoke test)."""
    from mptcpsec.wire.options import Dss, MpsWindow
    from mptcpsec.wire.records import build_record, clear_handshake

    dss = encode_options([Dss(data_ack=5, dsn=7, ssn=0, data_len=3), MpsWindow(99)])
    rec = build_record(RecordType.DATA, 0, dss, b"abc")
    base = [b"", b"\x01", os.urandom(64), bytes(300)]
    if name == "record-parser":
        return [*base, b"\x00\x00" + rec * 3, b"\x00\x01" + rec[:10]]
    if name == "options":
        return [*base, dss]
    if name == "handshake":
        return base + [bytes([k, 2, p, 40]) + os.urandom(80) for k in range(8) for p in (0, 1)]
    if name == "batch-opener":
        return [*base, b"\x01\xff@\x05abcde" + os.urandom(20), b"\x00\xff@" + rec]
    if name == "endpoint":
        hello = clear_handshake(b"\x31\x02" + bytes(33 + 32), [])
        return [*base, b"\x01\xff" + hello, b"\x00\xff" + rec]
    return base

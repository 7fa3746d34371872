"""Record framing, per-type rules, and the incremental parser under any fragmentation."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mptcpsec.crypto import BACKENDS, Algorithm, Backend, get_backend
from mptcpsec.errors import (
    ParserFailedError,
    RecordBodyError,
    RecordError,
    RecordFlagsError,
    RecordOptionsError,
    RecordTooLargeError,
    RecordTypeError,
    RecordVersionError,
    TruncatedError,
)
from mptcpsec.wire.header import HEADER_LEN, MAX_BODY_LEN, TAG_LEN, RecordHeader, RecordType
from mptcpsec.wire.options import (
    AddAddr,
    Dss,
    MpCapable,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpsSubflow,
    MpsWindow,
    MpTcpRst,
    PoisonReason,
    RemoveAddr,
    encode_options,
)
from mptcpsec.wire.records import (
    DEFAULT_MAX_BODY,
    HandshakeFlags,
    KeyUpdateFlags,
    Record,
    RecordParser,
    build_record,
    check_header,
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
    parse_records,
    subflow_reset_spec,
)

HMAC8 = bytes(8)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return get_backend(request.param)


def _pair(backend: Backend) -> tuple[object, object]:
    key, iv = os.urandom(16), os.urandom(12)
    return (backend.sealer(Algorithm.AES_128_GCM, key, iv),
            backend.opener(Algorithm.AES_128_GCM, key, iv))


# ----------------------------------------------------------------------------- framing

@given(data=st.data())
def test_record_round_trip(data: st.DataObject, record_st: st.SearchStrategy[Record]) -> None:
    rec = data.draw(record_st)
    wire = rec.encode()
    assert len(wire) == len(rec) == HEADER_LEN + len(rec.options) + len(rec.body)
    assert wire[:HEADER_LEN] == bytes([1, rec.type, rec.flags, len(rec.options)]) + \
        len(rec.body).to_bytes(2, "big")
    assert Record.decode(wire) == rec
    assert rec.associated_data == wire[:HEADER_LEN + len(rec.options)]


def test_record_decode_errors() -> None:
    wire = build_record(RecordType.JOIN, 0, [MpJoinAck(bytes(20))])
    with pytest.raises(TruncatedError):
        Record.decode(wire[:5])
    with pytest.raises(TruncatedError):
        Record.decode(wire[:-1])
    with pytest.raises(RecordError):
        Record.decode(wire + b"\x00")
    with pytest.raises(RecordVersionError):
        Record.decode(b"\x02" + wire[1:])
    with pytest.raises(RecordTooLargeError):
        build_record(RecordType.DATA, 0, bytes(256))


def test_clear_records_bytes() -> None:
    hs = clear_handshake(b"hello", [MpCapable()])
    assert hs == bytes.fromhex("01 03 01 04 0005 1e040101") + b"hello"
    join = join_record(MpJoinSyn(1, 0xAABBCCDD, 7), subflow_id=3)
    assert join == bytes.fromhex("01 06 00 14 0000 1e0c1001aabbccdd00000007 1e08f00000000003")
    assert check_record(RecordType.JOIN, 0, join[HEADER_LEN:HEADER_LEN + 20], 0) == [
        MpJoinSyn(1, 0xAABBCCDD, 7), MpsSubflow(3)]


def test_is_protected() -> None:
    assert not is_protected(RecordType.JOIN, 0)
    assert not is_protected(RecordType.HANDSHAKE, HandshakeFlags.CLEAR)
    assert is_protected(RecordType.HANDSHAKE, 0)
    for t in (RecordType.DATA, RecordType.CONTROL, RecordType.KEY_UPDATE, RecordType.CLOSE):
        assert is_protected(t, 0) and not is_protected(t, 0, protected=False)


# ----------------------------------------------------------------------------- sealed specs

def test_specs_seal_open_and_pass_rules(backend: Backend) -> None:
    sealer, opener = _pair(backend)
    specs = [
        data_spec(2**63 + 5, b"abc", data_ack=7),
        data_spec(10, b"", data_ack=7, data_fin=True),
        data_spec(11, b"x" * 100, extra=[AddAddr(1, "10.0.0.2", 443, HMAC8), MpPrio(True)]),
        control_spec([AddAddr(2, "2001:db8::2", echo=True), RemoveAddr((1, 3))]),
        data_ack_spec(2**64 - 1),
        subflow_reset_spec(4, PoisonReason.AUTHENTICATION),
        control_spec([MpFastclose(0)]),
        key_update_spec(request_update=True),
        close_spec(99),
        close_spec(),
    ]
    buf = sealer.seal_records(specs)  # type: ignore[attr-defined]
    res = opener.open_records(buf)  # type: ignore[attr-defined]
    assert res.error is None and len(res.records) == len(specs)
    for spec, rec in zip(specs, res.records, strict=True):
        opts = check_record(rec.type, rec.flags, rec.options(buf), rec.pt_len)
        assert (rec.type, rec.flags, rec.options(buf), rec.plaintext(buf)) == spec
        assert encode_options(opts) == spec[2]
    first = check_record(res.records[0].type, 0, res.records[0].options(buf), 3)[0]
    assert first == Dss(data_ack=7, dsn=2**63 + 5, data_len=3)
    fin = check_record(1, 0, res.records[1].options(buf), 0)[0]
    assert isinstance(fin, Dss) and fin.data_fin and fin.data_len == 1
    assert res.records[7].flags == KeyUpdateFlags.UPDATE_REQUESTED


@pytest.mark.parametrize("data_ack", [None, 12345])
def test_data_template_offsets_with_seal_chunks(backend: Backend, data_ack: int | None) -> None:
    sealer, opener = _pair(backend)
    t = data_template(data_ack)
    assert t.seq_off == (12 if data_ack is not None else 4)
    assert t.len_off == t.seq_off + 12
    payload = os.urandom(40000)
    base = 2**64 - 30000  # the DSN wraps inside the batch
    buf = sealer.seal_chunks(payload, 16384, RecordType.DATA, options=t.options,  # type: ignore[attr-defined]
                             seq_off=t.seq_off, seq_base=base, len_off=t.len_off)
    res = opener.open_records(buf)  # type: ignore[attr-defined]
    assert res.error is None and len(res.records) == 3
    offset = 0
    for rec in res.records:
        (dss,) = check_record(rec.type, rec.flags, rec.options(buf), rec.pt_len)
        assert isinstance(dss, Dss)
        assert dss.dsn == (base + offset) % 2**64 and dss.data_len == rec.pt_len
        assert dss.data_ack == data_ack
        assert rec.plaintext(buf) == payload[offset:offset + rec.pt_len]
        offset += rec.pt_len
    assert offset == len(payload)


# ----------------------------------------------------------------------------- rules

def _dss(**kw: object) -> bytes:
    return Dss(**kw).encode()  # type: ignore[arg-type]


BAD_RECORDS = [
    # (type, flags, options, plaintext length, error, what)
    (1, 0, b"", 5, RecordOptionsError, "DATA without DSS"),
    (1, 0, _dss(data_ack=1), 5, RecordOptionsError, "DATA with DATA_ACK-only DSS"),
    (1, 0, _dss(dsn=1, data_len=4), 5, RecordOptionsError, "DATA length mismatch"),
    (1, 0, _dss(dsn=1, data_len=5, data_fin=True), 5, RecordOptionsError, "FIN not counted"),
    (1, 0, _dss(dsn=1, dsn_wide=False, data_len=5), 5, RecordOptionsError, "4-byte DSN"),
    (1, 0, _dss(dsn=1, data_ack=1, data_ack_wide=False, data_len=5), 5, RecordOptionsError,
     "4-byte DATA_ACK"),
    (1, 0, _dss(dsn=1, data_len=5, checksum=0), 5, RecordOptionsError, "checksum"),
    (1, 0, _dss(dsn=1, ssn=9, data_len=5), 5, RecordOptionsError, "SSN not 0"),
    (1, 0, _dss(dsn=1, data_len=0), 0, RecordBodyError, "empty DATA without FIN"),
    (1, 0, _dss(dsn=1, data_len=5) * 2, 5, RecordOptionsError, "two DSS"),
    (1, 0, _dss(dsn=1, data_len=5) + MpCapable().encode(), 5, RecordOptionsError,
     "MP_CAPABLE in DATA"),
    (1, 0, MpPrio().encode() + _dss(dsn=1, data_len=5), 5, RecordOptionsError, "DSS not first"),
    (1, 0, _dss(dsn=1, data_len=5, reserved=1), 5, RecordOptionsError, "reserved bits"),
    (1, 1, _dss(dsn=1, data_len=5), 5, RecordFlagsError, "undefined DATA flag"),
    (1, 0, _dss(dsn=1, data_len=5)[:-1], 4, RecordOptionsError, "truncated option"),
    (2, 0, b"", 0, RecordOptionsError, "CONTROL without options"),
    (2, 0, MpPrio().encode(), 1, RecordBodyError, "CONTROL with plaintext"),
    (2, 0, _dss(dsn=1, data_len=1), 0, RecordOptionsError, "CONTROL with mapping"),
    (2, 0, _dss(data_ack=1) * 2, 0, RecordOptionsError, "CONTROL with two DSS"),
    (2, 0, MpTcpRst().encode(), 0, RecordOptionsError, "MP_TCPRST without SUBFLOW"),
    (2, 0, MpsSubflow(1).encode(), 0, RecordOptionsError, "SUBFLOW without MP_TCPRST"),
    (2, 0, MpJoinAck(bytes(20)).encode(), 0, RecordOptionsError, "MP_JOIN in CONTROL"),
    (2, 0, MpPrio(reserved=1).encode(), 0, RecordOptionsError, "MP_PRIO reserved bits"),
    (3, 0x02, b"", 4, RecordFlagsError, "undefined HANDSHAKE flag"),
    (3, 1, MpCapable(version=0).encode(), 4, RecordOptionsError, "MP_CAPABLE version 0"),
    (3, 1, MpCapable(hmac_sha256=False).encode(), 4, RecordOptionsError, "MP_CAPABLE no H"),
    (3, 1, MpCapable().encode() * 2, 4, RecordOptionsError, "two MP_CAPABLE"),
    (3, 1, _dss(data_ack=1), 4, RecordOptionsError, "DSS in HANDSHAKE"),
    (3, 1, MpsSubflow(0, 1).encode(), 4, RecordOptionsError, "SUBFLOW reason in HANDSHAKE"),
    (3, 1, MpsSubflow(0).encode() * 2, 4, RecordOptionsError, "two SUBFLOW in HANDSHAKE"),
    (1, 0, _dss(dsn=1, data_len=5) + MpsWindow(9).encode() * 2, 5, RecordOptionsError,
     "two WINDOW in DATA"),
    (2, 0, MpsWindow(9).encode() * 2, 0, RecordOptionsError, "two WINDOW in CONTROL"),
    (5, 0, MpsWindow(9).encode(), 0, RecordOptionsError, "WINDOW in CLOSE"),
    (4, 0, b"", 1, RecordBodyError, "KEY_UPDATE with plaintext"),
    (4, 0, _dss(data_ack=1), 0, RecordOptionsError, "KEY_UPDATE with options"),
    (4, 2, b"", 0, RecordFlagsError, "undefined KEY_UPDATE flag"),
    (5, 0, b"", 3, RecordBodyError, "CLOSE with plaintext"),
    (5, 0, _dss(dsn=1, data_len=1), 0, RecordOptionsError, "CLOSE with mapping"),
    (5, 0, MpPrio().encode(), 0, RecordOptionsError, "CLOSE with MP_PRIO"),
    (6, 0, b"", 0, RecordOptionsError, "JOIN without MP_JOIN"),
    (6, 0, MpJoinSyn(1, 2, 3).encode(), 0, RecordOptionsError, "JOIN SYN without SUBFLOW"),
    (6, 0, MpJoinSynAck(1, HMAC8, 3).encode() + MpsSubflow(1).encode(), 0, RecordOptionsError,
     "SUBFLOW with SYN/ACK"),
    (6, 0, MpJoinSyn(1, 2, 3).encode() + MpsSubflow(1, 2).encode(), 0, RecordOptionsError,
     "SUBFLOW reason in JOIN"),
    (6, 0, MpJoinAck(bytes(20)).encode() * 2, 0, RecordOptionsError, "two MP_JOIN"),
    (6, 0, MpsSubflow(1).encode() + MpJoinSyn(1, 2, 3).encode(), 0, RecordOptionsError,
     "SUBFLOW before MP_JOIN"),
    (6, 0, MpJoinAck(bytes(20)).encode(), 65, RecordBodyError, "JOIN body too long"),
    (7, 0, b"", 0, RecordTypeError, "unknown type"),
]


@pytest.mark.parametrize(("rtype", "flags", "options", "pt_len", "error"),
                         [b[:5] for b in BAD_RECORDS], ids=[b[5] for b in BAD_RECORDS])
def test_rules_reject(rtype: int, flags: int, options: bytes, pt_len: int,
                      error: type[Exception]) -> None:
    with pytest.raises(error):
        check_record(rtype, flags, options, pt_len)


def test_rules_accept_plain_forms() -> None:
    assert check_record(3, 1, b"", 10) == []
    hs = [MpCapable(sender_key=5), MpsSubflow(1)]
    assert check_record(3, 1, encode_options(hs), 10) == hs
    window = [Dss(data_ack=1, dsn=2, data_len=3), MpsWindow(2**40)]
    assert check_record(1, 0, encode_options(window), 3) == window
    assert check_record(2, 0, encode_options([Dss(data_ack=1), MpsWindow(7)]), 0)[1] == \
        MpsWindow(7)
    assert check_record(6, 0, MpJoinSynAck(1, HMAC8, 3).encode(), 0) == [
        MpJoinSynAck(1, HMAC8, 3)]
    assert check_record(2, 0, MpTcpRst(1).encode() + MpsSubflow(7, 1).encode(), 0)[1] == \
        MpsSubflow(7, 1)


HEADERS = [
    (RecordHeader(7, 0, 0, 16), RecordTypeError),
    (RecordHeader(0, 0, 0, 16), RecordTypeError),
    (RecordHeader(1, 0x80, 0, 16), RecordFlagsError),
    (RecordHeader(1, 0, 0, DEFAULT_MAX_BODY + 1), RecordTooLargeError),
    (RecordHeader(1, 0, 0, TAG_LEN - 1), RecordBodyError),
    (RecordHeader(3, 0, 0, 3), RecordBodyError),  # protected HANDSHAKE shorter than a tag
    (RecordHeader(1, 0, 0, 16, version=2), RecordVersionError),
]


@pytest.mark.parametrize(("header", "error"), HEADERS)
def test_check_header(header: RecordHeader, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_header(header)


def test_check_header_modes_and_masks() -> None:
    check_header(RecordHeader(1, 0, 0, 3), protected=False)
    check_header(RecordHeader(6, 0, 20, 0))
    check_header(RecordHeader(3, 1, 0, 0))
    with pytest.raises(RecordTypeError):
        check_header(RecordHeader(6, 0, 20, 0), allowed_types=[RecordType.DATA])
    with pytest.raises(RecordTypeError):
        check_header(RecordHeader(6, 0, 20, 0), allowed_types=1 << RecordType.DATA)


# ----------------------------------------------------------------------------- the parser

def _stream(backend: Backend) -> tuple[bytes, list[Record]]:
    sealer, _ = _pair(backend)
    wire = bytearray(clear_handshake(b"client hello", [MpCapable()]))
    wire += join_record(MpJoinAck(bytes(20)))
    wire += sealer.seal_records([  # type: ignore[attr-defined]
        data_spec(0, os.urandom(3000), data_ack=1),
        data_ack_spec(9),
        key_update_spec(),
        close_spec(9),
    ])
    records, used = parse_records(wire)
    assert used == len(wire) and len(records) == 6
    return bytes(wire), records


def test_parser_one_byte_at_a_time() -> None:
    wire, expected = _stream(get_backend())
    p = RecordParser()
    got: list[Record] = []
    for i in range(len(wire)):
        got += p.feed(wire[i:i + 1])
        assert p.buffered < p.max_record_len
    assert got == expected and p.buffered == 0
    assert p.records_parsed == 6 and p.bytes_parsed == len(wire)
    p.eof()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, 4000), max_size=30), as_type=st.sampled_from(
    [bytes, bytearray, memoryview]))
def test_parser_any_fragmentation(cuts: list[int], as_type: type) -> None:
    wire, expected = _stream(get_backend("c"))
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    p = RecordParser()
    got: list[Record] = []
    for a, b in itertools.pairwise(points):
        got += p.feed(as_type(wire[a:b]))
        assert p.buffered < p.max_record_len
    assert got == expected


def test_parser_rejects_oversize_before_the_body() -> None:
    p = RecordParser(max_body=1000)
    assert p.feed(b"\x01\x01\x00\x1a\x03") == []
    with pytest.raises(RecordTooLargeError):
        p.feed(b"\xe9")  # body_len 1001: refused with only the header seen
    assert p.buffered <= HEADER_LEN and p.failed
    with pytest.raises(ParserFailedError):
        p.feed(b"\x00" * 10)


def test_parser_rejects_bad_header_inside_a_chunk() -> None:
    good = build_record(RecordType.HANDSHAKE, HandshakeFlags.CLEAR, b"", b"hi")
    p = RecordParser()
    with pytest.raises(RecordVersionError):
        p.feed(good + b"\x09" + b"\x00" * 100)
    with pytest.raises(ParserFailedError):
        p.feed(good)


@pytest.mark.parametrize(("header", "error"), [
    (b"\x02\x01\x00\x00\x00\x10", RecordVersionError),
    (b"\x01\x09\x00\x00\x00\x10", RecordTypeError),
    (b"\x01\x01\x01\x00\x00\x10", RecordFlagsError),
    (b"\x01\x01\x00\x00\x00\x0f", RecordBodyError),
    (b"\x01\x01\x00\x00\xff\xff", RecordTooLargeError),
])
def test_parser_header_errors_at_sixth_byte(header: bytes, error: type[Exception]) -> None:
    p = RecordParser()
    for b in header[:-1]:
        assert p.feed(bytes([b])) == []
    with pytest.raises(error):
        p.feed(header[-1:])


def test_parser_eof_inside_record() -> None:
    p = RecordParser()
    p.feed(clear_handshake(b"abc")[:-1])
    with pytest.raises(TruncatedError):
        p.eof()


def test_parser_allowed_types_and_plain_mode() -> None:
    p = RecordParser(allowed_types=[RecordType.HANDSHAKE])
    with pytest.raises(RecordTypeError):
        p.feed(join_record(MpJoinAck(bytes(20))))
    plain = RecordParser(protected=False)
    rec = build_record(RecordType.DATA, 0, [Dss(dsn=0, data_len=2)], b"hi")
    assert plain.feed(rec) == [Record.decode(rec)]
    with pytest.raises(ValueError):
        RecordParser(max_body=MAX_BODY_LEN + 1)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=20),
       max_body=st.integers(0, 2000), protected=st.booleans())
def test_parser_random_bytes_never_crash_or_overallocate(data: bytes, cuts: list[int],
                                                         max_body: int, protected: bool) -> None:
    p = RecordParser(max_body=max_body, protected=protected)
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    total = 0
    for a, b in itertools.pairwise(points):
        try:
            for rec in p.feed(data[a:b]):
                total += len(rec)
                assert len(rec.body) <= max_body
        except RecordError:
            assert p.failed
            with pytest.raises(ParserFailedError):
                p.feed(b"\x01")
            return
        assert p.buffered < p.max_record_len
        assert total + p.buffered == b  # every byte is either in a record or buffered


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_parser_valid_records_any_split(data: st.DataObject,
                                       record_st: st.SearchStrategy[Record]) -> None:
    valid = record_st.map(lambda r: Record(r.type, r.flags & (1 if r.type in (3, 4) else 0),
                                           r.options, r.body)).filter(
        lambda r: not is_protected(r.type, r.flags) or len(r.body) >= TAG_LEN)
    records = data.draw(st.lists(valid, max_size=5))
    wire = b"".join(r.encode() for r in records)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    points = sorted(set(cuts) | {0, len(wire)})
    p = RecordParser(max_body=2048)
    got: list[Record] = []
    for a, b in itertools.pairwise(points):
        got += p.feed(wire[a:b])
    assert got == records


@st.composite
def _header_soup(draw: st.DrawFn) -> bytes:
    """Plausible headers (mostly version 1, small lengths) followed by random bytes."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 8))):
        version = draw(st.sampled_from([1, 1, 1, 1, 2, 0]))
        rtype = draw(st.integers(0, 8))
        flags = draw(st.sampled_from([0, 0, 0, 1, 2, 0x80]))
        opt_len = draw(st.integers(0, 40))
        body_len = draw(st.sampled_from([0, 5, 16, 17, 100, 1500, 3000, 65535]))
        out += bytes([version, rtype, flags, opt_len]) + body_len.to_bytes(2, "big")
        out += draw(st.binary(max_size=300))
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(data=_header_soup(), cuts=st.lists(st.integers(0, 3000), max_size=20),
       max_body=st.sampled_from([0, 16, 1500, 2000, DEFAULT_MAX_BODY]), protected=st.booleans())
def test_parser_header_soup_bounded(data: bytes, cuts: list[int], max_body: int,
                                    protected: bool) -> None:
    p = RecordParser(max_body=max_body, protected=protected)
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    consumed = 0
    for a, b in itertools.pairwise(points):
        try:
            for rec in p.feed(data[a:b]):
                consumed += len(rec)
                assert rec.encode() == data[consumed - len(rec):consumed]
        except RecordError:
            assert p.failed and p.buffered < p.max_record_len
            return
        assert p.buffered < p.max_record_len
        assert consumed + p.buffered == b


def test_spec_test_vector(backend: Backend) -> None:
    """papers/SPEC.md section 5.5: the bytes a peer must produce and accept."""
    sealer = backend.sealer(Algorithm.AES_128_GCM, bytes(range(16)), bytes(range(12)))
    wire = sealer.seal_records([data_spec(0x0102030405060708, b"hello",
                                          data_ack=0x1112131415161718),
                                data_ack_spec(0x111213141516171D)])
    assert bytes(wire) == bytes.fromhex(
        "0101001a0015 1e1a200f111213141516171801020304050607080000000000 05"
        "fb09cba20990778768d1574663ea44b50203ba364e"
        "0102000c0010 1e0c2003111213141516171d 92f2ba9cc28b9b30f49c3ffa2ed0438a".replace(" ", ""))
    hs = clear_handshake(b"hi", [MpCapable(sender_key=0x0102030405060708), MpsSubflow(0)])
    assert hs == bytes.fromhex("0103011400021e0c010101020304050607081e08f0000000000068 69"
                               .replace(" ", ""))

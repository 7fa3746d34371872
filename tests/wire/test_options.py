"""RFC 8684 option codec: byte-exact figures, round trips, and a typed error for every bad input."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings, strategies as st

from mptcpsec.errors import (
    OptionError,
    OptionFlagsError,
    OptionLengthError,
    OptionsTooLongError,
    OptionTruncatedError,
    OptionValueError,
    UnknownOptionError,
    WireError,
)
from mptcpsec.wire.options import (
    OPTION_CLASSES,
    AddAddr,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpsSubflow,
    MpsWindow,
    MptcpOption,
    MpTcpRst,
    PoisonReason,
    RemoveAddr,
    TcpRstReason,
    decode_option,
    decode_options,
    describe,
    encode_options,
    option_offsets,
)

K1 = 0x0102030405060708
K2 = 0x1112131415161718
H8 = bytes(range(0xA0, 0xA8))
H20 = bytes(range(0xB0, 0xC4))

# (figure, hex as drawn field by field from the RFC 8684 figure, option)
RFC_VECTORS = [
    # Figure 4, MP_CAPABLE: Kind 30 | Length | Subtype 0, Version 1 | A B C D E F G H
    ("MP_CAPABLE SYN, A+H", "1e04 01 81", MpCapable(checksum_required=True)),
    ("MP_CAPABLE SYN, H", "1e04 01 01", MpCapable()),
    ("MP_CAPABLE SYN, C+H", "1e04 01 21", MpCapable(no_new_subflows=True)),
    ("MP_CAPABLE SYN/ACK", "1e0c 01 01 0102030405060708", MpCapable(sender_key=K1)),
    ("MP_CAPABLE ACK", "1e14 01 01 0102030405060708 1112131415161718",
     MpCapable(sender_key=K1, receiver_key=K2)),
    ("MP_CAPABLE ACK+data", "1e16 01 01 0102030405060708 1112131415161718 05dc",
     MpCapable(sender_key=K1, receiver_key=K2, data_len=1500)),
    ("MP_CAPABLE ACK+data+csum", "1e18 01 81 0102030405060708 1112131415161718 05dc beef",
     MpCapable(checksum_required=True, sender_key=K1, receiver_key=K2, data_len=1500,
               checksum=0xBEEF)),
    # Figure 5, MP_JOIN SYN: Length 12 | Subtype 1, 3 reserved bits, B | Address ID | token | R
    ("MP_JOIN SYN", "1e0c 11 05 deadbeef 01020304",
     MpJoinSyn(address_id=5, token=0xDEADBEEF, nonce=0x01020304, backup=True)),
    ("MP_JOIN SYN no backup", "1e0c 10 00 00000001 ffffffff",
     MpJoinSyn(address_id=0, token=1, nonce=0xFFFFFFFF)),
    # Figure 6, MP_JOIN SYN/ACK: Length 16 | truncated HMAC (64 bits) | R
    ("MP_JOIN SYN/ACK", "1e10 10 07 a0a1a2a3a4a5a6a7 0a0b0c0d",
     MpJoinSynAck(address_id=7, hmac=H8, nonce=0x0A0B0C0D)),
    # Figure 7, MP_JOIN ACK: Length 24 | Subtype 1 + 12 reserved bits | HMAC (160 bits)
    ("MP_JOIN ACK", "1e18 1000 " + H20.hex(), MpJoinAck(hmac=H20)),
    # Figure 9, DSS: Length | Subtype 2, reserved | F m M a A | DATA_ACK | DSN | SSN | len | csum
    ("DSS empty", "1e04 20 00", Dss()),
    ("DSS ack32", "1e08 20 01 89abcdef", Dss(data_ack=0x89ABCDEF, data_ack_wide=False)),
    ("DSS ack64", "1e0c 20 03 0102030405060708", Dss(data_ack=K1)),
    ("DSS map32", "1e0e 20 04 00000064 00000001 0010",
     Dss(dsn=100, dsn_wide=False, ssn=1, data_len=16)),
    ("DSS map32+csum", "1e10 20 04 00000064 00000001 0010 abcd",
     Dss(dsn=100, dsn_wide=False, ssn=1, data_len=16, checksum=0xABCD)),
    ("DSS map64", "1e12 20 0c 0102030405060708 00000000 4000",
     Dss(dsn=K1, ssn=0, data_len=0x4000)),
    ("DSS ack32+map32", "1e12 20 05 00000009 00000064 00000001 0010",
     Dss(data_ack=9, data_ack_wide=False, dsn=100, dsn_wide=False, ssn=1, data_len=16)),
    ("DSS ack64+map64 (canonical record DSS)",
     "1e1a 20 0f 1112131415161718 0102030405060708 00000000 4000",
     Dss(data_ack=K2, dsn=K1, data_len=0x4000)),
    ("DSS ack64+map64+csum+DATA_FIN",
     "1e1c 20 1f 1112131415161718 0102030405060708 00000005 0001 1234",
     Dss(data_ack=K2, dsn=K1, ssn=5, data_len=1, checksum=0x1234, data_fin=True)),
    ("DSS ack32+map64", "1e16 20 0d 00000009 0102030405060708 00000000 0001",
     Dss(data_ack=9, data_ack_wide=False, dsn=K1, data_len=1)),
    ("DSS ack64+map32 DATA_FIN", "1e16 20 17 0102030405060708 00000064 00000000 0001",
     Dss(data_ack=K1, dsn=100, dsn_wide=False, data_len=1, data_fin=True)),
    # Figure 12, ADD_ADDR: Length | Subtype 3, (rsv), E | Address ID | addr | port | HMAC
    ("ADD_ADDR v4 hmac", "1e10 30 01 c0000201 " + H8.hex(),
     AddAddr(1, IPv4Address("192.0.2.1"), hmac=H8)),
    ("ADD_ADDR v4 port hmac", "1e12 30 01 c0000201 1f90 " + H8.hex(),
     AddAddr(1, IPv4Address("192.0.2.1"), port=8080, hmac=H8)),
    ("ADD_ADDR v4 echo", "1e08 31 01 c0000201", AddAddr(1, IPv4Address("192.0.2.1"), echo=True)),
    ("ADD_ADDR v4 port echo", "1e0a 31 02 c0000201 0050",
     AddAddr(2, IPv4Address("192.0.2.1"), port=80, echo=True)),
    ("ADD_ADDR v6 hmac", "1e1c 30 03 20010db8000000000000000000000001 " + H8.hex(),
     AddAddr(3, IPv6Address("2001:db8::1"), hmac=H8)),
    ("ADD_ADDR v6 port hmac", "1e1e 30 03 20010db8000000000000000000000001 01bb " + H8.hex(),
     AddAddr(3, IPv6Address("2001:db8::1"), port=443, hmac=H8)),
    ("ADD_ADDR v6 echo", "1e14 31 04 20010db8000000000000000000000002",
     AddAddr(4, IPv6Address("2001:db8::2"), echo=True)),
    ("ADD_ADDR v6 port echo", "1e16 31 04 20010db8000000000000000000000002 01bb",
     AddAddr(4, IPv6Address("2001:db8::2"), port=443, echo=True)),
    # Figure 13, REMOVE_ADDR: Length 3+n | Subtype 4, (resvd) | Address IDs
    ("REMOVE_ADDR one", "1e04 40 07", RemoveAddr((7,))),
    ("REMOVE_ADDR three", "1e06 40 01 02 03", RemoveAddr((1, 2, 3))),
    # Figure 11, MP_PRIO: Length 3 | Subtype 5, (rsv), B
    ("MP_PRIO backup", "1e03 51", MpPrio(backup=True)),
    ("MP_PRIO regular", "1e03 50", MpPrio(backup=False)),
    # Figure 16, MP_FAIL: Length 12 | Subtype 6 + 12 reserved bits | DSN (64 bits)
    ("MP_FAIL", "1e0c 6000 0102030405060708", MpFail(dsn=K1)),
    # Figure 14, MP_FASTCLOSE: Length 12 | Subtype 7 + reserved | Option Receiver's Key
    ("MP_FASTCLOSE", "1e0c 7000 1112131415161718", MpFastclose(receiver_key=K2)),
    # Figure 15, MP_TCPRST: Length 4 | Subtype 8, U V W T | Reason
    ("MP_TCPRST transient middlebox", "1e04 81 06",
     MpTcpRst(reason=TcpRstReason.MIDDLEBOX_INTERFERENCE, transient=True)),
    ("MP_TCPRST unspecified", "1e04 80 00", MpTcpRst()),
    ("MP_TCPRST admin", "1e04 80 03", MpTcpRst(reason=TcpRstReason.ADMINISTRATIVELY_PROHIBITED)),
    # MPTCPsec SUBFLOW (MP_EXPERIMENTAL 0xf, type 0): Length 8 | f0 | reason | subflow ID (32)
    ("MPTCPsec SUBFLOW", "1e08 f0 01 00000002",
     MpsSubflow(subflow_id=2, reason=PoisonReason.AUTHENTICATION)),
    # MPTCPsec WINDOW (MP_EXPERIMENTAL 0xf, type 1): Length 12 | f1 | reserved | right edge (64)
    ("MPTCPsec WINDOW", "1e0c f1 00 0102030405060708", MpsWindow(edge=K1)),
]


@pytest.mark.parametrize(("wire", "option"), [(v[1], v[2]) for v in RFC_VECTORS],
                         ids=[v[0] for v in RFC_VECTORS])
def test_rfc_figure_bytes(wire: str, option: MptcpOption) -> None:
    data = bytes.fromhex(wire.replace(" ", ""))
    assert option.encode() == data
    assert option.length == len(data) == data[1]
    assert decode_options(data) == [option]
    assert type(option).decode(data) == option


def test_rfc_vectors_cover_every_class() -> None:
    assert {type(v[2]) for v in RFC_VECTORS} == set(OPTION_CLASSES)


@settings(max_examples=400)
@given(data=st.data())
def test_round_trip(data: st.DataObject, option_st: st.SearchStrategy[MptcpOption]) -> None:
    option = data.draw(option_st)
    wire = option.encode()
    assert wire[0] == 30 and wire[1] == len(wire) == option.length
    assert decode_option(wire) == (option, len(wire))
    assert type(option).decode(wire) == option
    assert describe(option).startswith(type(option).__name__)


@given(data=st.data())
def test_sequence_round_trip(data: st.DataObject,
                             option_st: st.SearchStrategy[MptcpOption]) -> None:
    options = data.draw(st.lists(option_st, max_size=6))
    wire = b"".join(o.encode() for o in options)
    if len(wire) > 255:
        with pytest.raises(OptionsTooLongError):
            encode_options(options)
    else:
        assert encode_options(options) == wire
    assert decode_options(wire) == options
    offsets = option_offsets(options)
    for o, off in zip(options, offsets, strict=True):
        assert decode_option(wire, off)[0] == o


@settings(max_examples=200)
@given(data=st.data())
def test_every_truncation_is_typed(data: st.DataObject,
                                   option_st: st.SearchStrategy[MptcpOption]) -> None:
    option = data.draw(option_st)
    wire = option.encode()
    for n in range(1, len(wire)):
        with pytest.raises(OptionTruncatedError):
            decode_options(wire[:n])
        with pytest.raises(OptionTruncatedError):
            type(option).decode(wire[:n])
    # a truncated option after a complete one is still caught
    with pytest.raises(OptionTruncatedError):
        decode_options(wire + wire[:-1])


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_typed_error(data: bytes) -> None:
    """Anything decodes losslessly or raises an OptionError; nothing else escapes."""
    try:
        options = decode_options(data)
    except OptionError:
        return
    assert b"".join(o.encode() for o in options) == data


@settings(max_examples=500)
@given(subtype=st.integers(0, 15), length=st.integers(0, 40), body=st.binary(min_size=40,
                                                                             max_size=40))
def test_structured_fuzz_lossless(subtype: int, length: int, body: bytes) -> None:
    value = bytes([(subtype << 4) | (body[0] & 0x0F)]) + body[1:]
    data = bytes([30, length]) + value[: max(length - 2, 0)]
    try:
        option, end = decode_option(data)
    except OptionError:
        return
    assert end == len(data) and option.encode() == data


# ----------------------------------------------------------------------------- invalid lengths

ALLOWED_LENGTHS = {
    0x0: {4, 12, 20, 22, 24},
    0x1: {12, 16, 24},
    0x4: set(range(4, 41)),
    0x5: {3},
    0x6: {12},
    0x7: {12},
    0x8: {4},
}


@pytest.mark.parametrize("subtype", sorted(ALLOWED_LENGTHS))
@pytest.mark.parametrize("length", range(0, 41))
def test_invalid_lengths(subtype: int, length: int) -> None:
    value = bytes([(subtype << 4) | (1 if subtype == 0 else 0)]) + bytes(40)
    data = bytes([30, length]) + value[: max(length - 2, 0)]
    if length in ALLOWED_LENGTHS[subtype]:
        _, end = decode_option(data)
        assert end == length
        return
    with pytest.raises(OptionLengthError if length >= 2 else (OptionLengthError,
                                                               OptionTruncatedError)):
        decode_option(data)


def _dss_flag_sets() -> list[int]:
    out = []
    for f in range(32):
        a_ok = not (f & 0x02) or f & 0x01
        m_ok = not (f & 0x08) or f & 0x04
        fin_ok = not (f & 0x10) or f & 0x04
        if a_ok and m_ok and fin_ok:
            out.append(f)
    return out


@pytest.mark.parametrize("flags", _dss_flag_sets())
def test_dss_lengths(flags: int) -> None:
    allowed = set(Dss.expected_lengths(flags))
    for length in range(3, 41):
        data = bytes([30, length, 0x20, flags]) + bytes(length - 4 if length > 4 else 0)
        data = data[:length]
        if length in allowed:
            assert decode_option(data)[0].encode() == data
        else:
            with pytest.raises(OptionLengthError):
                decode_option(data)


@pytest.mark.parametrize(("flags", "why"), [(0x02, "a without A"), (0x08, "m without M"),
                                            (0x10, "F without M"), (0x13, "F with A only"),
                                            (0x0B, "m with A only")])
def test_dss_invalid_flags(flags: int, why: str) -> None:
    data = bytes([30, 28, 0x20, flags]) + bytes(24)
    with pytest.raises(OptionFlagsError):
        decode_option(data)


@pytest.mark.parametrize("length", [8, 10, 16, 18, 20, 22, 28, 30])
@pytest.mark.parametrize("echo", [0, 1])
def test_add_addr_echo_flag_must_match_hmac(length: int, echo: int) -> None:
    data = bytes([30, length, 0x30 | echo, 1]) + bytes(length - 4)
    has_hmac = length in (16, 18, 28, 30)
    if bool(echo) != has_hmac:
        option = decode_option(data)[0]
        assert isinstance(option, AddAddr) and option.echo == bool(echo)
        assert (option.hmac is not None) == has_hmac
        assert option.address.version == (4 if length < 20 else 6)
        assert (option.port is not None) == (length in (10, 18, 22, 30))
    else:
        with pytest.raises(OptionFlagsError):
            decode_option(data)


@pytest.mark.parametrize("length", [n for n in range(3, 41) if n not in
                                    (8, 10, 16, 18, 20, 22, 28, 30)])
def test_add_addr_invalid_lengths(length: int) -> None:
    data = bytes([30, length, 0x30, 1]) + bytes(40)
    with pytest.raises(OptionLengthError):
        decode_option(data[:length])


@pytest.mark.parametrize("length", [n for n in range(3, 41) if n != 8])
def test_mps_subflow_invalid_lengths(length: int) -> None:
    data = (bytes([30, length, 0xF0]) + bytes(40))[:length]
    with pytest.raises(OptionLengthError):
        decode_option(data)


@pytest.mark.parametrize("length", [n for n in range(3, 41) if n != 12])
def test_mps_window_invalid_lengths(length: int) -> None:
    data = (bytes([30, length, 0xF1]) + bytes(40))[:length]
    with pytest.raises(OptionLengthError):
        decode_option(data)


@pytest.mark.parametrize("subtype", range(9, 15))
def test_unknown_subtypes(subtype: int) -> None:
    with pytest.raises(UnknownOptionError):
        decode_option(bytes([30, 4, subtype << 4, 0]))


def test_unknown_kind_and_experimental_type() -> None:
    with pytest.raises(UnknownOptionError):
        decode_options(bytes([2, 4, 5, 0xB4]))  # an MSS option is not MPTCP
    with pytest.raises(UnknownOptionError):
        decode_options(b"\x01")  # NOP padding is not allowed in a record's option area
    with pytest.raises(UnknownOptionError):
        decode_option(bytes([30, 8, 0xF2, 0, 0, 0, 0, 1]))


def test_decode_with_wrong_class_or_trailing_bytes() -> None:
    wire = MpPrio().encode()
    with pytest.raises(UnknownOptionError):
        Dss.decode(wire)
    with pytest.raises(OptionLengthError):
        MpPrio.decode(wire + b"\x00")


# ----------------------------------------------------------------------------- construction

@pytest.mark.parametrize("make", [
    lambda: MpCapable(version=16),
    lambda: MpCapable(reserved=16),
    lambda: MpCapable(receiver_key=1),
    lambda: MpCapable(sender_key=1, data_len=5),
    lambda: MpCapable(sender_key=1, receiver_key=2, checksum=5),
    lambda: MpCapable(sender_key=1 << 64),
    lambda: MpJoinSyn(address_id=256, token=0, nonce=0),
    lambda: MpJoinSyn(address_id=0, token=1 << 32, nonce=0),
    lambda: MpJoinSyn(address_id=0, token=0, nonce=-1),
    lambda: MpJoinSynAck(address_id=0, hmac=b"short", nonce=0),
    lambda: MpJoinAck(hmac=bytes(32)),
    lambda: MpJoinAck(hmac=bytes(20), reserved=1 << 12),
    lambda: Dss(data_ack=1 << 32, data_ack_wide=False),
    lambda: Dss(dsn=1 << 64),
    lambda: Dss(ssn=1),
    lambda: Dss(data_len=1),
    lambda: Dss(checksum=1),
    lambda: Dss(dsn=0, data_len=1 << 16),
    lambda: Dss(reserved=128),
    lambda: AddAddr(0, "not an address", echo=True),
    lambda: AddAddr(0, "10.0.0.1", port=1 << 16, echo=True),
    lambda: AddAddr(0, "10.0.0.1", hmac=bytes(7)),
    lambda: RemoveAddr(()),
    lambda: RemoveAddr(tuple(range(253))),
    lambda: RemoveAddr((256,)),
    lambda: MpPrio(reserved=8),
    lambda: MpFail(dsn=-1),
    lambda: MpFastclose(receiver_key=1 << 64),
    lambda: MpTcpRst(reason=256),
    lambda: MpTcpRst(reason=True),  # bools are refused where integers are meant
    lambda: MpsSubflow(subflow_id=1 << 32),
    lambda: MpsWindow(edge=1 << 64),
    lambda: MpsWindow(edge=0, reserved=256),
])
def test_out_of_range_values(make: object) -> None:
    with pytest.raises(OptionValueError):
        make()  # type: ignore[operator]


@pytest.mark.parametrize("make", [
    lambda: Dss(data_fin=True),
    lambda: AddAddr(0, "10.0.0.1"),
    lambda: AddAddr(0, "10.0.0.1", hmac=bytes(8), echo=True),
])
def test_invalid_flag_combinations_at_construction(make: object) -> None:
    with pytest.raises(OptionFlagsError):
        make()  # type: ignore[operator]


def test_errors_are_wire_and_value_errors() -> None:
    for exc in (OptionTruncatedError, OptionLengthError, OptionFlagsError, OptionValueError,
                UnknownOptionError, OptionsTooLongError):
        assert issubclass(exc, WireError) and issubclass(exc, ValueError)


def test_options_area_limit() -> None:
    ids = RemoveAddr(tuple(range(252)))
    assert ids.length == 255
    assert encode_options([ids]) == ids.encode()
    with pytest.raises(OptionsTooLongError):
        encode_options([ids, MpPrio()])


def test_mp_capable_forms() -> None:
    assert [MpCapable(**kw).form for kw in (
        {}, {"sender_key": 1}, {"sender_key": 1, "receiver_key": 2},
        {"sender_key": 1, "receiver_key": 2, "data_len": 3})] == ["syn", "synack", "ack",
                                                                   "ack+data"]

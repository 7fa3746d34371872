"""scapy integration: TCP dissects kind-30 options into the MPTCP layers, and builds them back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import IP, TCP

from mptcpsec.wire import scapy_layers as sl
from mptcpsec.wire.options import AddAddr, Dss, MptcpOption, MpTcpRst, TcpRstReason


@settings(max_examples=300)
@given(data=st.data())
def test_every_option_through_scapy_tcp(data: st.DataObject,
                                        option_st: st.SearchStrategy[MptcpOption]) -> None:
    option = data.draw(option_st)
    wire = option.encode()
    layer = sl.to_scapy(option)
    assert not isinstance(layer, sl.MPTCP_Unknown)
    assert bytes(layer) == wire[2:]
    assert sl.from_scapy(layer) == option
    # a layer built from its field values alone gives the same bytes
    assert bytes(type(layer)(**layer.fields)) == wire[2:]
    if len(wire) > 40:
        return  # does not fit a TCP header
    tcp = TCP(sport=1, dport=2, options=[("NOP", None), ("MPTCP", layer)])
    raw = bytes(tcp)
    assert raw[20:21] == b"\x01" and raw[21:21 + len(wire)] == wire
    parsed = TCP(raw)
    (got,) = sl.mptcp_options(parsed)
    assert type(got) is type(layer) and bytes(got) == wire[2:]
    assert sl.from_scapy(got) == option


def test_fields_by_name() -> None:
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(options=[
        ("MPTCP", sl.MPTCP_DSS(flags="AaMmF", data_ack=2**64 - 1, dsn=2**63, ssn=0,
                               data_len=1)),
    ]))
    (dss,) = sl.mptcp_options(IP(raw)[TCP])
    assert (dss.data_ack, dss.dsn, dss.data_len) == (2**64 - 1, 2**63, 1)
    assert "F" in str(dss.flags) and dss.checksum is None
    assert sl.from_scapy(dss) == Dss(data_ack=2**64 - 1, dsn=2**63, data_len=1, data_fin=True)

    tcp = TCP(bytes(TCP(options=[
        ("MPTCP", sl.MPTCP_ADD_ADDR(address_id=3, address="192.0.2.7", port=8443,
                                    hmac=b"ABCDEFGH")),
        ("MPTCP", sl.MPTCP_TCPRST(flags="T", reason=TcpRstReason.MIDDLEBOX_INTERFERENCE)),
    ])))
    add, rst = sl.mptcp_options(tcp)
    assert (add.address_id, add.address, add.port, add.hmac) == (3, "192.0.2.7", 8443,
                                                                  b"ABCDEFGH")
    assert sl.from_scapy(add) == AddAddr(3, "192.0.2.7", 8443, b"ABCDEFGH")
    assert rst.reason == 6 and "T" in str(rst.flags)
    assert sl.from_scapy(rst) == MpTcpRst(6, transient=True)

    v6 = sl.MPTCP_ADD_ADDR(address_id=1, address="2001:db8::5", echo=1)
    assert sl.from_scapy(v6) == AddAddr(1, "2001:db8::5", echo=True)


def test_join_forms_by_length() -> None:
    assert sl.layer_for(bytes([0x10, 1]) + bytes(8)) is sl.MPTCP_JOIN_SYN
    assert sl.layer_for(bytes([0x10, 1]) + bytes(12)) is sl.MPTCP_JOIN_SYNACK
    assert sl.layer_for(bytes([0x10, 0]) + bytes(20)) is sl.MPTCP_JOIN_ACK
    assert sl.layer_for(bytes([0x10, 0]) + bytes(5)) is sl.MPTCP_Unknown
    assert sl.layer_for(bytes([0x90, 0])) is sl.MPTCP_Unknown
    assert sl.layer_for(b"") is sl.MPTCP_Unknown


def test_register_is_reversible() -> None:
    raw = bytes(TCP(options=[("MPTCP", sl.MPTCP_PRIO(backup=1))]))
    assert isinstance(TCP(raw).options[0][1], sl.MPTCP_PRIO)
    sl.unregister()
    try:
        assert not sl.registered()
        assert TCP(raw).options[0] == (30, b"\x51")  # scapy's own behaviour: raw bytes
    finally:
        sl.register()
    sl.register()  # idempotent
    assert sl.registered() and isinstance(TCP(raw).options[0][1], sl.MPTCP_PRIO)


@pytest.mark.parametrize("value", [b"\x20", b"\x20\x01\x00", b"\x30\x01\x0a"])
def test_malformed_values_do_not_crash(value: bytes) -> None:
    raw = bytes(TCP(options=[(30, value)]))
    TCP(raw).summary()

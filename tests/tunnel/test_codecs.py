"""Sans-I/O parts of the converter: CONNECT request/status, SOCKS5 negotiation, --allow."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, strategies as st

from mptcpsec.crypto.keyschedule import Secret
from mptcpsec.crypto.psk import PskError, PskTable, PskTooShortError
from mptcpsec.tunnel.clients import ClientsFileError, parse_psk_clients
from mptcpsec.tunnel.policy import Policy, PolicyError, parse_allow
from mptcpsec.tunnel.request import (
    MAX_REQUEST_LEN,
    ConnectRequest,
    RequestError,
    Status,
    encode_request,
    encode_status,
    parse_request,
    parse_status,
)
from mptcpsec.tunnel.socks5 import STATUS_TO_REPLY, Reply, Socks5Server

# ------------------------------------------------------------------ CONNECT request


@pytest.mark.parametrize("host,wire", [
    ("192.0.2.7", b"\x01\x01\x01\xc0\x00\x02\x07\x00\x50"),
    ("2001:db8::1", b"\x01\x01\x04" + bytes.fromhex("20010db8" + "00" * 11 + "01") + b"\0\x50"),
    ("example.test", b"\x01\x01\x03\x0cexample.test\x00\x50"),
])
def test_request_wire_format(host: str, wire: bytes) -> None:
    req = ConnectRequest(host, 80)
    assert encode_request(req) == wire
    assert parse_request(wire + b"early data") == (req, len(wire))


def test_request_fed_byte_by_byte_waits_then_parses() -> None:
    wire = encode_request(ConnectRequest("example.test", 443))
    for i in range(len(wire)):
        assert parse_request(wire[:i]) is None
    assert parse_request(wire) == (ConnectRequest("example.test", 443), len(wire))


@pytest.mark.parametrize("bad", [
    b"\x02", b"\x01\x02", b"\x01\x01\x02\x00", b"\x01\x01\x03\x00\x00\x50",
    b"\x01\x01\x01\xc0\x00\x02\x07\x00\x00", b"\x01\x01\x03\x03a b\x00\x50",
    b"\x01\x01\x03\x02\xff\xfe\x00\x50",
])
def test_bad_requests_are_typed_errors(bad: bytes) -> None:
    with pytest.raises(RequestError):
        parse_request(bad)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_fail_cleanly_and_bounded(data: bytes) -> None:
    try:
        out = parse_request(data)
    except RequestError:
        return
    if out is None:
        assert len(data) < MAX_REQUEST_LEN
    else:
        assert out[1] <= MAX_REQUEST_LEN


def test_status_round_trip_and_errors() -> None:
    for s in Status:
        assert parse_status(encode_status(s)) is s
    with pytest.raises(RequestError):
        parse_status(b"\x02\x00")
    with pytest.raises(RequestError):
        parse_status(b"\x01\xee")
    with pytest.raises(RequestError):
        encode_request(ConnectRequest("x" * 256, 80))


# ------------------------------------------------------------------ SOCKS5

def _connect(atyp: int, addr: bytes, port: int = 80, cmd: int = 1) -> bytes:
    return bytes([5, cmd, 0, atyp]) + addr + struct.pack("!H", port)


def test_socks5_no_auth_connect_with_a_name_byte_by_byte() -> None:
    s = Socks5Server()
    msgs = b"\x05\x01\x00" + _connect(3, b"\x0bexample.com", 443) + b"GET"
    sent = b""
    req = None
    for b in msgs:
        step = s.receive(bytes([b]))
        assert not step.close
        sent += step.send
        req = req or step.request
    assert sent == b"\x05\x00"
    assert req == ConnectRequest("example.com", 443)
    assert s.leftover() == b"GET"
    assert s.reply(Status.SUCCESS)[:2] == b"\x05\x00"


@pytest.mark.parametrize("atyp,addr,host", [
    (1, bytes([192, 0, 2, 1]), "192.0.2.1"),
    (4, bytes.fromhex("20010db8000000000000000000000001"), "2001:db8::1"),
])
def test_socks5_ip_literals(atyp: int, addr: bytes, host: str) -> None:
    s = Socks5Server()
    step = s.receive(b"\x05\x01\x00" + _connect(atyp, addr))
    assert step.send == b"\x05\x00" and step.request == ConnectRequest(host, 80)


def test_socks5_username_password() -> None:
    s = Socks5Server({"alice": "pw"})
    step = s.receive(b"\x05\x02\x00\x02")
    assert step.send == b"\x05\x02"
    step = s.receive(b"\x01\x05alice\x02pw" + _connect(1, bytes(4)))
    assert step.send == b"\x01\x00" and step.request is not None and step.user == "alice"
    bad = Socks5Server({"alice": "pw"})
    bad.receive(b"\x05\x01\x02")
    step = bad.receive(b"\x01\x05alice\x02no")
    assert step.close and step.send == b"\x01\x01"
    noauth = Socks5Server({"alice": "pw"}).receive(b"\x05\x01\x00")
    assert noauth.close and noauth.send == b"\x05\xff"


@pytest.mark.parametrize("cmd", [2, 3])
def test_bind_and_udp_associate_are_not_supported(cmd: int) -> None:
    step = Socks5Server().receive(b"\x05\x01\x00" + _connect(1, bytes(4), cmd=cmd))
    assert step.close and step.send[2:4] == bytes([5, Reply.COMMAND_NOT_SUPPORTED])


def test_socks4_and_garbage_are_answered_and_closed() -> None:
    step = Socks5Server().receive(b"\x04\x01\x00\x50\x7f\x00\x00\x01user\x00")
    assert step.close and step.send == bytes([0, 91]) + bytes(6)
    step = Socks5Server().receive(b"GET / HTTP/1.1\r\n")
    assert step.close and step.send == b""
    step = Socks5Server().receive(b"\x05\x01\x00" + bytes([5, 1, 0, 9]) + b"xxxxxx")
    assert step.close and step.send.endswith(bytes([5, Reply.ADDRESS_TYPE_NOT_SUPPORTED]) +
                                             step.send[4:])


@given(st.binary(max_size=600))
def test_socks5_any_input_never_crashes(data: bytes) -> None:
    s = Socks5Server()
    for i in range(0, len(data), 7):
        step = s.receive(data[i:i + 7])
        if step.close or step.request:
            break


def test_every_status_has_a_socks_reply() -> None:
    assert set(STATUS_TO_REPLY) == set(Status)
    assert STATUS_TO_REPLY[Status.CONNECTION_REFUSED] is Reply.CONNECTION_REFUSED
    assert STATUS_TO_REPLY[Status.NOT_ALLOWED] is Reply.NOT_ALLOWED
    assert STATUS_TO_REPLY[Status.DNS_FAILURE] is Reply.HOST_UNREACHABLE


# ------------------------------------------------------------------ policy and clients

def test_allow_rules() -> None:
    p = Policy.from_texts(["192.0.2.0/24:80,443", "[2001:db8::/32]:1000-2000", "127.0.0.1"])
    assert p.allows("192.0.2.9", 443) and not p.allows("192.0.2.9", 22)
    assert not p.allows("198.51.100.1", 80)
    assert p.allows("2001:db8::5", 1500) and not p.allows("2001:db8::5", 2001)
    assert p.allows("127.0.0.1", 1) and p.allows("::ffff:127.0.0.1", 65535)
    assert p.filter(["198.51.100.1", "192.0.2.1"], 80) == ["192.0.2.1"]
    assert str(parse_allow("192.0.2.0/24:80")) == "192.0.2.0/24:80"
    for bad in ("nonsense", "192.0.2.0/24:0", "192.0.2.0/24:90-80", "[2001:db8::/32]x"):
        with pytest.raises(PolicyError):
            parse_allow(bad)


def test_psk_clients_file() -> None:
    table = parse_psk_clients(f"# comment\nlaptop {'ab' * 32}\n\nphone base64:{'A' * 44}\n")
    assert set(table.identities) == {b"laptop", b"phone"}
    for bad in ("laptop", f"a {'ab' * 32}\na {'cd' * 32}", "", f"x {'ab' * 4}"):
        with pytest.raises(ClientsFileError):
            parse_psk_clients(bad)
    with pytest.raises(PskTooShortError):
        PskTable({b"x": Secret(b"short")})
    with pytest.raises(PskError):
        PskTable({b"": Secret(bytes(32))})

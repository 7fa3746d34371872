"""The packet-level attacker's decisions on synthetic packets (no root needed)."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

scapy_inet = pytest.importorskip("scapy.layers.inet")
IP, TCP = scapy_inet.IP, scapy_inet.TCP
from scapy.packet import Raw  # noqa: E402

from mptcpsec.lab.net.attacker import (  # noqa: E402
    ATTACKER_ADDR,
    AttackConfig,
    Attacker,
    _Head,
    add_addr_hmac,
)
from mptcpsec.lab.net.topology import PathSpec  # noqa: E402

CLI, SRV = "192.0.2.17", "203.0.113.1"
KEY_C, KEY_S = bytes(range(1, 9)), bytes(range(11, 19))


def seg(src, dst, sport, dport, seq, ack, flags="A", payload=b"", opts=()):
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (1000, 900)), *opts]
    p = IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags,
                                   options=opts)
    if payload:
        p = p / Raw(payload)
    return bytes(p)


def handshake(att: Attacker) -> None:
    """SYN, SYN/ACK, third ACK with both keys, as kernel MPTCP v1 sends them."""
    att.handle(seg(CLI, SRV, 40000, 7000, 100, 0, "S", opts=[(30, bytes([0x01, 0x81]))]), 0)
    att.handle(seg(SRV, CLI, 7000, 40000, 500, 101, "SA",
                   opts=[(30, bytes([0x01, 0x01]) + KEY_S)]), 0)
    att.handle(seg(CLI, SRV, 40000, 7000, 101, 501, "A",
                   opts=[(30, bytes([0x01, 0x81]) + KEY_C + KEY_S)]), 0)


def dss_data(seq, dsn, payload):
    value = bytes([0x20, 0x0F]) + struct.pack("!QQIH", 7777, dsn, seq - 100, len(payload))
    return seg(CLI, SRV, 40000, 7000, seq, 501, "PA", payload, opts=[(30, value)])


def checksums_ok(raw: bytes) -> bool:
    p = IP(raw)
    again = IP(bytes(p.__class__(raw)))
    del again.chksum
    del again[TCP].chksum
    fresh = IP(bytes(again))
    return fresh.chksum == p.chksum and fresh[TCP].chksum == p[TCP].chksum


def test_bitflip_flips_one_bit_after_the_threshold_and_fixes_checksums():
    att = Attacker(AttackConfig("bitflip", after_bytes=2000))
    handshake(att)
    first = att.handle(dss_data(101, 1, b"a" * 1400), 0)
    assert first.payload is None and not att.changes  # below the threshold
    raw = dss_data(1501, 1401, b"b" * 1400)
    act = att.handle(raw, 0)
    assert act.payload is not None
    old, new = bytes(IP(raw)[TCP].payload), bytes(IP(act.payload)[TCP].payload)
    diff = [i for i in range(len(old)) if old[i] != new[i]]
    assert len(diff) == 1 and bin(old[diff[0]] ^ new[diff[0]]).count("1") == 1
    assert checksums_ok(act.payload)
    assert att.changes[0].packet == 5 and att.changes[0].action == "bitflip"
    # one strike only
    assert att.handle(dss_data(2901, 2801, b"c" * 1400), 0).payload is None


def test_strip_mpc_removes_mp_capable_from_the_syn_only():
    att = Attacker(AttackConfig("strip-mpc"))
    syn = seg(CLI, SRV, 40000, 7000, 100, 0, "S",
              opts=[("MSS", 1460), (30, bytes([0x01, 0x81]))])
    act = att.handle(syn, 0)
    assert act.payload is not None and checksums_ok(act.payload)
    h = _Head.parse(act.payload)
    assert h is not None and h.mptcp == []
    assert att.changes[0].action == "strip-mpc" and att.changes[0].packet == 1


def test_fastclose_carries_the_receivers_key_read_from_mp_capable():
    att = Attacker(AttackConfig("mp-fastclose", after_bytes=1))
    handshake(att)
    act = att.handle(dss_data(101, 1, b"x" * 100), 0)
    assert len(act.inject) == 2
    opts = _Head.parse(act.inject[0]).mptcp
    assert opts == [bytes([0x70, 0]) + KEY_S]
    assert IP(act.inject[1])[TCP].flags.R


def test_add_addr_hmac_is_rfc8684_and_goes_to_the_client():
    att = Attacker(AttackConfig("add-addr", after_bytes=1))
    handshake(att)
    act = att.handle(dss_data(101, 1, b"x" * 100), 0)
    assert not act.inject and len(act.inject_reverse) == 1
    fwd = IP(act.inject_reverse[0])
    assert (fwd.src, fwd.dst) == (SRV, CLI)
    (opt,) = _Head.parse(act.inject_reverse[0]).mptcp
    addr = bytes(int(x) for x in ATTACKER_ADDR.split("."))
    want = hmac.new(KEY_S + KEY_C, bytes([9]) + addr + b"\0\0", hashlib.sha256).digest()[-8:]
    assert opt == bytes([0x30, 9]) + addr + want
    assert add_addr_hmac(KEY_S, KEY_C, 9, ATTACKER_ADDR) == want


def test_data_fin_uses_the_receivers_data_ack():
    att = Attacker(AttackConfig("data-fin", after_bytes=1))
    handshake(att)
    assert not att.handle(dss_data(101, 1000, b"x" * 100), 0).inject  # no DATA_ACK seen yet
    ack_value = bytes([0x20, 0x03]) + struct.pack("!Q", 1100)
    att.handle(seg(SRV, CLI, 7000, 40000, 501, 201, "A", opts=[(30, ack_value)]), 0)
    act = att.handle(dss_data(201, 1100, b"y" * 100), 0)
    (opt,) = _Head.parse(act.inject[0]).mptcp
    assert opt[:2] == bytes([0x20, 0x1F])
    _dack, dsn, ssn, dlen = struct.unpack("!QQIH", opt[2:])
    assert (dsn, ssn, dlen) == (1200, 0, 1)


def test_forgeries_find_nothing_on_plain_tcp():
    att = Attacker(AttackConfig("mp-prio", after_bytes=1))
    att.handle(seg(CLI, SRV, 40000, 7000, 100, 0, "S"), 0)
    act = att.handle(seg(CLI, SRV, 40000, 7000, 101, 1, "PA", b"z" * 50), 0)
    assert not act.inject and not act.inject_reverse and act.payload is None
    assert att.changes[0].action == "nothing"


def test_drop_blackholes_the_path_for_a_while():
    att = Attacker(AttackConfig("drop", after_bytes=1, drop_seconds=1.0))
    assert att.handle(seg(CLI, SRV, 1, 2, 1, 1, "PA", b"q" * 10), 0.0).drop
    assert att.handle(seg(SRV, CLI, 2, 1, 1, 11, "A"), 0.5).drop
    assert not att.handle(seg(SRV, CLI, 2, 1, 1, 11, "A"), 1.5).drop


@pytest.mark.parametrize("text,rate,rtt,loss", [("50:10", 50, 10, 0), ("0:5:1.5", None, 5, 1.5),
                                                ("20", 20, 0, 0)])
def test_path_spec_parse(text, rate, rtt, loss):
    p = PathSpec.parse(text)
    assert (p.rate_mbit, p.rtt_ms, p.loss_pct) == (rate, rtt, loss)


@pytest.mark.parametrize("text", ["", "a:b", "1:2:3:4", "-1:5", "10:5:100"])
def test_path_spec_rejects(text):
    with pytest.raises(ValueError):
        PathSpec.parse(text)

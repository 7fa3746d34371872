"""IPv6/TCP segments of the pcap writer: scapy agrees on every field and the checksum."""

from __future__ import annotations

import io

import pytest
from scapy.layers.inet import TCP
from scapy.layers.inet6 import IPv6

from mptcpsec.wire.pcap import PcapError, PcapWriter, build_ip_tcp, build_ipv6_tcp


def test_ipv6_segment_matches_scapy() -> None:
    opts = bytes([30, 4, 0x20, 0x00])  # an MPTCP option, 4 bytes
    pkt = build_ipv6_tcp(("2001:db8::1", 40000), ("2001:db8::2", 443), 1000, 2000, 0x18,
                         opts, b"record bytes")
    p = IPv6(pkt)
    assert p.src == "2001:db8::1" and p.dst == "2001:db8::2" and p.nh == 6
    assert p.plen == 20 + len(opts) + 12
    tcp = p[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack) == (40000, 443, 1000, 2000)
    assert bytes(tcp.payload) == b"record bytes"
    want = tcp.chksum
    del tcp.chksum
    assert IPv6(bytes(p))[TCP].chksum == want  # scapy recomputes the same checksum


def test_family_follows_the_subflow_and_mixing_is_refused() -> None:
    assert build_ip_tcp(("::1", 1), ("::1", 2), 0, 0, 0x02)[0] >> 4 == 6
    assert build_ip_tcp(("127.0.0.1", 1), ("127.0.0.2", 2), 0, 0, 0x02)[0] >> 4 == 4
    with pytest.raises(PcapError, match="mixes IPv4 and IPv6"):
        build_ip_tcp(("127.0.0.1", 1), ("::1", 2), 0, 0, 0x02)


def test_writer_emits_an_ipv6_conversation() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf)
    w.subflow_open(0, ("2001:db8::1", 5000), ("2001:db8::2", 6000), ts=1.0)
    w.record(0, True, bytes(6 + 16), ts=1.1)
    w.subflow_close(0, ts=1.2)
    assert w.packets == 7  # handshake 3, record 1, FIN exchange 3

"""RFC 8684 token, IDSN and HMAC helpers against independent recomputation and known values."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

import pytest

from mptcpsec.crypto.rfc8684 import (
    add_addr_hmac,
    idsn_from_key,
    join_ack_hmac,
    join_synack_hmac,
    mptcp_hmac,
    token_from_key,
    verify,
)

# The Linux MPTCP crypto self-test treats the ASCII of these strings as two big-endian u64
# keys and two u32 nonces: HMAC-SHA256(key1 || key2, nonce1 || nonce2).
LINUX_VECTORS = [
    (b"0b0b0b0b0b0b0b0b", b"48692054",
     "8385e24fb4235ac37556b6b886db106284a1da671699f46db1f235ec622dcafa"),
    (b"aaaaaaaaaaaaaaaa", b"dddddddd",
     "2c5e219164ff1dca1c4a92318d847bb6b9d44492984e1eb71aff9022f71046e9"),
    (b"0102030405060708", b"cdcdcdcd",
     "e73b9ba9969969cefb04aa0d6df18ec2fcc075b6f23b4d8c4da736a5dbbc6e7d"),
]


@pytest.mark.parametrize("key,msg,expected", LINUX_VECTORS)
def test_mptcp_hmac_known_values(key: bytes, msg: bytes, expected: str) -> None:
    k1, k2 = int.from_bytes(key[:8], "big"), int.from_bytes(key[8:], "big")
    n1, n2 = int.from_bytes(msg[:4], "big"), int.from_bytes(msg[4:], "big")
    assert mptcp_hmac(k1, k2, msg).hex() == expected
    # MP_JOIN third ACK = leftmost 160 bits, SYN/ACK = leftmost 64 bits of the same HMAC
    assert join_ack_hmac(k1, k2, n1, n2).hex() == expected[:40]
    assert join_synack_hmac(k1, k2, n1, n2).hex() == expected[:16]


KEY_A = 0x0123456789ABCDEF
KEY_B = 0xFEDCBA9876543210


def test_token_and_idsn() -> None:
    digest = hashlib.sha256(KEY_A.to_bytes(8, "big")).digest()
    assert token_from_key(KEY_A) == int.from_bytes(digest[:4], "big")
    assert idsn_from_key(KEY_A) == int.from_bytes(digest[-8:], "big")
    assert token_from_key(KEY_A.to_bytes(8, "big")) == token_from_key(KEY_A)
    assert token_from_key(KEY_A) != token_from_key(KEY_B)


def test_join_hmacs_key_order() -> None:
    ra, rb = 0x11223344, 0x55667788
    synack = join_synack_hmac(KEY_B, KEY_A, rb, ra)
    expect = hmac.new(KEY_B.to_bytes(8, "big") + KEY_A.to_bytes(8, "big"),
                      rb.to_bytes(4, "big") + ra.to_bytes(4, "big"), hashlib.sha256).digest()
    assert synack == expect[:8] and len(synack) == 8
    ack = join_ack_hmac(KEY_A, KEY_B, ra, rb)
    assert len(ack) == 20 and ack != synack[:20]
    assert verify(ack, join_ack_hmac(KEY_A, KEY_B, ra, rb))
    assert not verify(ack, join_ack_hmac(KEY_A, KEY_B, ra, rb ^ 1))


@pytest.mark.parametrize("addr,port,msg_tail", [
    ("192.0.2.1", None, ipaddress.ip_address("192.0.2.1").packed + b"\x00\x00"),
    ("192.0.2.1", 8080, ipaddress.ip_address("192.0.2.1").packed + (8080).to_bytes(2, "big")),
    ("2001:db8::1", 443, ipaddress.ip_address("2001:db8::1").packed + (443).to_bytes(2, "big")),
])
def test_add_addr_hmac_is_rightmost_64_bits(addr: str, port: int | None, msg_tail: bytes) -> None:
    full = hmac.new(KEY_A.to_bytes(8, "big") + KEY_B.to_bytes(8, "big"), bytes([5]) + msg_tail,
                    hashlib.sha256).digest()
    assert add_addr_hmac(KEY_A, KEY_B, 5, addr, port) == full[-8:]
    # the receiver recomputes with (sender key, receiver key): swapping fails
    assert add_addr_hmac(KEY_B, KEY_A, 5, addr, port) != full[-8:]


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        token_from_key(1 << 64)
    with pytest.raises(ValueError):
        token_from_key(b"short")
    with pytest.raises(ValueError):
        join_ack_hmac(KEY_A, KEY_B, 1 << 32, 0)
    with pytest.raises(ValueError):
        add_addr_hmac(KEY_A, KEY_B, 256, "10.0.0.1")
    with pytest.raises(ValueError):
        add_addr_hmac(KEY_A, KEY_B, 1, "not an address")

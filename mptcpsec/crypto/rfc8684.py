"""RFC 8684 (MPTCP v1) key-derived values, for the ``plain`` comparison mode and for the
RFC 8684 HMACs that MPTCPsec computes with *secret* 64-bit keys (papers/SPEC.md section 6).

- token = most significant 32 bits of SHA-256(key); IDSN = least significant 64 bits
  (RFC 8684 section 3.1, with the SHA-256 of MPTCP v1).
- MP_JOIN (section 3.2): HMAC-SHA256 with Key = (Key-A || Key-B) style concatenation of the
  two 64-bit keys, message = the two 32-bit random numbers. The SYN/ACK carries the leftmost
  64 bits of the responder's HMAC, the third ACK the leftmost 160 bits of the initiator's.
- ADD_ADDR (section 3.4.1): HMAC with Key = (sender key || receiver key), message =
  Address ID (1 byte) || address (4 or 16 bytes) || port (2 bytes, zero when absent);
  the option carries the rightmost 64 bits.

Keys and random numbers are taken as integers or big-endian bytes, as they appear in options.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct

JOIN_SYNACK_HMAC_LEN = 8
JOIN_ACK_HMAC_LEN = 20
ADD_ADDR_HMAC_LEN = 8


def _key_bytes(key: int | bytes | bytearray) -> bytes:
    if isinstance(key, int):
        if not 0 <= key < 1 << 64:
            raise ValueError("an MPTCP key is a 64-bit unsigned integer")
        return struct.pack("!Q", key)
    if len(key) != 8:
        raise ValueError(f"an MPTCP key is 8 bytes, got {len(key)}")
    return bytes(key)


def _rand_bytes(nonce: int | bytes) -> bytes:
    if isinstance(nonce, int):
        if not 0 <= nonce < 1 << 32:
            raise ValueError("an MP_JOIN random number is a 32-bit unsigned integer")
        return struct.pack("!I", nonce)
    if len(nonce) != 4:
        raise ValueError(f"an MP_JOIN random number is 4 bytes, got {len(nonce)}")
    return bytes(nonce)


def key_digest(key: int | bytes | bytearray) -> bytes:
    return hashlib.sha256(_key_bytes(key)).digest()


def token_from_key(key: int | bytes | bytearray) -> int:
    """The connection token: the most significant 32 bits of SHA-256(key)."""
    return int(struct.unpack_from("!I", key_digest(key), 0)[0])


def idsn_from_key(key: int | bytes | bytearray) -> int:
    """The initial data sequence number: the least significant 64 bits of SHA-256(key)."""
    return int(struct.unpack_from("!Q", key_digest(key), 24)[0])


def mptcp_hmac(key1: int | bytes | bytearray, key2: int | bytes | bytearray, msg: bytes) -> bytes:
    """HMAC-SHA256 with the 16-byte key ``key1 || key2`` (the full 32-byte output)."""
    return hmac.new(_key_bytes(key1) + _key_bytes(key2), msg, hashlib.sha256).digest()


def join_synack_hmac(key_b: int | bytes, key_a: int | bytes, rand_b: int | bytes,
                     rand_a: int | bytes) -> bytes:
    """Truncated HMAC in the responder's MP_JOIN SYN/ACK.

    HMAC(Key=(Key-B || Key-A), Msg=(R-B || R-A)), leftmost 64 bits; B is the responder.
    """
    full = mptcp_hmac(key_b, key_a, _rand_bytes(rand_b) + _rand_bytes(rand_a))
    return full[:JOIN_SYNACK_HMAC_LEN]


def join_ack_hmac(key_a: int | bytes, key_b: int | bytes, rand_a: int | bytes,
                  rand_b: int | bytes) -> bytes:
    """HMAC in the initiator's MP_JOIN third ACK.

    HMAC(Key=(Key-A || Key-B), Msg=(R-A || R-B)), leftmost 160 bits; A is the initiator.
    """
    full = mptcp_hmac(key_a, key_b, _rand_bytes(rand_a) + _rand_bytes(rand_b))
    return full[:JOIN_ACK_HMAC_LEN]


def add_addr_hmac(sender_key: int | bytes, receiver_key: int | bytes, address_id: int,
                  address: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
                  port: int | None = None) -> bytes:
    """Truncated ADD_ADDR HMAC: rightmost 64 bits of
    HMAC(Key=(sender key || receiver key), Msg=(Address ID || address || port)).

    ``port`` None (no port in the option) is hashed as two zero bytes, as the Linux
    implementation does.
    """
    if not 0 <= address_id <= 255:
        raise ValueError("address id is one byte")
    addr = ipaddress.ip_address(address)
    p = 0 if port is None else port
    if not 0 <= p <= 0xFFFF:
        raise ValueError("port is 16 bits")
    msg = bytes([address_id]) + addr.packed + struct.pack("!H", p)
    return mptcp_hmac(sender_key, receiver_key, msg)[-ADD_ADDR_HMAC_LEN:]


def verify(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison of a computed and a received (truncated) HMAC."""
    return hmac.compare_digest(expected, received)

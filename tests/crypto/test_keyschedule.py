"""HKDF against RFC 5869 and RFC 8448 values, and the MPTCPsec key schedule's properties."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mptcpsec.crypto.exporter import TLS13_PREFIX, tls13_derive_secret
from mptcpsec.crypto.keyschedule import (
    KeySchedule,
    Role,
    Secret,
    derive_connection_secret,
    hkdf,
    hkdf_expand,
    hkdf_expand_label,
    hkdf_extract,
    hkdf_label,
    join_mac,
)
from mptcpsec.crypto.rfc8684 import add_addr_hmac, idsn_from_key, token_from_key
from mptcpsec.errors import InvalidKeyError, UnsupportedAlgorithmError

# RFC 5869 appendix A, test cases 1-3 (SHA-256): (ikm, salt, info, L, prk, okm)
RFC5869 = [
    (
        bytes([0x0B] * 22),
        bytes(range(0x00, 0x0D)),
        bytes(range(0xF0, 0xFA)),
        42,
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        "34007208d5b887185865",
    ),
    (
        bytes(range(0x00, 0x50)),
        bytes(range(0x60, 0xB0)),
        bytes(range(0xB0, 0x100)),
        82,
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (
        bytes([0x0B] * 22),
        b"",
        b"",
        42,
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        "9d201395faa4b61a96c8",
    ),
]


@pytest.mark.parametrize("ikm,salt,info,length,prk,okm", RFC5869, ids=["case1", "case2", "case3"])
def test_rfc5869_vectors(ikm: bytes, salt: bytes, info: bytes, length: int, prk: str,
                         okm: str) -> None:
    assert hkdf_extract(salt, ikm).hex() == prk
    assert hkdf_expand(bytes.fromhex(prk), info, length).hex() == okm
    assert hkdf(salt, ikm, info, length).hex() == okm
    # and an independent implementation agrees
    ref = HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info)
    assert ref.derive(ikm).hex() == okm


def test_tls13_label_encoding_and_rfc8448_early_secret() -> None:
    # RFC 8446 HkdfLabel layout: length u16 | label<7..255> | context<0..255>
    assert hkdf_label(b"key", b"", 16, TLS13_PREFIX) == b"\x00\x10\x09tls13 key\x00"
    # RFC 8448 (simple 1-RTT): early secret = Extract(0, 0^32), then "derived"
    early = hkdf_extract(b"", bytes(32))
    assert early.hex() == "33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a"
    derived = tls13_derive_secret(early, b"derived", b"", "sha256")
    assert derived.hex() == "6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba"


def test_expand_label_uses_mptcpsec_prefix() -> None:
    secret = bytes(range(32))
    ours = hkdf_expand_label(secret, b"key", b"", 16)
    manual = hkdf_expand(secret, b"\x00\x10" + bytes([len(b"mptcpsec key")]) + b"mptcpsec key"
                         + b"\x00", 16)
    assert ours == manual
    assert ours != hkdf_expand_label(secret, b"key", b"", 16, prefix=TLS13_PREFIX)


def test_hkdf_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError):
        hkdf_expand(bytes(32), b"", 255 * 32 + 1)
    with pytest.raises(InvalidKeyError):
        hkdf_expand(bytes(16), b"", 16)
    with pytest.raises(ValueError):
        hkdf_label(b"x" * 250, b"", 16)


CS = bytes(range(32))
CN, SN = b"\x01" * 32, b"\x02" * 32


def test_subflow_keys_are_deterministic_and_separated() -> None:
    a = KeySchedule(CS).subflow_keys(0, CN, SN)
    b = KeySchedule(CS).subflow_keys(0, CN, SN)
    assert a.c2s.key == b.c2s.key and a.s2c.iv == b.s2c.iv
    assert a.c2s.key != a.s2c.key and a.c2s.iv != a.s2c.iv
    others = [
        KeySchedule(CS).subflow_keys(1, CN, SN),
        KeySchedule(CS).subflow_keys(0, SN, CN),
        KeySchedule(CS).subflow_keys(0, CN, SN[:-1] + b"\x03"),
        KeySchedule(CS, "aes-256-gcm").subflow_keys(0, CN, SN),
        KeySchedule(bytes(31) + b"\x01").subflow_keys(0, CN, SN),
    ]
    seen = {bytes(a.c2s.key[:16])} | {bytes(k.c2s.key[:16]) for k in others}
    assert len(seen) == 1 + len(others)


def test_schedule_matches_spec_derivation() -> None:
    """Recompute the SPEC section 6 chain by hand with the primitive functions."""
    keys = KeySchedule(CS, "chacha20-poly1305").subflow_keys(7, CN, SN)
    ctx = (7).to_bytes(4, "big") + bytes([32]) + CN + bytes([32]) + SN
    ss = hkdf_expand_label(CS, b"subflow", ctx, 32)
    c_ts = hkdf_expand_label(ss, b"c ap traffic", b"chacha20-poly1305", 32)
    s_ts = hkdf_expand_label(ss, b"s ap traffic", b"chacha20-poly1305", 32)
    assert keys.c2s.key == hkdf_expand_label(c_ts, b"key", b"", 32)
    assert keys.c2s.iv == hkdf_expand_label(c_ts, b"iv", b"", 12)
    assert keys.s2c.key == hkdf_expand_label(s_ts, b"key", b"", 32)
    # key update chain
    nxt = hkdf_expand_label(c_ts, b"traffic upd", b"", 32)
    keys.c2s.update()
    assert keys.c2s.generation == 1
    assert keys.c2s.traffic_secret == nxt
    assert keys.c2s.key == hkdf_expand_label(nxt, b"key", b"", 32)
    assert keys.c2s.iv == hkdf_expand_label(nxt, b"iv", b"", 12)


@pytest.mark.parametrize("alg,length", [("aes-128-gcm", 16), ("AES-256-GCM", 32),
                                        ("chacha20-poly1305", 32)])
def test_keys_fit_the_aead(alg: str, length: int) -> None:
    keys = KeySchedule(CS, alg).subflow_keys(0, CN, SN)
    assert len(keys.c2s.key) == length and len(keys.c2s.iv) == 12
    cipher = ChaCha20Poly1305 if alg.startswith("chacha") else AESGCM
    aead = cipher(bytes(keys.c2s.key))
    ct = aead.encrypt(bytes(keys.c2s.iv), b"data", b"hdr")
    assert aead.decrypt(bytes(keys.c2s.iv), ct, b"hdr") == b"data"


def test_send_and_recv_keys_pair_up() -> None:
    keys = KeySchedule(CS).subflow_keys(0, CN, SN)
    assert keys.send_keys(Role.CLIENT) is keys.recv_keys(Role.SERVER) is keys.c2s
    assert keys.send_keys(Role.SERVER) is keys.recv_keys(Role.CLIENT) is keys.s2c


def test_connection_keys_tokens_and_join_macs() -> None:
    sched = KeySchedule(CS)
    ck = sched.connection
    assert len(ck.client_key64) == 8 and ck.client_key64 != ck.server_key64
    assert ck.client_token == token_from_key(bytes(ck.client_key64))
    assert ck.server_idsn == idsn_from_key(bytes(ck.server_key64))
    assert ck.token(Role.SERVER) == ck.server_token
    mac = join_mac(ck.join_key(Role.CLIENT), Role.CLIENT, ck.server_token, 3, CN, SN)
    assert len(mac) == 32
    assert mac != join_mac(ck.join_key(Role.CLIENT), Role.CLIENT, ck.server_token, 3, CN,
                           b"\x09" * 32)  # fresh server nonce: a replayed MAC fails
    assert mac != join_mac(ck.join_key(Role.SERVER), Role.SERVER, ck.server_token, 3, CN, SN)
    # the 64-bit keys drive the RFC 8684 ADD_ADDR HMAC
    assert len(add_addr_hmac(ck.key64(Role.CLIENT), ck.key64(Role.SERVER), 1, "10.0.0.1")) == 8


def test_early_keys_depend_on_client_nonce_only() -> None:
    a = KeySchedule(CS).early_keys(2, CN)
    b = KeySchedule(CS).early_keys(2, CN)
    c = KeySchedule(CS).early_keys(2, SN)
    assert a.key == b.key and a.key != c.key
    assert a.key != KeySchedule(CS).subflow_keys(2, CN, b"").c2s.key


def test_wipe_zeroes_every_key_and_repr_hides_them() -> None:
    sched = KeySchedule(CS)
    keys = sched.subflow_keys(0, CN, SN)
    early = sched.early_keys(1, CN)
    texts = [repr(sched), str(keys), repr(keys.c2s), repr(sched.connection), repr(early)]
    for buf in (keys.c2s.key, keys.c2s.iv, keys.s2c.traffic_secret, sched.connection.client_key64,
                sched.connection.server_join_key):
        for text in texts:
            assert buf.hex() not in text
            assert buf.hex()[:8] not in text
    sched.close()
    assert sched.wiped and keys.wiped and early.wiped and sched.connection.wiped
    for buf in (keys.c2s.key, keys.c2s.iv, keys.s2c.key, keys.s2c.traffic_secret,
                sched.connection.client_join_key, sched.connection.client_key64):
        assert buf == bytearray(len(buf))
    with pytest.raises(InvalidKeyError):
        sched.subflow_keys(0, CN, SN)


def test_secret_object() -> None:
    s = Secret(b"\xaa" * 32)
    assert "aa" not in repr(s) and "aa" not in str(s)
    assert s == Secret(b"\xaa" * 32) and s != Secret(b"\xab" * 32)
    buf = s.buffer
    s.wipe()
    assert s.wiped and buf == bytearray(32)
    with pytest.raises(InvalidKeyError):
        s.reveal()
    with pytest.raises(TypeError):
        __import__("pickle").dumps(Secret(b"x" * 32))


def test_connection_secret_derivation_is_mode_separated() -> None:
    ikm = b"\x42" * 32
    a = derive_connection_secret("tls", ikm)
    b = derive_connection_secret("psk", ikm)
    assert a != b and len(a) == 32
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    assert a.reveal() == bytes(hkdf_expand_label(prk, b"conn tls", b"", 32))


def test_bad_inputs_are_typed_errors() -> None:
    with pytest.raises(UnsupportedAlgorithmError):
        KeySchedule(CS, "rot13")
    with pytest.raises(InvalidKeyError):
        KeySchedule(b"short")
    with pytest.raises(ValueError):
        KeySchedule(CS).subflow_keys(-1, CN, SN)
    with pytest.raises(ValueError):
        KeySchedule(CS).subflow_keys(0, b"x" * 65, SN)


@pytest.mark.parametrize("backend_name", ["python", "c"])
@pytest.mark.parametrize("alg", ["aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"])
def test_keys_drive_the_record_backends(backend_name: str, alg: str) -> None:
    """What one end seals with its send keys, the other opens with its receive keys."""
    from mptcpsec.crypto.aead import Algorithm
    from mptcpsec.crypto.backend import get_backend

    backend = get_backend(backend_name)
    algorithm = Algorithm.parse(alg)
    client = KeySchedule(CS, algorithm).subflow_keys(0, CN, SN)
    server = KeySchedule(CS, alg).subflow_keys(0, CN, SN)
    for sender, receiver in ((client.send_keys(Role.CLIENT), server.recv_keys(Role.SERVER)),
                             (server.send_keys(Role.SERVER), client.recv_keys(Role.CLIENT))):
        sealer = backend.sealer(algorithm, bytes(sender.key), bytes(sender.iv))
        opener = backend.opener(algorithm, bytes(receiver.key), bytes(receiver.iv))
        for i in range(3):
            body = sealer._seal_at(i, b"hdr", b"record %d" % i)
            assert opener.open(i, b"hdr", body) == b"record %d" % i
        sealer.close()
        opener.close()

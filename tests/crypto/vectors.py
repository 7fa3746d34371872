"""Published AEAD known-answer vectors: RFC 8439 section 2.8.2 and the GCM specification."""

from __future__ import annotations

from dataclasses import dataclass

from mptcpsec.crypto import Algorithm

h = bytes.fromhex


@dataclass(frozen=True)
class Vector:
    name: str
    alg: Algorithm
    key: bytes
    nonce: bytes
    ad: bytes
    plaintext: bytes
    ciphertext: bytes
    tag: bytes


_GCM_P = h(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
)
_GCM_A = h("feedfacedeadbeeffeedfacedeadbeefabaddad2")
_GCM_K = h("feffe9928665731c6d6a8f9467308308")

VECTORS = [
    Vector(
        "rfc8439-2.8.2",
        Algorithm.CHACHA20_POLY1305,
        key=bytes(range(0x80, 0xA0)),
        nonce=h("070000004041424344454647"),
        ad=h("50515253c0c1c2c3c4c5c6c7"),
        plaintext=b"Ladies and Gentlemen of the class of '99: If I could offer you only one "
        b"tip for the future, sunscreen would be it.",
        ciphertext=h(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
            "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
            "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
            "3ff4def08e4b7a9de576d26586cec64b6116"
        ),
        tag=h("1ae10b594f09e26a7e902ecbd0600691"),
    ),
    Vector(
        "gcm-test-case-2",
        Algorithm.AES_128_GCM,
        key=bytes(16),
        nonce=bytes(12),
        ad=b"",
        plaintext=bytes(16),
        ciphertext=h("0388dace60b6a392f328c2b971b2fe78"),
        tag=h("ab6e47d42cec13bdf53a67b21257bddf"),
    ),
    Vector(
        "gcm-test-case-4",
        Algorithm.AES_128_GCM,
        key=_GCM_K,
        nonce=h("cafebabefacedbaddecaf888"),
        ad=_GCM_A,
        plaintext=_GCM_P,
        ciphertext=h(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
            "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
        ),
        tag=h("5bc94fbc3221a5db94fae95ae7121a47"),
    ),
    Vector(
        "gcm-test-case-14",
        Algorithm.AES_256_GCM,
        key=bytes(32),
        nonce=bytes(12),
        ad=b"",
        plaintext=bytes(16),
        ciphertext=h("cea7403d4d606b6e074ec5d3baf39d18"),
        tag=h("d0d1c8a799996bf0265b98b5d48ab919"),
    ),
    Vector(
        "gcm-test-case-16",
        Algorithm.AES_256_GCM,
        key=_GCM_K + _GCM_K,
        nonce=h("cafebabefacedbaddecaf888"),
        ad=_GCM_A,
        plaintext=_GCM_P,
        ciphertext=h(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        ),
        tag=h("76fc6ece0f4e1768cddf8853bb2d551b"),
    ),
]

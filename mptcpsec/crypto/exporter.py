"""The TLS 1.3 exporter (RFC 8446 section 7.5), computed independently of OpenSSL.

OpenSSL computes the same value inside ``SSL_export_keying_material``; having our own lets
tests check that the secret MPTCPsec derives really is the RFC exporter and lets offline
tools recompute it from an ``EXPORTER_SECRET`` key-log line.

    TLS-Exporter(label, context_value, key_length) =
        HKDF-Expand-Label(Derive-Secret(Secret, label, ""),
                          "exporter", Hash(context_value), key_length)

with Derive-Secret(Secret, Label, Messages) =
HKDF-Expand-Label(Secret, Label, Transcript-Hash(Messages), Hash.length), ``Secret`` the
exporter_master_secret, and the "tls13 " label prefix. No context and an empty context give
the same value in TLS 1.3.
"""

from __future__ import annotations

import hashlib

from mptcpsec.crypto.keyschedule import hash_len, hkdf_expand_label, wipe
from mptcpsec.errors import UnsupportedAlgorithmError

TLS13_PREFIX = b"tls13 "
#: The exporter label both ends use to derive the MPTCPsec connection secret.
MPTCPSEC_EXPORTER_LABEL = b"EXPORTER-MPTCPsec"
EXPORTER_LEN = 32


def hash_for_cipher_suite(cipher_name: str) -> str:
    """The HKDF hash of a TLS 1.3 cipher suite (e.g. TLS_AES_256_GCM_SHA384 -> sha384)."""
    name = cipher_name.upper()
    if name.endswith("SHA384"):
        return "sha384"
    if name.endswith("SHA256"):
        return "sha256"
    raise UnsupportedAlgorithmError(f"not a TLS 1.3 cipher suite: {cipher_name!r}")


def tls13_derive_secret(secret: bytes | bytearray, label: bytes, messages: bytes,
                        hash_name: str) -> bytearray:
    transcript = hashlib.new(hash_name, messages).digest()
    return hkdf_expand_label(secret, label, transcript, hash_len(hash_name), hash_name,
                             prefix=TLS13_PREFIX)


def tls13_export(exporter_master_secret: bytes | bytearray, label: bytes, context: bytes | None,
                 length: int, hash_name: str = "sha256") -> bytearray:
    """RFC 8446 section 7.5 TLS-Exporter(label, context, length)."""
    if len(exporter_master_secret) != hash_len(hash_name):
        raise ValueError(
            f"exporter_master_secret must be {hash_len(hash_name)} bytes for {hash_name}")
    derived = tls13_derive_secret(exporter_master_secret, label, b"", hash_name)
    try:
        ctx_hash = hashlib.new(hash_name, context or b"").digest()
        return hkdf_expand_label(derived, b"exporter", ctx_hash, length, hash_name,
                                 prefix=TLS13_PREFIX)
    finally:
        wipe(derived)

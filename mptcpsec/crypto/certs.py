"""Certificates for ``tls`` mode demos and tests, made with ``cryptography``.

A self-signed certificate (pin its fingerprint), or a small CA that issues server and client
certificates (verify with the CA certificate); and the loaders that give PEM bytes to an
OpenSSL context. Nothing here touches a file: private keys stay in memory, and ``repr``
never shows them.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto

DEFAULT_NAMES = ("localhost", "127.0.0.1", "127.0.0.2", "::1")


@dataclass(frozen=True, repr=False)
class CertificateBundle:
    """A PEM certificate and its PEM (PKCS#8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate, lowercase hex (what ``--pin`` takes)."""
        return fingerprint_sha256(self.cert_pem)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def __repr__(self) -> str:
        return f"CertificateBundle(fingerprint={self.fingerprint}, key=<hidden>)"


def fingerprint_sha256(cert: bytes | x509.Certificate) -> str:
    """SHA-256 fingerprint of a certificate given as PEM, DER or object, lowercase hex."""
    if isinstance(cert, x509.Certificate):
        der = cert.public_bytes(serialization.Encoding.DER)
    elif cert.lstrip().startswith(b"-----BEGIN"):
        der = x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    else:
        der = bytes(cert)
    return hashlib.sha256(der).hexdigest()


def parse_fingerprint(value: str | bytes) -> bytes:
    """Accept ``ab:cd:..``, ``abcd..`` or ``sha256:abcd..`` (or 32 raw bytes); return 32 bytes."""
    if isinstance(value, bytes) and len(value) == 32:
        return value
    text = value.decode() if isinstance(value, bytes) else value
    text = text.strip().lower()
    if text.startswith("sha256:"):
        text = text[7:]
    text = text.replace(":", "").replace(" ", "")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"not a hex SHA-256 fingerprint: {value!r}") from None
    if len(raw) != 32:
        raise ValueError(f"a SHA-256 fingerprint is 32 bytes, got {len(raw)}")
    return raw


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _bundle(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertificateBundle:
    return CertificateBundle(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days)))


def generate_self_signed(common_name: str = "localhost",
                         names: Sequence[str] = DEFAULT_NAMES,
                         days: int = 30) -> CertificateBundle:
    """A self-signed ECDSA P-256 certificate valid for ``names`` (DNS names or IPs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(common_name), _name(common_name), key.public_key(), days)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return _bundle(cert, key)


def generate_ca(common_name: str = "mptcpsec test CA", days: int = 30) -> CertificateBundle:
    """A CA certificate that can issue server and client certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(common_name), _name(common_name), key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return _bundle(cert, key)


def issue_certificate(ca: CertificateBundle, common_name: str = "localhost",
                      names: Sequence[str] = DEFAULT_NAMES, days: int = 30,
                      client: bool = False) -> CertificateBundle:
    """A leaf certificate signed by ``ca`` (server auth, or client auth when ``client``)."""
    ca_cert = ca.certificate
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (_builder(_name(common_name), ca_cert.subject, key.public_key(), days)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _bundle(cert, key)


def hostname_matches(cert: x509.Certificate, name: str) -> bool:
    """RFC 6125-style check of ``name`` against the certificate's subjectAltName.

    IP addresses match IP entries exactly; DNS names match case-insensitively, with a
    wildcard allowed only as the whole leftmost label. The subject CN is not consulted.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None:
        return ip in san.get_values_for_type(x509.IPAddress)
    want = name.lower().rstrip(".").split(".")
    for pattern in san.get_values_for_type(x509.DNSName):
        labels = pattern.lower().rstrip(".").split(".")
        if len(labels) != len(want):
            continue
        if labels[0] == "*" and len(labels) > 2:
            if labels[1:] == want[1:]:
                return True
        elif labels == want:
            return True
    return False


# --------------------------------------------------------------------------- loaders
# Certificates and keys reach the TLS code as bytes: the caller (CLI, adapter, a program)
# reads the files, so crypto/ and protocol/ never open one (papers/SPEC.md section 7.2).


def load_certificate_chain(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in PEM ``pem``, leaf first; ValueError if there is none."""
    certs = x509.load_pem_x509_certificates(bytes(pem))
    if not certs:
        raise ValueError("no certificate in PEM data")
    return certs


def load_private_key(pem: bytes) -> PrivateKeyTypes:
    """An unencrypted PEM private key (PKCS#8 or traditional)."""
    return serialization.load_pem_private_key(bytes(pem), password=None)


def use_certificate(ctx: SSL.Context, cert_pem: bytes, key_pem: bytes) -> None:
    """Make ``ctx`` present ``cert_pem`` (leaf, then any intermediates) with ``key_pem``."""
    leaf, *chain = load_certificate_chain(cert_pem)
    ctx.use_certificate(leaf)
    for extra in chain:
        ctx.add_extra_chain_cert(crypto.X509.from_cryptography(extra))
    key = load_private_key(key_pem)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey,
                            ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey,
                            dsa.DSAPrivateKey)):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    ctx.use_privatekey(key)
    ctx.check_privatekey()


def add_trusted_certificates(ctx: SSL.Context, ca_pem: bytes) -> int:
    """Trust every certificate in ``ca_pem`` for peer verification; how many were added."""
    store = ctx.get_cert_store()
    if store is None:
        raise ValueError("no certificate store")
    certs = load_certificate_chain(ca_pem)
    for cert in certs:
        store.add_cert(crypto.X509.from_cryptography(cert))
    return len(certs)

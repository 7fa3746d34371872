"""``tls`` mode: the RFC 8446 exporter against OpenSSL, and real handshakes on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mptcpsec.aio.kx import read_handshake_message
from mptcpsec.crypto.certs import CertificateBundle, generate_self_signed, issue_certificate
from mptcpsec.crypto.exporter import (
    EXPORTER_LEN,
    MPTCPSEC_EXPORTER_LABEL,
    hash_for_cipher_suite,
    tls13_export,
)
from mptcpsec.crypto.keyschedule import Role, derive_connection_secret
from mptcpsec.crypto.tls_keys import TlsConfig, TlsKeyExchange
from mptcpsec.errors import KeyExchangeError


def server_kx(bundle: CertificateBundle, **kw: Any) -> TlsKeyExchange:
    return TlsKeyExchange(TlsConfig(Role.SERVER, cert_pem=bundle.cert_pem, key_pem=bundle.key_pem,
                                    **kw))


def client_kx(**kw: Any) -> TlsKeyExchange:
    return TlsKeyExchange(TlsConfig(Role.CLIENT, **kw))


@pytest.mark.parametrize("suite", ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                   "TLS_CHACHA20_POLY1305_SHA256"])
def test_exporter_matches_openssl(kx: Any, self_signed: CertificateBundle, suite: str) -> None:
    s = server_kx(self_signed, capture_exporter_secret=True, ciphersuites=suite)
    c = client_kx(pin_sha256=self_signed.fingerprint, capture_exporter_secret=True)
    cres, sres = kx.pump_in_memory(c, s)
    assert cres is not None and sres is not None, (cres, sres)
    assert c.cipher_name == suite
    hash_name = hash_for_cipher_suite(suite)
    ems = c.exporter_master_secret
    assert ems is not None and ems == s.exporter_master_secret
    for label, ctx in [(MPTCPSEC_EXPORTER_LABEL, None), (b"EXPORTER-other", b"some context"),
                       (MPTCPSEC_EXPORTER_LABEL, b"")]:
        ours = tls13_export(ems, label, ctx, EXPORTER_LEN, hash_name)
        assert bytes(ours) == c.export(label, EXPORTER_LEN, ctx) == s.export(label, EXPORTER_LEN,
                                                                              ctx)
    exported = tls13_export(ems, MPTCPSEC_EXPORTER_LABEL, b"", EXPORTER_LEN, hash_name)
    assert derive_connection_secret("tls", exported) == cres.connection_secret
    assert cres.connection_secret == sres.connection_secret
    assert cres.client_nonce == sres.client_nonce and cres.server_nonce == sres.server_nonce
    assert cres.peer_identity == self_signed.fingerprint
    c.close()
    s.close()
    assert ems == bytearray(len(ems))


async def tls_over_sockets(kx: Any, client: TlsKeyExchange, server: TlsKeyExchange
                           ) -> tuple[Any, Any]:
    paths = await kx.open_paths(1)
    try:
        return await kx.run_pair(client, server, paths)
    finally:
        await paths.close()


def test_pinned_handshake_over_sockets(kx: Any, self_signed: CertificateBundle) -> None:
    c, s = kx.run(tls_over_sockets(kx, client_kx(pin_sha256=self_signed.fingerprint),
                                   server_kx(self_signed)))
    assert not isinstance(c, BaseException) and not isinstance(s, BaseException), (c, s)
    assert c.connection_secret == s.connection_secret
    assert c.connection_id == s.connection_id and len(c.connection_id) == 32
    ck = c.schedule().subflow_keys(0, c.client_nonce, c.server_nonce)
    sk = s.schedule().subflow_keys(0, s.client_nonce, s.server_nonce)
    assert ck.c2s.key == sk.c2s.key and ck.s2c.iv == sk.s2c.iv


def test_wrong_pin_fails_clearly_at_both_ends(kx: Any, self_signed: CertificateBundle,
                                              other_self_signed: CertificateBundle) -> None:
    c, s = kx.run(tls_over_sockets(kx, client_kx(pin_sha256=other_self_signed.fingerprint),
                                   server_kx(self_signed)))
    assert isinstance(c, KeyExchangeError)
    assert "pinned server certificate fingerprint mismatch" in str(c)
    assert self_signed.fingerprint in str(c)
    assert isinstance(s, KeyExchangeError) and "peer aborted" in str(s)


def test_ca_verification(kx: Any, ca: CertificateBundle, other_ca: CertificateBundle,
                         tmp_path: Any) -> None:
    server_cert = issue_certificate(ca, "localhost")
    c, s = kx.run(tls_over_sockets(kx, client_kx(ca_pem=ca.cert_pem, server_name="localhost"),
                                   server_kx(server_cert)))
    assert not isinstance(c, BaseException) and not isinstance(s, BaseException), (c, s)
    assert c.connection_secret == s.connection_secret

    # a certificate from another CA
    wrong = issue_certificate(other_ca, "localhost")
    c, s = kx.run(tls_over_sockets(kx, client_kx(ca_pem=ca.cert_pem, server_name="localhost"),
                                   server_kx(wrong)))
    assert isinstance(c, KeyExchangeError)
    assert "server certificate verification failed" in str(c)
    assert "unable to get local issuer certificate" in str(c)
    assert isinstance(s, KeyExchangeError)

    # the right CA but another host name
    c, s = kx.run(tls_over_sockets(kx, client_kx(ca_pem=ca.cert_pem, server_name="example.org"),
                                   server_kx(server_cert)))
    assert isinstance(c, KeyExchangeError)
    assert "does not match host name 'example.org'" in str(c)

    # an IP address as the name is checked against IP SANs
    c, s = kx.run(tls_over_sockets(kx, client_kx(ca_pem=ca.cert_pem, server_name="127.0.0.1"),
                                   server_kx(server_cert)))
    assert not isinstance(c, BaseException), c


def test_self_signed_without_pin_is_refused(kx: Any, self_signed: CertificateBundle,
                                            ca: CertificateBundle) -> None:
    c, s = kx.run(tls_over_sockets(kx, client_kx(ca_pem=ca.cert_pem, server_name="localhost"),
                                   server_kx(self_signed)))
    assert isinstance(c, KeyExchangeError) and "self-signed certificate" in str(c)
    assert isinstance(s, KeyExchangeError)


def test_client_certificates(kx: Any, ca: CertificateBundle, self_signed: CertificateBundle,
                             other_ca: CertificateBundle) -> None:
    client_cert = issue_certificate(ca, "client-1", names=["client-1"], client=True)
    # required and presented: both ends agree, the server sees the client's fingerprint
    c, s = kx.run(tls_over_sockets(
        kx,
        client_kx(pin_sha256=self_signed.fingerprint, cert_pem=client_cert.cert_pem,
                  key_pem=client_cert.key_pem),
        server_kx(self_signed, ca_pem=ca.cert_pem, require_client_cert=True)))
    assert not isinstance(c, BaseException) and not isinstance(s, BaseException), (c, s)
    assert s.peer_identity == client_cert.fingerprint
    assert c.connection_secret == s.connection_secret

    # required and missing: the server refuses with a clear error
    c, s = kx.run(tls_over_sockets(
        kx, client_kx(pin_sha256=self_signed.fingerprint),
        server_kx(self_signed, ca_pem=ca.cert_pem, require_client_cert=True)))
    assert isinstance(s, KeyExchangeError)
    assert "certificate" in str(s)


def test_client_learns_that_server_refused_its_certificate(kx: Any, self_signed: CertificateBundle,
                                                          ca: CertificateBundle,
                                                          other_ca: CertificateBundle) -> None:
    """TLS 1.3 clients finish before the server checks them; the alert then arrives."""
    bad_client = issue_certificate(other_ca, "mallory", names=["mallory"], client=True)

    async def body() -> tuple[Any, Any, Any]:
        paths = await kx.open_paths(1)
        try:
            client = client_kx(pin_sha256=self_signed.fingerprint, cert_pem=bad_client.cert_pem,
                               key_pem=bad_client.key_pem)
            c, s = await kx.run_pair(
                client, server_kx(self_signed, ca_pem=ca.cert_pem, require_client_cert=True),
                paths)
            msg = await asyncio.wait_for(read_handshake_message(paths.client[0][0]), 3)
            late = client.receive(0, msg)
            return c, s, late
        finally:
            await paths.close()

    c, s, late = kx.run(body())
    assert not isinstance(c, BaseException)  # the client had finished its side
    assert isinstance(s, KeyExchangeError) and "client certificate verification failed" in str(s)
    assert late.error is not None and "peer aborted" in str(late.error)


def test_configuration_errors() -> None:
    with pytest.raises(KeyExchangeError, match="needs a CA file or a pinned"):
        client_kx()
    with pytest.raises(KeyExchangeError, match="needs a certificate"):
        TlsKeyExchange(TlsConfig(Role.SERVER))
    other = generate_self_signed()
    mine = generate_self_signed()
    with pytest.raises(KeyExchangeError, match="bad configuration"):
        TlsKeyExchange(TlsConfig(Role.SERVER, cert_pem=mine.cert_pem, key_pem=other.key_pem))
    with pytest.raises(ValueError):
        client_kx(pin_sha256="abcd")


def test_garbage_from_peer_is_a_typed_error(self_signed: CertificateBundle) -> None:
    s = server_kx(self_signed)
    s.start()
    step = s.receive(0, b"\x16\x03\x01\x00\x05hello" * 3)
    assert isinstance(step.error, KeyExchangeError)
    assert s.done and s.receive(0, b"more").error is step.error
    c = client_kx(pin_sha256=self_signed.fingerprint)
    c.start()
    assert isinstance(c.receive(1, b"x").error, KeyExchangeError)

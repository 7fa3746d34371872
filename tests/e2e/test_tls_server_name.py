"""``tls`` with a CA and no server_name (SPEC 7.2): a certificate the CA issued for another
name must not be accepted just because the CA signed it."""

from __future__ import annotations

import asyncio

import pytest

from mptcpsec.aio.api import Path, connect, serve, with_server_name
from mptcpsec.crypto.certs import generate_ca, issue_certificate
from mptcpsec.crypto.keyschedule import Role
from mptcpsec.crypto.tls_keys import TlsConfig, TlsKeyExchange
from mptcpsec.errors import KeyExchangeError
from mptcpsec.protocol.config import ConnectionConfig

from .harness import free_port


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _echo(stream) -> None:
    data = await stream.read(100)
    stream.write(data)
    await stream.drain()
    stream.close()


async def _attempt(server_names: list[str], client_tls: TlsConfig) -> bytes:
    ca = generate_ca()
    # the CA issued this certificate to someone else ("mallory.example"), not to 127.0.0.1
    leaf = issue_certificate(ca, server_names[0], names=server_names)
    port = free_port()
    server_cfg = ConnectionConfig(key_exchange="tls", tls=TlsConfig(
        Role.SERVER, cert_pem=leaf.cert_pem, key_pem=leaf.key_pem))
    client_tls.ca_pem = ca.cert_pem
    srv = await serve(_echo, [("127.0.0.1", port)], server_cfg)
    try:
        stream = await connect([Path(("127.0.0.1", port))],
                               ConnectionConfig(key_exchange="tls", tls=client_tls), timeout=10)
        try:
            stream.write(b"ping")
            return await asyncio.wait_for(stream.read(100), 5)
        finally:
            stream.close()
    finally:
        srv.close()


def test_ca_without_server_name_refuses_a_certificate_for_another_name() -> None:
    with pytest.raises(Exception, match=r"host name '127\.0\.0\.1'"):
        run(_attempt(["mallory.example"], TlsConfig(Role.CLIENT)))


def test_ca_without_server_name_accepts_the_first_paths_host() -> None:
    assert run(_attempt(["127.0.0.1"], TlsConfig(Role.CLIENT))) == b"ping"


def test_key_exchange_refuses_ca_verification_without_a_name() -> None:
    ca = generate_ca()
    with pytest.raises(KeyExchangeError, match="needs server_name"):
        TlsKeyExchange(TlsConfig(Role.CLIENT, ca_pem=ca.cert_pem))
    # a pin names the certificate itself: no host name needed
    TlsKeyExchange(TlsConfig(Role.CLIENT, pin_sha256="00" * 32))
    cfg = ConnectionConfig(key_exchange="tls", tls=TlsConfig(Role.CLIENT, ca_pem=ca.cert_pem,
                                                             server_name="srv.example"))
    assert with_server_name(cfg, "127.0.0.1").tls.server_name == "srv.example"

"""``psk`` mode: loading the secret, and the exchange in memory and over a socket."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from mptcpsec.aio.stores import PSK_ENV_VAR as ENV_VAR, load_psk
from mptcpsec.crypto.keyschedule import Role, Secret
from mptcpsec.crypto.psk import (
    MIN_PSK_LEN,
    PskConfig,
    PskError,
    PskFormatError,
    PskKeyExchange,
    PskMissingError,
    PskTooShortError,
    parse_psk,
)
from mptcpsec.errors import KeyExchangeError

KEY = bytes(range(32))


def test_load_from_file_and_env(tmp_path: Any) -> None:
    f = tmp_path / "psk"
    f.write_text(KEY.hex() + "\n")
    assert load_psk(f).reveal() == KEY
    f.write_text("base64:" + base64.b64encode(KEY).decode())
    assert load_psk(str(f)).reveal() == KEY
    assert load_psk(environ={ENV_VAR: KEY.hex()}).reveal() == KEY
    assert load_psk(env="OTHER", environ={"OTHER": " " + KEY.hex()[:40] + " \n"}).reveal() == \
        KEY[:20]
    assert "00010203" not in repr(load_psk(f))


def test_load_errors_are_typed(tmp_path: Any) -> None:
    with pytest.raises(PskMissingError):
        load_psk(tmp_path / "absent")
    with pytest.raises(PskMissingError):
        load_psk(environ={})
    with pytest.raises(PskMissingError):
        load_psk(environ={ENV_VAR: "  "})
    with pytest.raises(PskTooShortError, match=f"at least {MIN_PSK_LEN} bytes"):
        load_psk(environ={ENV_VAR: "00" * (MIN_PSK_LEN - 1)})
    with pytest.raises(PskFormatError):
        parse_psk("not hex at all")
    with pytest.raises(PskFormatError):
        parse_psk("base64:!!!")
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    with pytest.raises(PskError):
        load_psk(tmp_path / "bin")
    assert issubclass(PskError, KeyExchangeError)
    with pytest.raises(PskTooShortError):
        PskKeyExchange(PskConfig(Role.CLIENT, Secret(b"short")))


def pair(client_key: bytes = KEY, server_key: bytes = KEY, **kw: Any
         ) -> tuple[PskKeyExchange, PskKeyExchange]:
    return (PskKeyExchange(PskConfig(Role.CLIENT, Secret(client_key), **kw)),
            PskKeyExchange(PskConfig(Role.SERVER, Secret(server_key), **kw)))


def test_exchange_agrees_and_is_fresh_per_connection(kx: Any) -> None:
    c1, s1 = kx.pump_in_memory(*pair(identity=b"lab"))
    c2, s2 = kx.pump_in_memory(*pair(identity=b"lab"))
    assert c1.connection_secret == s1.connection_secret
    assert c2.connection_secret == s2.connection_secret
    assert c1.connection_secret != c2.connection_secret  # fresh nonces every time
    assert c1.connection_id == c1.client_nonce == s1.client_nonce


def test_wrong_key_aborts_both_ends(kx: Any) -> None:
    c, s = kx.pump_in_memory(*pair(server_key=bytes(32)))
    # the server checks the client's binder first and answers with an abort, no confirmation
    assert isinstance(s, KeyExchangeError) and "client binder failed" in str(s)
    assert isinstance(c, KeyExchangeError) and "peer aborted" in str(c)
    c, s = kx.pump_in_memory(PskKeyExchange(PskConfig(Role.CLIENT, Secret(KEY), identity=b"a")),
                             PskKeyExchange(PskConfig(Role.SERVER, Secret(KEY), identity=b"b")))
    assert isinstance(s, KeyExchangeError) and "unknown PSK identity" in str(s)


def test_tampered_finished_is_refused(kx: Any) -> None:
    def tamper(direction: str, path: int, msg: bytes) -> bytes:
        if msg[0] == 0x33:
            return msg[:-1] + bytes([msg[-1] ^ 1])
        return msg

    c, s = kx.pump_in_memory(*pair(), tamper=tamper)
    assert not isinstance(c, BaseException)  # the client finished before the server checked
    assert isinstance(s, KeyExchangeError) and "client key confirmation failed" in str(s)


def test_over_a_socket(kx: Any) -> None:
    client, server = pair()

    async def body() -> tuple[Any, Any]:
        paths = await kx.open_paths(1)
        try:
            return await kx.run_pair(client, server, paths)
        finally:
            await paths.close()

    c, s = kx.run(body())
    assert not isinstance(c, BaseException) and not isinstance(s, BaseException), (c, s)
    assert c.connection_secret == s.connection_secret
    buf = c.connection_secret.buffer
    client.close()
    server.close()
    assert buf == bytearray(32) and s.connection_secret.wiped

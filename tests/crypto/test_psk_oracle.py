"""psk v2 (SPEC 7.4): the client proves the key before the server confirms anything."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from mptcpsec.crypto import psk
from mptcpsec.crypto.keyschedule import Role, Secret
from mptcpsec.crypto.kx import ABORT_TYPE, derive_handshake_secrets
from mptcpsec.crypto.psk import PskConfig, PskKeyExchange

KEY = secrets.token_bytes(32)
WORDS = [b"correct horse battery staple %02d" % i for i in range(20)]


def _server() -> PskKeyExchange:
    s = PskKeyExchange(PskConfig(Role.SERVER, Secret(KEY)))
    s.start()
    return s


def _verifies(guess: bytes, hello: bytes, answer: bytes) -> bool:
    """The offline check an attacker runs against a SERVER_HELLO (v1 transcript)."""
    core = answer[:2 + psk.NONCE_LEN]
    th = hashlib.sha256(hello + core).digest()
    hs = derive_handshake_secrets("psk", guess, th)
    return hmac.compare_digest(hs.confirm(Role.SERVER, th, 0), answer[2 + psk.NONCE_LEN:])


def test_unauthenticated_hello_gets_no_server_confirmation() -> None:
    """The attack: an active client without the key sends hellos and tries to verify its
    guesses offline against the answers. Today the server only aborts."""
    for version in (1, psk.VERSION):
        for binder in (b"", bytes(psk.BINDER_LEN), secrets.token_bytes(psk.BINDER_LEN)):
            hello = (bytes([psk.PSK_CLIENT_HELLO, version]) + secrets.token_bytes(psk.NONCE_LEN)
                     + b"\x00" + binder)
            step = _server().receive(0, hello)
            assert step.error is not None and step.result is None
            assert [m[0] for _, m in step.send] == [ABORT_TYPE]
            answer = step.send[0][1]
            assert not any(_verifies(w, hello, answer) for w in [*WORDS, KEY])


def test_old_peer_fails_by_version(kx: Any) -> None:
    hello = bytes([psk.PSK_CLIENT_HELLO, 1]) + bytes(psk.NONCE_LEN) + b"\x00"
    step = _server().receive(0, hello)
    assert "peer speaks psk v1, we speak v2" in str(step.error)


def test_genuine_client_still_agrees(kx: Any) -> None:
    c, s = kx.pump_in_memory(PskKeyExchange(PskConfig(Role.CLIENT, Secret(KEY))),
                             PskKeyExchange(PskConfig(Role.SERVER, Secret(KEY))))
    assert not isinstance(c, BaseException) and not isinstance(s, BaseException), (c, s)
    assert c.connection_secret == s.connection_secret

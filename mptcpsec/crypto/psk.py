"""``psk`` mode: a pre-shared secret, for tests and experiments.

The secret is text (hex, or ``base64:`` followed by base64; ``parse_psk``) that the caller
reads from a file or an environment variable (``mptcpsec.aio.stores.load_psk``), at least
``MIN_PSK_LEN`` bytes. It is never used as a key directly: each connection exchanges fresh
nonces and derives its connection secret from the PSK and the transcript, so two
connections with the same PSK never share keys (papers/SPEC.md section 7.4):

    path 0  C -> S  PSK_CLIENT_HELLO     client nonce, PSK identity, binder
    path 0  S -> C  PSK_SERVER_HELLO     server nonce, server confirmation
    path 0  C -> S  PSK_CLIENT_FINISHED  client confirmation

The client proves the key first: the binder (an HMAC under a key derived from the PSK alone,
as in TLS 1.3's PSK binders) is checked before the server answers, so the server never
hands its confirmation, an offline-guess oracle, to someone who does not hold the key.
Version 2 of these messages (version 1 had no binder) is refused from a v1 peer by name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from mptcpsec.crypto import keylog
from mptcpsec.crypto.keylog import KeyLogWriter
from mptcpsec.crypto.keyschedule import Role, Secret, hkdf_expand_label, hkdf_extract, wipe
from mptcpsec.crypto.kx import (
    ABORT_TYPE,
    HandshakeSecrets,
    KeyExchangeResult,
    Step,
    decode_abort,
    derive_handshake_secrets,
    encode_abort,
)
from mptcpsec.errors import KeyExchangeError

from ..errors import (
    PskError as PskError,
    PskFormatError as PskFormatError,
    PskMissingError as PskMissingError,
    PskTooShortError as PskTooShortError,
)

MODE = "psk"
VERSION = 2
MIN_PSK_LEN = 16
MAX_PSK_LEN = 1024
NONCE_LEN = 32
CONFIRM_LEN = 32
MAX_IDENTITY_LEN = 255
BINDER_LEN = 32
_MAX_MESSAGE = 2 + NONCE_LEN + 1 + MAX_IDENTITY_LEN + BINDER_LEN

PSK_CLIENT_HELLO = 0x31
PSK_SERVER_HELLO = 0x32
PSK_CLIENT_FINISHED = 0x33


def parse_psk(text: str, source: str = "pre-shared key") -> Secret:
    """Decode PSK text (hex, or ``base64:`` + base64; surrounding whitespace ignored)."""
    value = "".join(text.split())
    if not value:
        raise PskMissingError(f"{source} is empty")
    try:
        if value.lower().startswith("base64:"):
            raw = bytearray(base64.b64decode(value[7:], validate=True))
        else:
            raw = bytearray(bytes.fromhex(value))
    except (ValueError, binascii.Error):
        raise PskFormatError(f"{source} is neither hex nor 'base64:...'") from None
    if len(raw) < MIN_PSK_LEN:
        raise PskTooShortError(
            f"{source} is {len(raw)} bytes; at least {MIN_PSK_LEN} bytes are required")
    if len(raw) > MAX_PSK_LEN:
        raise PskFormatError(f"{source} is longer than {MAX_PSK_LEN} bytes")
    return Secret.adopt(raw)


class PskTable(Secret):
    """A server's keys by client identity (a gateway's clients), given as `PskConfig.psk`.

    The client's PSK_CLIENT_HELLO identity picks the key; an unknown identity aborts the
    exchange, and the identity becomes the connection's ``peer_identity``. It rides in the
    place of the one key so that every copy of the config made on the way keeps it; its own
    buffer is a random placeholder that never keys anything.
    """

    __slots__ = ("identities",)

    def __init__(self, identities: dict[bytes, Secret]) -> None:
        super().__init__(secrets.token_bytes(MIN_PSK_LEN))
        self.identities: dict[bytes, Secret] = {}
        if not identities:
            raise PskMissingError("no client identities")
        for name, key in identities.items():
            if not 0 < len(name) <= MAX_IDENTITY_LEN:
                raise PskError(f"PSK identity {name!r}: must be 1..255 bytes")
            if len(key) < MIN_PSK_LEN:
                raise PskTooShortError(f"pre-shared key of {name!r} shorter than "
                                       f"{MIN_PSK_LEN} bytes")
        self.identities = dict(identities)


@dataclass
class PskConfig:
    role: Role
    psk: Secret = field(repr=False)
    #: Names the key when a server holds several (sent in clear in PSK_CLIENT_HELLO).
    identity: bytes = b""
    #: Key log lines go here (an open text file, ``io.StringIO``); None: no key log.
    keylog_file: KeyLogWriter | None = field(default=None, repr=False, compare=False)


    def __post_init__(self) -> None:
        self.keylog_file = keylog.check_writer(self.keylog_file)

def _binder(psk: bytes | bytearray, hello_core: bytes) -> bytes:
    """HMAC-SHA256(HKDF-Expand-Label(HKDF-Extract("", PSK), "psk binder", "", 32),
    SHA-256(PSK_CLIENT_HELLO without the binder)) (SPEC section 7.4)."""
    prk = hkdf_extract(b"", psk)
    key = hkdf_expand_label(prk, b"psk binder", b"", 32)
    try:
        return hmac.new(bytes(key), hashlib.sha256(hello_core).digest(), hashlib.sha256).digest()
    finally:
        wipe(prk)
        wipe(key)


class PskKeyExchange:
    """Sans-I/O psk exchange on subflow 0 (three messages, key confirmation both ways)."""

    mode = MODE
    paths = 1

    def __init__(self, config: PskConfig) -> None:
        if len(config.identity) > MAX_IDENTITY_LEN:
            raise PskError("PSK identity longer than 255 bytes")
        if len(config.psk) < MIN_PSK_LEN:
            raise PskTooShortError(f"pre-shared key shorter than {MIN_PSK_LEN} bytes")
        self.config = config
        self.role = config.role
        self._psk = Secret(config.psk.buffer)
        self._table = config.psk.identities if isinstance(config.psk, PskTable) else None
        self._peer_identity: str | None = None
        self._nonce = secrets.token_bytes(NONCE_LEN)
        self._hello = b""
        self._peer_nonce = b""
        self._th = b""
        self._secrets: HandshakeSecrets | None = None
        self._result: KeyExchangeResult | None = None
        self._error: KeyExchangeError | None = None
        self._started = False

    @property
    def done(self) -> bool:
        return self._result is not None or self._error is not None

    def close(self) -> None:
        self._psk.wipe()
        if self._secrets is not None:
            self._secrets.wipe()
        if self._result is not None:
            self._result.wipe()

    def start(self) -> Step:
        if self._started:
            raise KeyExchangeError("psk: start() called twice")
        self._started = True
        if self.role is Role.SERVER:
            return Step()
        ident = self.config.identity
        core = bytes([PSK_CLIENT_HELLO, VERSION]) + self._nonce + bytes([len(ident)]) + ident
        self._hello = core + _binder(self._psk.buffer, core)
        return Step(send=[(0, self._hello)])

    def _abort(self, reason: str) -> Step:
        self._error = KeyExchangeError(f"psk: {reason}")
        self._psk.wipe()
        if self._secrets is not None:
            self._secrets.wipe()
        return Step(send=[(0, encode_abort(VERSION, reason))], error=self._error)

    def _derive(self, server_hello_core: bytes) -> HandshakeSecrets:
        self._th = hashlib.sha256(self._hello + server_hello_core).digest()
        self._secrets = derive_handshake_secrets(MODE, self._psk.buffer, self._th)
        self._psk.wipe()
        return self._secrets

    def receive(self, path: int, message: bytes) -> Step:
        if self._error is not None:
            return Step(error=self._error)
        if path != 0:
            return self._abort(f"message on subflow {path}, expected subflow 0")
        if len(message) < 2 or len(message) > _MAX_MESSAGE:
            return self._abort("malformed message")
        if message[0] == ABORT_TYPE:
            self._error = KeyExchangeError(f"psk: peer aborted: {decode_abort(message)}")
            return Step(error=self._error)
        if message[1] != VERSION:
            return self._abort(f"peer speaks psk v{message[1]}, we speak v{VERSION}")
        if self._result is not None:
            return self._abort("unexpected message after the exchange")
        if self.role is Role.SERVER:
            return self._server_receive(message)
        return self._client_receive(message)

    def _server_receive(self, message: bytes) -> Step:
        if message[0] == PSK_CLIENT_HELLO and not self._hello:
            if len(message) < 3 + NONCE_LEN or \
                    len(message) != 3 + NONCE_LEN + message[34] + BINDER_LEN:
                return self._abort("malformed PSK_CLIENT_HELLO")
            ident = bytes(message[3 + NONCE_LEN:-BINDER_LEN])
            if self._table is not None:
                key = self._table.get(ident)
                if key is None:
                    return self._abort(f"unknown PSK identity {ident!r}")
                self._psk.wipe()
                self._psk = Secret(key.buffer)
                self._peer_identity = ident.decode("utf-8", "replace")
            elif ident != self.config.identity:
                return self._abort(f"unknown PSK identity {ident!r}")
            binder = _binder(self._psk.buffer, bytes(message[:-BINDER_LEN]))
            if not hmac.compare_digest(binder, message[-BINDER_LEN:]):
                # No server confirmation for a client that did not prove the key.
                return self._abort("client binder failed (different pre-shared key?)")
            self._hello = bytes(message)
            self._peer_nonce = bytes(message[2:2 + NONCE_LEN])
            core = bytes([PSK_SERVER_HELLO, VERSION]) + self._nonce
            self._derive(core)
            assert self._secrets is not None
            return Step(send=[(0, core + self._secrets.confirm(Role.SERVER, self._th, 0))])
        if message[0] == PSK_CLIENT_FINISHED and self._secrets is not None:
            if len(message) != 2 + CONFIRM_LEN:
                return self._abort("malformed PSK_CLIENT_FINISHED")
            if not hmac.compare_digest(self._secrets.confirm(Role.CLIENT, self._th, 0),
                                       message[2:]):
                return self._abort("client key confirmation failed (different pre-shared key?)")
            self._result = self._make_result(self._peer_nonce, self._nonce)
            return Step(result=self._result)
        return self._abort(f"unexpected message type {message[0]:#x}")

    def _client_receive(self, message: bytes) -> Step:
        if message[0] != PSK_SERVER_HELLO or self._secrets is not None or not self._hello:
            return self._abort(f"unexpected message type {message[0]:#x}")
        if len(message) != 2 + NONCE_LEN + CONFIRM_LEN:
            return self._abort("malformed PSK_SERVER_HELLO")
        self._peer_nonce = bytes(message[2:2 + NONCE_LEN])
        hs = self._derive(bytes(message[:2 + NONCE_LEN]))
        if not hmac.compare_digest(hs.confirm(Role.SERVER, self._th, 0),
                                   message[2 + NONCE_LEN:]):
            return self._abort("server key confirmation failed (different pre-shared key?)")
        confirm = hs.confirm(Role.CLIENT, self._th, 0)
        fin = bytes([PSK_CLIENT_FINISHED, VERSION]) + confirm
        self._result = self._make_result(self._nonce, self._peer_nonce)
        return Step(send=[(0, fin)], result=self._result)

    def _make_result(self, client_nonce: bytes, server_nonce: bytes) -> KeyExchangeResult:
        assert self._secrets is not None
        self._secrets.wipe_finished_keys()
        secret = self._secrets.connection_secret
        keylog.log_connection_secret(self.config.keylog_file, client_nonce, secret)
        return KeyExchangeResult(mode=MODE, role=self.role, connection_secret=secret,
                                 connection_id=client_nonce, client_nonce=client_nonce,
                                 server_nonce=server_nonce, peer_identity=self._peer_identity)

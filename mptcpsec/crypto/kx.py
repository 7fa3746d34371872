"""Types shared by the key exchanges: what a connection engine drives and what it gets back.

Every key exchange is a sans-I/O object with the same shape:

- ``start() -> Step``: the messages to send first (the client's opening flight);
- ``receive(path, message) -> Step``: feed one received message (the body of one plaintext
  HANDSHAKE record) that arrived on subflow ``path`` (0 = the first subflow);
- ``close()``: erase everything secret the object still holds.

A ``Step`` lists ``(path, message)`` pairs to send (each in its own HANDSHAKE record), and at
most one of ``result`` (the exchange finished) or ``error`` (a ``KeyExchangeError`` saying
which check failed). The engine sends ``step.send`` *before* acting on ``step.error``: that
is how an abort notice reaches the peer.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from mptcpsec.crypto.keyschedule import (
    SECRET_LEN,
    KeySchedule,
    Role,
    Secret,
    hkdf_expand_label,
    hkdf_extract,
    wipe,
)
from mptcpsec.errors import KeyExchangeError

#: Largest handshake message body a key exchange produces or accepts per record.
MAX_MESSAGE_LEN = 16384


@dataclass(repr=False, eq=False)
class KeyExchangeResult:
    """The outcome of a key exchange: the connection secret and what binds the first subflow.

    ``connection_id`` names the connection in the key log (TLS: client_random; split-path:
    session id; psk: client nonce). ``client_nonce``/``server_nonce`` are the join nonces of
    subflow 0 for ``KeySchedule.subflow_keys``. ``peer_identity`` is the peer's certificate
    SHA-256 fingerprint (tls) or Ed25519 key (split-path) in hex, when there is one.
    """

    mode: str
    role: Role
    connection_secret: Secret
    connection_id: bytes
    client_nonce: bytes
    server_nonce: bytes
    peer_identity: str | None = None
    details: dict[str, str] = field(default_factory=dict)

    def schedule(self, algorithm: str | Enum = "aes-128-gcm") -> KeySchedule:
        """A key schedule over a copy of the connection secret (wipe both when done)."""
        return KeySchedule(self.connection_secret, algorithm)

    def wipe(self) -> None:
        self.connection_secret.wipe()

    close = wipe

    def __repr__(self) -> str:
        return (f"KeyExchangeResult(mode={self.mode!r}, role={self.role.value!r}, "
                f"connection_id={self.connection_id.hex()}, secret=<hidden>, "
                f"peer_identity={self.peer_identity!r})")

    __str__ = __repr__


@dataclass
class Step:
    """What one call into a key exchange produced (see the module docstring)."""

    send: list[tuple[int, bytes]] = field(default_factory=list)
    result: KeyExchangeResult | None = None
    error: KeyExchangeError | None = None

    def __repr__(self) -> str:
        sends = [(p, len(m)) for p, m in self.send]
        return f"Step(send={sends}, result={self.result!r}, error={self.error!r})"


class KeyExchange(Protocol):
    """The interface every mode implements (``tls``, ``split-path``, ``psk``)."""

    mode: str
    role: Role
    #: How many subflows the exchange needs before it can start.
    paths: int

    def start(self) -> Step: ...

    def receive(self, path: int, message: bytes) -> Step: ...

    def close(self) -> None: ...

    @property
    def done(self) -> bool: ...


@dataclass(repr=False, eq=False)
class HandshakeSecrets:
    """Connection secret and the two key-confirmation keys of a split-path or psk exchange."""

    connection_secret: Secret
    client_finished_key: bytearray
    server_finished_key: bytearray

    def confirm(self, role: Role, transcript_hash: bytes, path: int) -> bytes:
        """HMAC-SHA256(finished_key[role], transcript_hash || u8(path))."""
        key = self.client_finished_key if role is Role.CLIENT else self.server_finished_key
        return hmac.new(bytes(key), transcript_hash + bytes([path]), hashlib.sha256).digest()

    def wipe_finished_keys(self) -> None:
        wipe(self.client_finished_key)
        wipe(self.server_finished_key)

    def wipe(self) -> None:
        self.wipe_finished_keys()
        self.connection_secret.wipe()

    def __repr__(self) -> str:
        return "HandshakeSecrets(<hidden>)"


def derive_handshake_secrets(mode: str, ikm: bytes | bytearray,
                             transcript_hash: bytes) -> HandshakeSecrets:
    """prk = HKDF-Extract(salt=transcript_hash, ikm); then "conn <mode>", "<mode> c finished",
    "<mode> s finished" (HKDF-Expand-Label, empty context, 32 bytes each)."""
    prk = hkdf_extract(transcript_hash, ikm)
    try:
        m = mode.encode()
        return HandshakeSecrets(
            Secret.adopt(hkdf_expand_label(prk, b"conn " + m, b"", SECRET_LEN)),
            hkdf_expand_label(prk, m + b" c finished", b"", SECRET_LEN),
            hkdf_expand_label(prk, m + b" s finished", b"", SECRET_LEN),
        )
    finally:
        wipe(prk)


ABORT_TYPE = 0x7F
MAX_REASON_LEN = 200


def encode_abort(version: int, reason: str) -> bytes:
    """ABORT message: type 0x7F | version | reason_len (u8) | reason (UTF-8)."""
    raw = reason.encode("utf-8", "replace")[:MAX_REASON_LEN]
    return bytes([ABORT_TYPE, version, len(raw)]) + raw


def decode_abort(message: bytes) -> str:
    if len(message) < 3 or len(message) != 3 + message[2]:
        return "(malformed abort message)"
    return message[3:].decode("utf-8", "replace")

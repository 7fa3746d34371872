"""HKDF (RFC 5869) and the MPTCPsec key schedule (papers/SPEC.md, "Key schedule").

Every key a connection uses is derived here from one 32-byte *connection secret* that a
key exchange (``tls``, ``split-path`` or ``psk``) agreed on. Labels follow TLS 1.3's
HKDF-Expand-Label with the prefix ``"mptcpsec "`` so that no derived value can collide with
a TLS 1.3 value computed from the same input.

Key material lives in ``bytearray`` objects that ``wipe()`` overwrites with zeros: Python
cannot guarantee that no transient copy survives (``bytes`` handed to a cipher, hex strings
for the key log), but the long-lived copies a connection holds are erased when it closes.
No ``repr``/``str`` of these objects shows key bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import NoReturn

from mptcpsec.errors import InvalidKeyError, UnsupportedAlgorithmError

#: Prefix of every MPTCPsec HKDF label (TLS 1.3 uses "tls13 ").
LABEL_PREFIX = b"mptcpsec "
#: Length of the connection secret and of every intermediate secret (SHA-256 output).
SECRET_LEN = 32
IV_LEN = 12
#: Length of the RFC 8684-style 64-bit keys derived for option HMACs.
KEY64_LEN = 8
#: Largest nonce accepted in a subflow context (keeps the HKDF context under 255 bytes).
MAX_NONCE_LEN = 64

#: AEAD names (case-insensitive) and their key lengths; the name is bound into the
#: derivation so two algorithms never share a key.
AEAD_KEY_LENGTHS: dict[str, int] = {
    "aes-128-gcm": 16,
    "aes-256-gcm": 32,
    "chacha20-poly1305": 32,
}


class Role(str, Enum):
    """Which end of a connection (the end that opened the first subflow is the client)."""

    CLIENT = "client"
    SERVER = "server"

    @property
    def peer(self) -> Role:
        return Role.SERVER if self is Role.CLIENT else Role.CLIENT


# --------------------------------------------------------------------------- HKDF


def _hash_ctor(hash_name: str) -> Callable[[], hashlib._Hash]:
    try:
        ctor: Callable[[], hashlib._Hash] = getattr(hashlib, hash_name)
    except AttributeError:
        raise UnsupportedAlgorithmError(f"unsupported hash {hash_name!r}") from None
    return ctor


def hash_len(hash_name: str = "sha256") -> int:
    return int(_hash_ctor(hash_name)().digest_size)


def hkdf_extract(salt: bytes | bytearray, ikm: bytes | bytearray,
                 hash_name: str = "sha256") -> bytearray:
    """HKDF-Extract (RFC 5869 section 2.2); an empty salt means HashLen zero bytes."""
    if not salt:
        salt = bytes(hash_len(hash_name))
    return bytearray(hmac.new(bytes(salt), bytes(ikm), _hash_ctor(hash_name)).digest())


def hkdf_expand(prk: bytes | bytearray, info: bytes, length: int,
                hash_name: str = "sha256") -> bytearray:
    """HKDF-Expand (RFC 5869 section 2.3)."""
    hl = hash_len(hash_name)
    if len(prk) < hl:
        raise InvalidKeyError(f"HKDF PRK must be at least {hl} bytes, got {len(prk)}")
    if not 0 < length <= 255 * hl:
        raise ValueError(f"HKDF output length {length} not in 1..{255 * hl}")
    key = bytes(prk)
    out = bytearray()
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.new(key, block + info + bytes([counter]), _hash_ctor(hash_name)).digest()
        out += block
        counter += 1
    del out[length:]
    return out


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int, hash_name: str = "sha256") -> bytearray:
    """Extract then expand: the full RFC 5869 HKDF."""
    prk = hkdf_extract(salt, ikm, hash_name)
    try:
        return hkdf_expand(prk, info, length, hash_name)
    finally:
        wipe(prk)


def hkdf_label(label: bytes, context: bytes, length: int, prefix: bytes = LABEL_PREFIX) -> bytes:
    """The HkdfLabel structure of RFC 8446 section 7.1 with a chosen prefix."""
    full = prefix + label
    if not 1 <= len(full) <= 255:
        raise ValueError(f"HKDF label {full!r} must be 1..255 bytes")
    if len(context) > 255:
        raise ValueError("HKDF label context must be at most 255 bytes")
    return struct.pack("!H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context


def hkdf_expand_label(secret: bytes | bytearray, label: bytes, context: bytes, length: int,
                      hash_name: str = "sha256", prefix: bytes = LABEL_PREFIX) -> bytearray:
    """HKDF-Expand-Label (RFC 8446 section 7.1); ``prefix`` is ``"mptcpsec "`` unless TLS."""
    return hkdf_expand(secret, hkdf_label(label, context, length, prefix), length, hash_name)


def wipe(buf: bytearray | memoryview | None) -> None:
    """Overwrite a mutable buffer with zeros in place."""
    if buf is None:
        return
    view = memoryview(buf).cast("B")
    view[:] = bytes(len(view))


# --------------------------------------------------------------------------- key material


class Secret:
    """A secret byte string that can be erased and never shows itself in repr/str."""

    __slots__ = ("_buf",)

    def __init__(self, data: bytes | bytearray) -> None:
        self._buf = bytearray(data)

    @classmethod
    def adopt(cls, buf: bytearray) -> Secret:
        """Take ownership of ``buf`` without copying it (the caller must drop its reference)."""
        obj = cls.__new__(cls)
        obj._buf = buf
        return obj

    @property
    def buffer(self) -> bytearray:
        """The live buffer (zeros after ``wipe``); hand ``bytes(secret.buffer)`` to ciphers."""
        return self._buf

    def reveal(self) -> bytes:
        """A transient immutable copy, for APIs that only take ``bytes``."""
        if self.wiped:
            raise InvalidKeyError("secret was wiped")
        return bytes(self._buf)

    @property
    def wiped(self) -> bool:
        return not any(self._buf)

    def wipe(self) -> None:
        wipe(self._buf)

    def __len__(self) -> int:
        return len(self._buf)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(bytes(self._buf), bytes(other._buf))
        return NotImplemented

    # Unhashable (equality is by secret contents): the standard idiom, which mypy only
    # accepts with an ignore since object.__hash__ is a method.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        state = "wiped" if self.wiped else "set"
        return f"<Secret {len(self._buf)} bytes, {state}>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("secrets cannot be pickled")

    def __del__(self) -> None:
        wipe(self._buf)


def aead_name(algorithm: str | Enum) -> str:
    """Canonical AEAD name; accepts a name or an enum whose value is one (aead.Algorithm)."""
    raw = algorithm.value if isinstance(algorithm, Enum) else algorithm
    name = str(raw).strip().lower().replace("_", "-")
    if name not in AEAD_KEY_LENGTHS:
        raise UnsupportedAlgorithmError(
            f"unknown AEAD {algorithm!r}; choose one of {sorted(AEAD_KEY_LENGTHS)}")
    return name


def aead_key_len(algorithm: str | Enum) -> int:
    return AEAD_KEY_LENGTHS[aead_name(algorithm)]


def _subflow_context(subflow_id: int, client_nonce: bytes, server_nonce: bytes) -> bytes:
    if not 0 <= subflow_id <= 0xFFFFFFFF:
        raise ValueError(f"subflow id {subflow_id} is not a u32")
    for name, nonce in (("client", client_nonce), ("server", server_nonce)):
        if len(nonce) > MAX_NONCE_LEN:
            raise ValueError(f"{name} join nonce longer than {MAX_NONCE_LEN} bytes")
    return (struct.pack("!I", subflow_id) + bytes([len(client_nonce)]) + client_nonce
            + bytes([len(server_nonce)]) + server_nonce)


@dataclass(repr=False, eq=False)
class DirectionKeys:
    """AEAD key, IV and traffic secret of one subflow direction, with its update chain."""

    algorithm: str
    traffic_secret: bytearray
    key: bytearray
    iv: bytearray
    generation: int = 0

    @classmethod
    def from_secret(cls, algorithm: str | Enum, traffic_secret: bytearray,
                    generation: int = 0) -> DirectionKeys:
        key = hkdf_expand_label(traffic_secret, b"key", b"", aead_key_len(algorithm))
        iv = hkdf_expand_label(traffic_secret, b"iv", b"", IV_LEN)
        return cls(aead_name(algorithm), traffic_secret, key, iv, generation)

    def next_secret(self) -> bytearray:
        """traffic_secret_{N+1} = HKDF-Expand-Label(traffic_secret_N, "traffic upd", "", 32)."""
        return hkdf_expand_label(self.traffic_secret, b"traffic upd", b"", SECRET_LEN)

    def update(self) -> None:
        """Move to the next generation in place, erasing the old secret, key and IV."""
        nxt = DirectionKeys.from_secret(self.algorithm, self.next_secret(), self.generation + 1)
        self.wipe()
        self.traffic_secret, self.key, self.iv = nxt.traffic_secret, nxt.key, nxt.iv
        self.generation = nxt.generation

    def wipe(self) -> None:
        for buf in (self.traffic_secret, self.key, self.iv):
            wipe(buf)

    @property
    def wiped(self) -> bool:
        return not any(self.traffic_secret) and not any(self.key) and not any(self.iv)

    def __repr__(self) -> str:
        return (f"DirectionKeys(algorithm={self.algorithm!r}, generation={self.generation}, "
                f"key=<{len(self.key)} bytes>, iv=<{len(self.iv)} bytes>)")

    __str__ = __repr__


@dataclass(repr=False, eq=False)
class SubflowKeys:
    """Both directions of one subflow; ``c2s`` is what the client seals and the server opens."""

    subflow_id: int
    c2s: DirectionKeys
    s2c: DirectionKeys

    def send_keys(self, role: Role) -> DirectionKeys:
        return self.c2s if role is Role.CLIENT else self.s2c

    def recv_keys(self, role: Role) -> DirectionKeys:
        return self.s2c if role is Role.CLIENT else self.c2s

    def wipe(self) -> None:
        self.c2s.wipe()
        self.s2c.wipe()

    @property
    def wiped(self) -> bool:
        return self.c2s.wiped and self.s2c.wiped

    def __repr__(self) -> str:
        return f"SubflowKeys(subflow_id={self.subflow_id}, c2s={self.c2s!r}, s2c={self.s2c!r})"

    __str__ = __repr__


@dataclass(repr=False, eq=False)
class ConnectionKeys:
    """Connection-wide values: RFC 8684-style 64-bit keys and tokens, and join MAC keys.

    The 64-bit keys are the Key-A/Key-B of RFC 8684 (secret here, unlike plain MPTCP), so
    the RFC 8684 ADD_ADDR and MP_JOIN HMACs can be computed with them; the tokens are the
    RFC 8684 tokens of those keys (32 bits, fit the MP_JOIN option). The join keys
    authenticate new subflows with full 256-bit strength (see ``join_mac``).
    """

    client_key64: bytearray
    server_key64: bytearray
    client_join_key: bytearray
    server_join_key: bytearray
    client_token: int = 0
    server_token: int = 0
    client_idsn: int = 0
    server_idsn: int = 0

    def key64(self, role: Role) -> bytes:
        return bytes(self.client_key64 if role is Role.CLIENT else self.server_key64)

    def token(self, role: Role) -> int:
        """The token that identifies this connection *at* ``role`` (sent by its peer on join)."""
        return self.client_token if role is Role.CLIENT else self.server_token

    def join_key(self, role: Role) -> bytes:
        """The key with which ``role`` authenticates its side of a join."""
        return bytes(self.client_join_key if role is Role.CLIENT else self.server_join_key)

    def wipe(self) -> None:
        for buf in (self.client_key64, self.server_key64, self.client_join_key,
                    self.server_join_key):
            wipe(buf)

    @property
    def wiped(self) -> bool:
        return not any(any(b) for b in (self.client_key64, self.server_key64,
                                        self.client_join_key, self.server_join_key))

    def __repr__(self) -> str:
        return (f"ConnectionKeys(client_token={self.client_token:#010x}, "
                f"server_token={self.server_token:#010x}, keys=<hidden>)")

    __str__ = __repr__


def join_mac(join_key: bytes | bytearray, role: Role, token: int, subflow_id: int,
             client_nonce: bytes, server_nonce: bytes, join_fields: bytes = b"") -> bytes:
    """HMAC-SHA256 that proves ``role`` knows the connection secret when a subflow joins.

    Binding both nonces means a recorded join cannot be replayed against a fresh server nonce;
    ``join_fields`` (the JOIN SYN's address ID and backup flag) binds what the option says.
    """
    msg = (b"mptcpsec join " + role.value.encode() + b"\x00" + struct.pack("!I", token)
           + _subflow_context(subflow_id, client_nonce, server_nonce) + bytes(join_fields))
    return hmac.new(bytes(join_key), msg, hashlib.sha256).digest()


class KeySchedule:
    """Turns a connection secret into every key of the connection (papers/SPEC.md section 6).

    The schedule keeps its own copy of the connection secret and the subflow keys it has
    handed out, and erases all of them in ``wipe()``/``close()``.
    """

    def __init__(self, connection_secret: bytes | bytearray | Secret,
                 algorithm: str | Enum = "aes-128-gcm") -> None:
        raw = (connection_secret.buffer if isinstance(connection_secret, Secret)
               else connection_secret)
        if len(raw) != SECRET_LEN:
            raise InvalidKeyError(f"connection secret must be {SECRET_LEN} bytes, got {len(raw)}")
        self.algorithm = aead_name(algorithm)
        self._secret = bytearray(raw)
        self._issued: list[SubflowKeys | ConnectionKeys] = []
        self.connection = self._connection_keys()

    def _expand(self, label: bytes, context: bytes = b"", length: int = SECRET_LEN) -> bytearray:
        if not any(self._secret):
            raise InvalidKeyError("key schedule was wiped")
        return hkdf_expand_label(self._secret, label, context, length)

    def _connection_keys(self) -> ConnectionKeys:
        from mptcpsec.crypto.rfc8684 import idsn_from_key, token_from_key

        ck = ConnectionKeys(
            client_key64=self._expand(b"c key64", length=KEY64_LEN),
            server_key64=self._expand(b"s key64", length=KEY64_LEN),
            client_join_key=self._expand(b"c join"),
            server_join_key=self._expand(b"s join"),
        )
        ck.client_token = token_from_key(bytes(ck.client_key64))
        ck.server_token = token_from_key(bytes(ck.server_key64))
        ck.client_idsn = idsn_from_key(bytes(ck.client_key64))
        ck.server_idsn = idsn_from_key(bytes(ck.server_key64))
        self._issued.append(ck)
        return ck

    def subflow_keys(self, subflow_id: int, client_nonce: bytes,
                     server_nonce: bytes) -> SubflowKeys:
        """Generation-0 keys of both directions of a subflow, bound to its join nonces."""
        ss = self._expand(b"subflow", _subflow_context(subflow_id, client_nonce, server_nonce))
        try:
            alg = self.algorithm.encode()
            c2s = DirectionKeys.from_secret(self.algorithm,
                                            hkdf_expand_label(ss, b"c ap traffic", alg, SECRET_LEN))
            s2c = DirectionKeys.from_secret(self.algorithm,
                                            hkdf_expand_label(ss, b"s ap traffic", alg, SECRET_LEN))
        finally:
            wipe(ss)
        keys = SubflowKeys(subflow_id, c2s, s2c)
        self._issued.append(keys)
        return keys

    def early_keys(self, subflow_id: int, client_nonce: bytes) -> DirectionKeys:
        """Client-to-server keys for data sent with a join before the server's nonce is known.

        Only the client nonce binds them, so a server MUST refuse a client nonce it has seen
        on this connection (replayed join); the regular subflow keys replace them at once.
        """
        ctx = _subflow_context(subflow_id, client_nonce, b"") + self.algorithm.encode()
        ek = DirectionKeys.from_secret(self.algorithm, self._expand(b"c early traffic", ctx))
        self._issued.append(SubflowKeys(subflow_id, ek, ek))
        return ek

    def wipe(self) -> None:
        """Erase the connection secret and every key this schedule handed out."""
        wipe(self._secret)
        for item in self._issued:
            item.wipe()

    close = wipe

    @property
    def wiped(self) -> bool:
        return not any(self._secret) and all(i.wiped for i in self._issued)

    def __repr__(self) -> str:
        state = "wiped" if not any(self._secret) else "live"
        return f"KeySchedule(algorithm={self.algorithm!r}, {state})"

    __str__ = __repr__


def derive_connection_secret(mode: str, ikm: bytes | bytearray, context: bytes = b"",
                             salt: bytes = b"") -> Secret:
    """connection_secret = HKDF-Expand-Label(HKDF-Extract(salt, ikm), "conn " + mode, context, 32).

    Putting the mode in the label keeps secrets from different modes apart even from equal
    input keying material.
    """
    prk = hkdf_extract(salt, ikm)
    try:
        return Secret.adopt(hkdf_expand_label(prk, b"conn " + mode.encode(), context, SECRET_LEN))
    finally:
        wipe(prk)

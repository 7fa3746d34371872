"""``split-path`` mode: an X25519 exchange whose messages are spread over two subflows.

In the spirit of SMKEX (Costea et al., CCS 2018): the key shares travel on path 0, fresh
nonces and a hash of the whole transcript on path 1, then each end confirms the key on both
paths. An attacker who is active on one path only cannot substitute a value there without
the other path contradicting it, so both ends abort with a ``KeyExchangeError`` naming the
failed check. An attacker active on *both* paths at once can still run two exchanges (one per
end); only the optional server identity key (Ed25519, trusted on first use) stops that.

Flow (papers/SPEC.md section 7.3), one round trip of the slower path:

    path 0  C -> S  CLIENT_SHARE   session_id, X25519 share
    path 1  C -> S  CLIENT_NONCE   session_id, client nonce, SHA-256(CLIENT_SHARE)
    path 0  S -> C  SERVER_SHARE   session_id, X25519 share, server confirmation (path 0)
    path 1  S -> C  SERVER_NONCE   session_id, server nonce, [identity], transcript hash,
                                   [signature], server confirmation (path 1)
    both    C -> S  CLIENT_FINISHED session_id, client confirmation (per path)

The client has the key after one round trip and its CLIENT_FINISHED can precede its first
data on each path; the server accepts data once both confirmations verified.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.signing

from mptcpsec.crypto import keylog
from mptcpsec.crypto.keylog import KeyLogWriter
from mptcpsec.crypto.keyschedule import Role, wipe
from mptcpsec.crypto.known_hosts import IDENTITY_LEN, KnownHosts
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

from ..errors import IdentityMismatchError as IdentityMismatchError

MODE = "split-path"
VERSION = 1
SHARE_PATH = 0
NONCE_PATH = 1
PATH_NAMES = {SHARE_PATH: "path 0 (shares)", NONCE_PATH: "path 1 (nonces)"}

SESSION_ID_LEN = 32
SHARE_LEN = 32
NONCE_LEN = 32
HASH_LEN = 32
CONFIRM_LEN = 32
SIGNATURE_LEN = 64
SIGNATURE_CONTEXT = b"mptcpsec split-path server signature\x00"
CLIENT_SIGNATURE_CONTEXT = b"mptcpsec split-path client signature\x00"

CLIENT_SHARE = 0x11
CLIENT_NONCE = 0x12
CLIENT_FINISHED = 0x13
SERVER_SHARE = 0x21
SERVER_NONCE = 0x22
MESSAGE_NAMES = {CLIENT_SHARE: "CLIENT_SHARE", CLIENT_NONCE: "CLIENT_NONCE",
                 CLIENT_FINISHED: "CLIENT_FINISHED", SERVER_SHARE: "SERVER_SHARE",
                 SERVER_NONCE: "SERVER_NONCE", ABORT_TYPE: "ABORT"}
_PREFIX = 2 + SESSION_ID_LEN
MAX_SPLITPATH_MESSAGE = 512


@dataclass
class SplitPathConfig:
    """One end of a split-path exchange.

    Server: ``identity_seed`` (32-byte Ed25519 seed) makes it sign the transcript.
    Client: ``known_hosts`` (a :class:`~mptcpsec.crypto.known_hosts.KnownHosts` store) and
    ``server_name``
    (the name to look the key up under, e.g. "host:port") enable trust on first use;
    ``require_identity`` refuses servers that do not sign.
    Client authentication (a gateway's clients): a client with ``client_identity_seed``
    signs the transcript in its CLIENT_FINISHED on path 1; a server with
    ``allowed_clients`` (Ed25519 public key -> name) refuses clients not in it, and the
    name becomes the connection's ``peer_identity``.
    """

    role: Role
    identity_seed: bytes | None = field(default=None, repr=False)
    known_hosts: KnownHosts | None = None
    server_name: str | None = None
    require_identity: bool = False
    #: Key log lines go here (an open text file, ``io.StringIO``); None: no key log.
    keylog_file: KeyLogWriter | None = field(default=None, repr=False, compare=False)
    client_identity_seed: bytes | None = field(default=None, repr=False)
    allowed_clients: dict[bytes, str] | None = None

    def __post_init__(self) -> None:
        self.keylog_file = keylog.check_writer(self.keylog_file)
        if self.known_hosts is not None and not isinstance(self.known_hosts, KnownHosts):
            raise KeyExchangeError("known_hosts takes a store (mptcpsec.crypto.known_hosts."
                                   "KnownHosts, e.g. mptcpsec.aio.stores.FileKnownHosts), "
                                   f"not {type(self.known_hosts).__name__}")


def generate_identity_seed() -> bytes:
    """A fresh Ed25519 identity seed for a server (keep it secret, store it 0600)."""
    return secrets.token_bytes(32)


def identity_public_key(seed: bytes) -> bytes:
    return bytes(nacl.signing.SigningKey(seed).verify_key)


def _client_proof_th(th: bytes, identity: bytes, signature: bytes) -> bytes:
    """What the client's path-1 confirmation covers when it proves an identity: the
    transcript and the proof, so the proof cannot be swapped without the key."""
    return hashlib.sha256(th + identity + signature).digest()


def peek_session_id(message: bytes) -> bytes | None:
    """The session id of a split-path message, so a server can route path 1 to its exchange."""
    if len(message) >= _PREFIX and message[0] in (CLIENT_SHARE, CLIENT_NONCE, CLIENT_FINISHED):
        return bytes(message[2:_PREFIX])
    return None


# --------------------------------------------------------------------------- helpers


def _x25519(private: bytes | bytearray, public: bytes) -> bytearray:
    try:
        shared = bytearray(nacl.bindings.crypto_scalarmult(bytes(private), public))
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError, TypeError):
        shared = bytearray(32)
    if not any(shared):
        raise ValueError("low-order X25519 share")
    return shared


class _Base:
    mode = MODE
    paths = 2

    def __init__(self, config: SplitPathConfig) -> None:
        self.config = config
        self.role = config.role
        self._private = bytearray(secrets.token_bytes(32))
        self._share = nacl.bindings.crypto_scalarmult_base(bytes(self._private))
        self._secrets: HandshakeSecrets | None = None
        self._result: KeyExchangeResult | None = None
        self._error: KeyExchangeError | None = None
        self._started = False
        #: Paths that delivered a well-formed message of this exchange.
        self._valid_paths: set[int] = set()
        #: ABORT messages ignored because their path had delivered nothing valid (server).
        self.ignored_aborts = 0

    @property
    def done(self) -> bool:
        return self._result is not None or self._error is not None

    @property
    def error(self) -> KeyExchangeError | None:
        return self._error

    def close(self) -> None:
        wipe(self._private)
        if self._secrets is not None:
            self._secrets.wipe()
        if self._result is not None:
            self._result.wipe()

    def _abort(self, reason: str, exc_type: type[KeyExchangeError] = KeyExchangeError) -> Step:
        """Fail here and tell the peer on both paths (one of them is clean)."""
        self._error = exc_type(f"split-path: {reason}")
        wipe(self._private)
        if self._secrets is not None:
            self._secrets.wipe()
        msg = encode_abort(VERSION, reason)
        return Step(send=[(SHARE_PATH, msg), (NONCE_PATH, msg)], error=self._error)

    def _check(self, path: int, message: bytes) -> Step | None:
        """Common checks; a Step to return at once, or None to go on."""
        if self._error is not None:
            return Step(error=self._error)
        if path not in PATH_NAMES:
            return self._abort(f"message on unknown path {path}")
        if len(message) > MAX_SPLITPATH_MESSAGE or len(message) < 2:
            return self._abort(f"malformed message on {PATH_NAMES[path]} "
                               f"({len(message)} bytes)")
        if message[0] == ABORT_TYPE:
            if self.role is Role.SERVER and path not in self._valid_paths:
                # SPEC 7.3: anyone who saw the session id on path 0 can open a "path 1"
                # and abort; only a path that delivered a valid message may abort.
                self.ignored_aborts += 1
                return Step()
            self._error = KeyExchangeError(
                f"split-path: peer aborted on {PATH_NAMES[path]}: {decode_abort(message)}")
            wipe(self._private)
            return Step(error=self._error)
        if message[1] != VERSION:
            return self._abort(f"unsupported version {message[1]} on {PATH_NAMES[path]}")
        return None

    def _expect(self, message: bytes, mtype: int, length: int, path: int,
                want_path: int | None, session_id: bytes | None) -> str | None:
        """Why ``message`` is not a well-formed ``mtype`` for this session, or None."""
        name = MESSAGE_NAMES.get(mtype, hex(mtype))
        if want_path is not None and path != want_path:
            return f"{name} received on {PATH_NAMES[path]}, expected {PATH_NAMES[want_path]}"
        if len(message) != length:
            return f"malformed {name} on {PATH_NAMES[path]} ({len(message)} bytes)"
        if session_id is not None and message[2:_PREFIX] != session_id:
            return f"session id of {name} on {PATH_NAMES[path]} does not match this exchange"
        return None

    def _make_result(self, session_id: bytes, client_nonce: bytes, server_nonce: bytes,
                     peer_identity: str | None) -> KeyExchangeResult:
        assert self._secrets is not None
        self._secrets.wipe_finished_keys()
        wipe(self._private)
        secret = self._secrets.connection_secret
        keylog.log_connection_secret(self.config.keylog_file, session_id, secret)
        return KeyExchangeResult(mode=MODE, role=self.role, connection_secret=secret,
                                 connection_id=session_id, client_nonce=client_nonce,
                                 server_nonce=server_nonce, peer_identity=peer_identity)


def _server_share_core(session_id: bytes, share: bytes) -> bytes:
    return bytes([SERVER_SHARE, VERSION]) + session_id + share


def _server_nonce_core(session_id: bytes, nonce: bytes, identity: bytes) -> bytes:
    return bytes([SERVER_NONCE, VERSION]) + session_id + nonce + bytes([len(identity)]) + identity


def _transcript_hash(client_share: bytes, client_nonce: bytes, server_share_core: bytes,
                     server_nonce_core: bytes) -> bytes:
    h = hashlib.sha256()
    for part in (client_share, client_nonce, server_share_core, server_nonce_core):
        h.update(struct.pack("!H", len(part)) + part)
    return h.digest()


class SplitPathClient(_Base):
    """The connecting end: sends its share on path 0 and its nonce on path 1 at once."""

    def __init__(self, config: SplitPathConfig) -> None:
        if config.role is not Role.CLIENT:
            raise ValueError("SplitPathClient needs role=CLIENT")
        super().__init__(config)
        self.session_id = secrets.token_bytes(SESSION_ID_LEN)
        self._nonce = secrets.token_bytes(NONCE_LEN)
        self._client_share_msg = b""
        self._client_nonce_msg = b""
        self._server_share: bytes | None = None
        self._server_nonce: bytes | None = None

    def start(self) -> Step:
        if self._started:
            raise KeyExchangeError("split-path: start() called twice")
        self._started = True
        prefix = bytes([CLIENT_SHARE, VERSION]) + self.session_id
        self._client_share_msg = prefix + self._share
        share_hash = hashlib.sha256(self._client_share_msg).digest()
        self._client_nonce_msg = (bytes([CLIENT_NONCE, VERSION]) + self.session_id + self._nonce
                                  + share_hash)
        return Step(send=[(SHARE_PATH, self._client_share_msg),
                          (NONCE_PATH, self._client_nonce_msg)])

    def receive(self, path: int, message: bytes) -> Step:
        early = self._check(path, message)
        if early is not None:
            return early
        if self._result is not None or not self._started:
            return self._abort(f"unexpected message on {PATH_NAMES[path]}")
        mtype = message[0]
        sid = self.session_id
        if mtype == SERVER_SHARE and self._server_share is None:
            why = self._expect(message, SERVER_SHARE, _PREFIX + SHARE_LEN + CONFIRM_LEN, path,
                               SHARE_PATH, sid)
            if why:
                return self._abort(why)
            self._server_share = bytes(message)
        elif mtype == SERVER_NONCE and self._server_nonce is None:
            why = self._check_server_nonce_layout(message, path)
            if why:
                return self._abort(why)
            self._server_nonce = bytes(message)
        else:
            name = MESSAGE_NAMES.get(mtype, f"type {mtype:#x}")
            return self._abort(f"unexpected {name} on {PATH_NAMES[path]}")
        if self._server_share is None or self._server_nonce is None:
            return Step()
        return self._complete()

    def _check_server_nonce_layout(self, message: bytes, path: int) -> str | None:
        if path != NONCE_PATH:
            return f"SERVER_NONCE received on {PATH_NAMES[path]}, expected {PATH_NAMES[NONCE_PATH]}"
        base = _PREFIX + NONCE_LEN
        if len(message) < base + 1:
            return f"malformed SERVER_NONCE on {PATH_NAMES[path]}"
        id_len = message[base]
        sig_len = SIGNATURE_LEN if id_len else 0
        want = base + 1 + id_len + HASH_LEN + 1 + sig_len + CONFIRM_LEN
        if id_len not in (0, IDENTITY_LEN):
            return f"malformed SERVER_NONCE on {PATH_NAMES[path]} (identity length {id_len})"
        if len(message) != want or message[want - CONFIRM_LEN - sig_len - 1] != sig_len:
            return f"malformed SERVER_NONCE on {PATH_NAMES[path]} ({len(message)} bytes)"
        return self._expect(message, SERVER_NONCE, want, path, NONCE_PATH, self.session_id)

    def _complete(self) -> Step:
        assert self._server_share is not None and self._server_nonce is not None
        ss, sn, sid = self._server_share, self._server_nonce, self.session_id
        server_share = ss[_PREFIX:_PREFIX + SHARE_LEN]
        confirm0 = ss[_PREFIX + SHARE_LEN:]
        off = _PREFIX
        server_nonce = sn[off:off + NONCE_LEN]
        off += NONCE_LEN
        id_len = sn[off]
        identity = sn[off + 1:off + 1 + id_len]
        off += 1 + id_len
        their_hash = sn[off:off + HASH_LEN]
        off += HASH_LEN
        sig_len = sn[off]
        signature = sn[off + 1:off + 1 + sig_len]
        confirm1 = sn[off + 1 + sig_len:]

        th = _transcript_hash(self._client_share_msg, self._client_nonce_msg,
                              _server_share_core(sid, server_share),
                              _server_nonce_core(sid, server_nonce, identity))
        if not hmac.compare_digest(th, their_hash):
            return self._abort(
                "transcript hash received on path 1 does not match the transcript this end "
                "saw (a share on path 0 or a nonce on path 1 was substituted)")
        peer_identity = None
        if identity:
            try:
                nacl.signing.VerifyKey(identity).verify(SIGNATURE_CONTEXT + th, signature)
            except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
                return self._abort("server identity signature over the transcript is invalid")
            peer_identity = identity.hex()
        why = self._check_identity(identity)
        if why:
            return self._abort(why, IdentityMismatchError)
        try:
            dh = _x25519(self._private, server_share)
        except ValueError:
            return self._abort("server X25519 share on path 0 is invalid (low order)")
        self._secrets = derive_handshake_secrets(MODE, dh, th)
        wipe(dh)
        for p, got in ((SHARE_PATH, confirm0), (NONCE_PATH, confirm1)):
            if not hmac.compare_digest(self._secrets.confirm(Role.SERVER, th, p), got):
                return self._abort(f"server key confirmation on {PATH_NAMES[p]} failed")
        why = self._remember_identity(identity)
        if why:
            return self._abort(why, IdentityMismatchError)
        proof = b""
        th1 = th
        if self.config.client_identity_seed is not None:
            signer = nacl.signing.SigningKey(self.config.client_identity_seed)
            proof = (bytes(signer.verify_key)
                     + signer.sign(CLIENT_SIGNATURE_CONTEXT + th).signature)
            th1 = _client_proof_th(th, proof[:IDENTITY_LEN], proof[IDENTITY_LEN:])
        sends = [(SHARE_PATH, bytes([CLIENT_FINISHED, VERSION]) + sid
                  + self._secrets.confirm(Role.CLIENT, th, SHARE_PATH)),
                 (NONCE_PATH, bytes([CLIENT_FINISHED, VERSION]) + sid
                  + self._secrets.confirm(Role.CLIENT, th1, NONCE_PATH) + proof)]
        self._result = self._make_result(sid, self._nonce, server_nonce, peer_identity)
        return Step(send=sends, result=self._result)

    def _check_identity(self, identity: bytes) -> str | None:
        cfg = self.config
        store = cfg.known_hosts
        if not identity:
            if cfg.require_identity:
                return "server did not prove an identity key and one is required"
            if store is not None and cfg.server_name and \
                    store.get(cfg.server_name) is not None:
                return (f"server {cfg.server_name!r} is in known_hosts but did not prove its "
                        "identity key (possible man-in-the-middle)")
            return None
        if store is None or not cfg.server_name:
            return None
        known = store.get(cfg.server_name)
        if known is not None and not hmac.compare_digest(known, identity):
            return (f"server identity key for {cfg.server_name!r} does not match known_hosts "
                    "(possible man-in-the-middle)")
        return None

    def _remember_identity(self, identity: bytes) -> str | None:
        """Trust on first use, only once the server's confirmations on both paths verified
        (SPEC section 7.3): a key that an attacker active on one path substituted, with a
        transcript hash and signature of its own, never reaches the store."""
        cfg = self.config
        store = cfg.known_hosts
        if not identity or store is None or not cfg.server_name:
            return None
        known = store.get(cfg.server_name)
        if known is None:
            try:
                store.remember(cfg.server_name, identity)
                return None
            except KeyExchangeError as exc:
                # Another connection stored a key for this name meanwhile; compare with it.
                known = store.get(cfg.server_name)
                if known is None:
                    return f"known_hosts refused the identity key for {cfg.server_name!r}: {exc}"
        if not hmac.compare_digest(known, identity):
            return (f"server identity key for {cfg.server_name!r} does not match the key "
                    "stored in known_hosts meanwhile (possible man-in-the-middle)")
        return None


class SplitPathServer(_Base):
    """The accepting end: answers once it holds both client messages."""

    def __init__(self, config: SplitPathConfig) -> None:
        if config.role is not Role.SERVER:
            raise ValueError("SplitPathServer needs role=SERVER")
        super().__init__(config)
        self._nonce = secrets.token_bytes(NONCE_LEN)
        self.session_id: bytes | None = None
        self._client_share: bytes | None = None
        self._client_nonce: bytes | None = None
        self._th = b""
        self._client_nonce_value = b""
        self._confirmed: set[int] = set()
        self._client_identity: str | None = None

    def start(self) -> Step:
        self._started = True
        return Step()

    def receive(self, path: int, message: bytes) -> Step:
        early = self._check(path, message)
        if early is not None:
            return early
        if self._result is not None:
            return self._abort(f"unexpected message on {PATH_NAMES[path]}")
        mtype = message[0]
        sid = self.session_id
        if mtype == CLIENT_SHARE and self._client_share is None:
            why = self._expect(message, CLIENT_SHARE, _PREFIX + SHARE_LEN, path, SHARE_PATH, sid)
            if why:
                return self._abort(why)
            self._client_share = bytes(message)
            self._valid_paths.add(path)
        elif mtype == CLIENT_NONCE and self._client_nonce is None:
            why = self._expect(message, CLIENT_NONCE, _PREFIX + NONCE_LEN + HASH_LEN, path,
                               NONCE_PATH, sid)
            if why:
                return self._abort(why)
            self._client_nonce = bytes(message)
            self._valid_paths.add(path)
        elif mtype == CLIENT_FINISHED and self._secrets is not None and path not in self._confirmed:
            return self._on_finished(path, message)
        else:
            name = MESSAGE_NAMES.get(mtype, f"type {mtype:#x}")
            return self._abort(f"unexpected {name} on {PATH_NAMES[path]}")
        self.session_id = bytes(message[2:_PREFIX])
        if self._client_share is None or self._client_nonce is None:
            return Step()
        return self._respond()

    def _respond(self) -> Step:
        assert self._client_share is not None and self._client_nonce is not None
        cs, cn = self._client_share, self._client_nonce
        sid = bytes(cs[2:_PREFIX])
        share_hash = cn[_PREFIX + NONCE_LEN:]
        if not hmac.compare_digest(hashlib.sha256(cs).digest(), share_hash):
            return self._abort("client share received on path 0 does not match its hash "
                               "received on path 1 (the share was substituted)")
        client_nonce = cn[_PREFIX:_PREFIX + NONCE_LEN]
        try:
            dh = _x25519(self._private, cs[_PREFIX:])
        except ValueError:
            return self._abort("client X25519 share on path 0 is invalid (low order)")
        identity = b""
        signer = None
        if self.config.identity_seed is not None:
            signer = nacl.signing.SigningKey(self.config.identity_seed)
            identity = bytes(signer.verify_key)
        share_core = _server_share_core(sid, self._share)
        nonce_core = _server_nonce_core(sid, self._nonce, identity)
        th = _transcript_hash(cs, cn, share_core, nonce_core)
        self._th = th
        self._secrets = derive_handshake_secrets(MODE, dh, th)
        wipe(dh)
        wipe(self._private)
        signature = signer.sign(SIGNATURE_CONTEXT + th).signature if signer else b""
        m0 = share_core + self._secrets.confirm(Role.SERVER, th, SHARE_PATH)
        m1 = (nonce_core + th + bytes([len(signature)]) + signature
              + self._secrets.confirm(Role.SERVER, th, NONCE_PATH))
        self._client_nonce_value = client_nonce
        return Step(send=[(SHARE_PATH, m0), (NONCE_PATH, m1)])

    def _on_finished(self, path: int, message: bytes) -> Step:
        assert self._secrets is not None and self.session_id is not None
        plain = _PREFIX + CONFIRM_LEN
        proved = path == NONCE_PATH and len(message) == plain + IDENTITY_LEN + SIGNATURE_LEN
        why = self._expect(message, CLIENT_FINISHED, len(message) if proved else plain, path,
                           None, self.session_id)
        if why:
            return self._abort(why)
        th = self._th
        if proved:
            identity = bytes(message[plain:plain + IDENTITY_LEN])
            signature = bytes(message[plain + IDENTITY_LEN:])
            th = _client_proof_th(self._th, identity, signature)
        want = self._secrets.confirm(Role.CLIENT, th, path)
        if not hmac.compare_digest(want, message[_PREFIX:plain]):
            return self._abort(f"client key confirmation on {PATH_NAMES[path]} failed")
        allowed = self.config.allowed_clients
        if proved:
            try:
                nacl.signing.VerifyKey(identity).verify(CLIENT_SIGNATURE_CONTEXT + self._th,
                                                        signature)
            except (nacl.exceptions.BadSignatureError, ValueError):
                return self._abort("client identity signature over the transcript is invalid")
            if allowed is not None and identity not in allowed:
                return self._abort(f"client identity {identity.hex()} is not allowed")
            self._client_identity = allowed[identity] if allowed else identity.hex()
        elif path == NONCE_PATH and allowed is not None:
            return self._abort("client did not prove an identity key and one is required")
        self._confirmed.add(path)
        if len(self._confirmed) < 2:
            return Step()
        self._result = self._make_result(self.session_id, self._client_nonce_value,
                                         self._nonce, self._client_identity)
        return Step(result=self._result)


def split_path(config: SplitPathConfig) -> SplitPathClient | SplitPathServer:
    """The split-path key exchange object for ``config.role``."""
    if config.role is Role.CLIENT:
        return SplitPathClient(config)
    return SplitPathServer(config)

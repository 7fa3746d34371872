"""``tls`` mode: a real TLS 1.3 handshake on the first subflow, sans-I/O over memory BIOs.

The handshake bytes travel in plaintext HANDSHAKE records (any split; the receiver feeds
them to OpenSSL in order). When it completes, both ends export 32 bytes with the RFC 8446
exporter (label ``EXPORTER-MPTCPsec``, empty context) and derive the connection secret from
them (papers/SPEC.md section 7.2); TLS is then abandoned and MPTCPsec records take over.

Peer verification is mandatory for a client: a CA file (chain and host name checked) or a
pinned SHA-256 certificate fingerprint. A server may require client certificates, checked
the same way. OpenSSL's session tickets are suppressed because nothing would read them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from OpenSSL import SSL, crypto

from mptcpsec.crypto import keylog
from mptcpsec.crypto.certs import (
    add_trusted_certificates,
    fingerprint_sha256,
    hostname_matches,
    parse_fingerprint,
    use_certificate,
)
from mptcpsec.crypto.exporter import EXPORTER_LEN, MPTCPSEC_EXPORTER_LABEL
from mptcpsec.crypto.keylog import KeyLogWriter
from mptcpsec.crypto.keyschedule import Role, derive_connection_secret, wipe
from mptcpsec.crypto.kx import MAX_MESSAGE_LEN, KeyExchangeResult, Step
from mptcpsec.errors import KeyExchangeError

MODE = "tls"
_BIO_READ = 65536
#: Cap on TLS bytes buffered before the handshake completes (a hostile peer cannot grow it).
MAX_HANDSHAKE_BYTES = 256 * 1024

_X509_ERRORS = {
    2: "unable to get issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
}


@dataclass
class TlsConfig:
    """Configuration of one end of a ``tls`` key exchange.

    Own certificate: ``cert_pem`` (leaf first, then intermediates) and ``key_pem`` bytes
    (required for a server, optional for a client). Peer verification: ``ca_pem`` (trusted
    certificates; a client then needs ``server_name``, the host name or address the
    server's certificate must name) or ``pin_sha256`` (the
    peer leaf's SHA-256 fingerprint; the chain is then not consulted). The caller reads any
    files (papers/SPEC.md section 7.2): nothing here opens one.
    """

    role: Role
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    ca_pem: bytes | None = None
    pin_sha256: str | bytes | None = None
    server_name: str | None = None
    require_client_cert: bool = False
    #: TLS 1.3 suites, OpenSSL syntax (e.g. "TLS_AES_128_GCM_SHA256"); None = defaults.
    ciphersuites: str | None = None
    #: Key log lines go here (an open text file, ``io.StringIO``); None: no key log.
    keylog_file: KeyLogWriter | None = field(default=None, repr=False, compare=False)
    #: Keep OpenSSL's exporter_master_secret (from the key log callback) for diagnostics.
    capture_exporter_secret: bool = False

    def __post_init__(self) -> None:
        self.keylog_file = keylog.check_writer(self.keylog_file)

    def __repr__(self) -> str:
        return (f"TlsConfig(role={self.role.value!r}, ca_pem={self.ca_pem is not None}, "
                f"pin_sha256={self.pin_sha256!r}, server_name={self.server_name!r}, "
                f"require_client_cert={self.require_client_cert})")


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class TlsKeyExchange:
    """Sans-I/O TLS 1.3 handshake that ends in an MPTCPsec connection secret."""

    mode = MODE
    paths = 1

    def __init__(self, config: TlsConfig) -> None:
        self.config = config
        self.role = config.role
        self._pin = parse_fingerprint(config.pin_sha256) if config.pin_sha256 else None
        self._verify_failure: str | None = None
        self._exporter_secret: bytearray | None = None
        self._received = 0
        self._result: KeyExchangeResult | None = None
        self._error: KeyExchangeError | None = None
        self._started = False
        self._conn = SSL.Connection(self._make_context())
        if self.role is Role.CLIENT:
            if config.server_name and not _is_ip_literal(config.server_name):
                # RFC 6066 section 3: SNI carries host names only, never address literals.
                self._conn.set_tlsext_host_name(config.server_name.encode("idna"))
            self._conn.set_connect_state()
        else:
            self._conn.set_accept_state()

    # ------------------------------------------------------------------ setup

    def _make_context(self) -> SSL.Context:
        cfg = self.config
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        if cfg.ciphersuites:
            ctx.set_tls13_ciphersuites(cfg.ciphersuites.encode())
        ctx.set_keylog_callback(self._on_keylog)
        try:
            self._load_own_certificate(ctx)
            self._configure_verification(ctx)
        except (SSL.Error, crypto.Error, OSError, ValueError, TypeError) as exc:
            raise KeyExchangeError(f"tls: bad configuration: {exc}") from None
        return ctx

    def _load_own_certificate(self, ctx: SSL.Context) -> None:
        cfg = self.config
        if cfg.cert_pem:
            if not cfg.key_pem:
                raise ValueError("cert_pem given without key_pem")
            use_certificate(ctx, cfg.cert_pem, cfg.key_pem)
        elif self.role is Role.SERVER:
            raise ValueError("a tls server needs a certificate and key")

    def _configure_verification(self, ctx: SSL.Context) -> None:
        cfg = self.config
        has_ca = bool(cfg.ca_pem)
        if cfg.ca_pem:
            add_trusted_certificates(ctx, cfg.ca_pem)
        if self.role is Role.CLIENT:
            if not has_ca and self._pin is None:
                raise ValueError("a tls client needs a CA file or a pinned certificate "
                                 "fingerprint to verify the server")
            if self._pin is None and not cfg.server_name:
                # Without a name, every certificate the CA ever signed would pass (SPEC 7.2).
                raise ValueError("a tls client verifying with a CA needs server_name (the host "
                                 "name or address the certificate must name)")
            ctx.set_verify(SSL.VERIFY_PEER, self._verify)
        elif cfg.require_client_cert:
            if not has_ca and self._pin is None:
                raise ValueError("requiring client certificates needs a CA file or a pin")
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        elif has_ca or self._pin is not None:
            ctx.set_verify(SSL.VERIFY_PEER, self._verify)

    # ------------------------------------------------------------------ callbacks

    def _on_keylog(self, conn: SSL.Connection, line: bytes) -> None:
        keylog.log_tls_line(self.config.keylog_file, line)
        if self.config.capture_exporter_secret and line.startswith(b"EXPORTER_SECRET "):
            self._exporter_secret = bytearray(bytes.fromhex(line.split()[2].decode()))

    def _verify(self, conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int,
                ok: int) -> bool:
        who = "server" if self.role is Role.CLIENT else "client"
        if self._pin is not None:
            if depth != 0:
                return True  # a pin names the leaf; the chain is not consulted
            got = fingerprint_sha256(cert.to_cryptography())
            if bytes.fromhex(got) == self._pin:
                return True
            self._verify_failure = (f"pinned {who} certificate fingerprint mismatch: expected "
                                    f"{self._pin.hex()}, {who} presented {got}")
            return False
        if not ok:
            reason = _X509_ERRORS.get(errnum, f"X.509 error {errnum}")
            self._verify_failure = (f"{who} certificate verification failed at depth {depth}: "
                                    f"{reason}")
            return False
        name = self.config.server_name
        if (depth == 0 and self.role is Role.CLIENT and name
                and not hostname_matches(cert.to_cryptography(), name)):
            self._verify_failure = f"server certificate does not match host name {name!r}"
            return False
        return True

    # ------------------------------------------------------------------ sans-I/O API

    @property
    def done(self) -> bool:
        return self._result is not None or self._error is not None

    @property
    def exporter_master_secret(self) -> bytearray | None:
        """OpenSSL's exporter_master_secret, if ``capture_exporter_secret`` was set."""
        return self._exporter_secret

    @property
    def cipher_name(self) -> str | None:
        return self._conn.get_cipher_name()

    def export(self, label: bytes, length: int, context: bytes | None = None) -> bytes:
        """OpenSSL's RFC 8446 exporter (valid after the handshake)."""
        return bytes(self._conn.export_keying_material(label, length, context))

    def start(self) -> Step:
        if self._started:
            raise KeyExchangeError("tls: start() called twice")
        self._started = True
        if self.role is Role.SERVER:
            return Step()
        return self._advance()

    def receive(self, path: int, message: bytes) -> Step:
        if self._error is not None:
            return Step(error=self._error)
        if path != 0:
            return self._fail(f"tls: handshake data on subflow {path}, expected subflow 0")
        if self._result is not None:
            # After completion only an alert can arrive (e.g. the server refused our
            # client certificate): surface it as the peer's abort.
            return self._after_completion(message)
        self._received += len(message)
        if self._received > MAX_HANDSHAKE_BYTES:
            return self._fail(f"tls: peer sent over {MAX_HANDSHAKE_BYTES} handshake bytes")
        if message:  # OpenSSL refuses an empty write; an empty piece carries nothing anyway
            self._conn.bio_write(bytes(message))
        return self._advance()

    def close(self) -> None:
        if self._exporter_secret is not None:
            wipe(self._exporter_secret)
        if self._result is not None:
            self._result.wipe()

    # ------------------------------------------------------------------ internals

    def _drain(self) -> list[tuple[int, bytes]]:
        out = bytearray()
        while True:
            try:
                out += self._conn.bio_read(_BIO_READ)
            except SSL.WantReadError:
                break
        return [(0, bytes(out[i:i + MAX_MESSAGE_LEN])) for i in range(0, len(out),
                                                                       MAX_MESSAGE_LEN)]

    def _fail(self, reason: str, send: list[tuple[int, bytes]] | None = None) -> Step:
        self._error = KeyExchangeError(reason)
        return Step(send=send or [], error=self._error)

    def _advance(self) -> Step:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return Step(send=self._drain())
        except SSL.Error as exc:
            alert = self._drain()  # OpenSSL queued an alert for the peer
            return self._fail(self._describe(exc), alert)
        sends = self._drain()
        if self.role is Role.SERVER:
            # The server's handshake ends on the client's Finished; what OpenSSL writes now
            # is only NewSessionTicket, which nobody would read: drop it.
            sends = []
        try:
            self._result = self._finish()
        except KeyExchangeError as exc:
            self._error = exc
            return Step(send=sends, error=exc)
        return Step(send=sends, result=self._result)

    def _describe(self, exc: SSL.Error) -> str:
        if self._verify_failure:
            return f"tls: {self._verify_failure}"
        detail = "; ".join(str(e[2]) for e in exc.args[0] if len(e) >= 3) if exc.args and \
            isinstance(exc.args[0], list) else str(exc)
        if "alert" in detail:
            return f"tls: peer aborted the handshake ({detail})"
        return f"tls: handshake failed ({detail or exc!r})"

    def _after_completion(self, message: bytes) -> Step:
        self._conn.bio_write(bytes(message))
        try:
            self._conn.recv(1)
        except SSL.WantReadError:
            return Step()
        except SSL.ZeroReturnError:
            return self._fail("tls: peer closed the TLS session after the handshake")
        except SSL.Error as exc:
            return self._fail(self._describe(exc))
        return self._fail("tls: unexpected TLS data after the handshake")

    def _finish(self) -> KeyExchangeResult:
        conn = self._conn
        if conn.get_protocol_version_name() != "TLSv1.3":
            raise KeyExchangeError("tls: peer did not negotiate TLS 1.3")
        peer = conn.get_peer_certificate(as_cryptography=True)
        if self.role is Role.CLIENT and peer is None:
            raise KeyExchangeError("tls: server presented no certificate")
        exported = bytearray(conn.export_keying_material(MPTCPSEC_EXPORTER_LABEL, EXPORTER_LEN))
        secret = derive_connection_secret(MODE, exported)
        wipe(exported)
        client_random = bytes(conn.client_random() or b"")
        server_random = bytes(conn.server_random() or b"")
        keylog.log_connection_secret(self.config.keylog_file, client_random, secret)
        return KeyExchangeResult(
            mode=MODE, role=self.role, connection_secret=secret, connection_id=client_random,
            client_nonce=client_random, server_nonce=server_random,
            peer_identity=fingerprint_sha256(peer) if peer is not None else None,
            details={"cipher": conn.get_cipher_name() or ""},
        )

"""`tls-over-plain`: one TLS 1.3 session carried over the plain multipath byte stream.

A comparison mode, never a default: integrity comes from TLS end to end, so a record
tampered on any one path breaks the single TLS session and with it the whole connection,
where MPTCPsec drops only the poisoned subflow. Sans-I/O through pyOpenSSL memory BIOs.
"""

from __future__ import annotations

import contextlib
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from ..crypto.certs import add_trusted_certificates, generate_self_signed, parse_fingerprint
from ..crypto.keyschedule import Role
from ..crypto.tls_keys import TlsConfig
from ..errors import TlsStreamError

__all__ = ["TlsAppStream", "TlsOverStream", "TlsStreamError"]


class TlsOverStream:
    """TLS records in, application bytes out (and back); the caller moves the bytes."""

    def __init__(self, role: Role, config: TlsConfig | None = None) -> None:
        cfg = config or TlsConfig(role)
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.set_options(SSL.OP_NO_TICKET)
        self._pin = parse_fingerprint(cfg.pin_sha256) if cfg.pin_sha256 else None
        if role is Role.SERVER:
            cert_pem, key_pem = cfg.cert_pem, cfg.key_pem
            if cert_pem is None or key_pem is None:
                bundle = generate_self_signed()
                cert_pem, key_pem = bundle.cert_pem, bundle.key_pem
            ctx.use_certificate(x509.load_pem_x509_certificate(cert_pem))
            ctx.use_privatekey(serialization.load_pem_private_key(key_pem, None))  # type: ignore[arg-type]
        else:
            # A comparison baseline: the peer is checked only when a pin or CA is given.
            if cfg.ca_pem:
                add_trusted_certificates(ctx, cfg.ca_pem)
                ctx.set_verify(SSL.VERIFY_PEER, lambda *a: a[-1] == 1)
            else:
                ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        self._conn = SSL.Connection(ctx)
        if role is Role.CLIENT:
            self._conn.set_connect_state()
        else:
            self._conn.set_accept_state()
        self.role = role
        self.handshake_done = False
        self._pending_app = bytearray()

    def start(self) -> bytes:
        """The client's first flight (empty for the server) (SPEC section 7.6)."""
        self._advance()
        return self._drain_bio()

    def _advance(self) -> None:
        if self.handshake_done:
            return
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return
        except SSL.Error as exc:
            raise TlsStreamError(f"TLS handshake over the multipath stream failed: {exc}") from None
        if self._pin is not None:
            cert = self._conn.get_peer_certificate(as_cryptography=True)
            der = cert.public_bytes(serialization.Encoding.DER) if cert else b""
            if hashlib.sha256(der).digest() != self._pin:
                raise TlsStreamError("TLS peer certificate does not match the pin")
        self.handshake_done = True

    def _drain_bio(self) -> bytes:
        out = bytearray()
        while True:
            try:
                chunk = self._conn.bio_read(1 << 16)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Feed TLS bytes from the stream; returns (application bytes, TLS bytes to send).

        SPEC section 7.6.
        """
        if data:
            self._conn.bio_write(data)
        self._advance()
        plain = bytearray()
        if self.handshake_done:
            while True:
                try:
                    chunk = self._conn.recv(1 << 16)
                except SSL.WantReadError:
                    break
                except SSL.ZeroReturnError:
                    break
                except SSL.Error as exc:
                    raise TlsStreamError(
                        f"TLS over the multipath stream failed: {exc}") from None
                if not chunk:
                    break
                plain += chunk
            if self._pending_app:
                pending, self._pending_app = bytes(self._pending_app), bytearray()
                self._write(pending)
        return bytes(plain), self._drain_bio()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self._conn.send(view[:16384])
            view = view[n:]

    def send(self, data: bytes) -> bytes:
        """Encrypt application bytes; returns TLS bytes for the stream (SPEC section 7.6)."""
        if not self.handshake_done:
            self._pending_app += data
            return self._drain_bio()
        try:
            self._write(bytes(data))
        except SSL.Error as exc:
            raise TlsStreamError(f"TLS over the multipath stream failed: {exc}") from None
        return self._drain_bio()

    def close(self) -> bytes:
        """The TLS close_notify alert (and anything still pending), for the stream.

        SPEC section 7.6.
        """
        if not self.handshake_done:
            return self._drain_bio()
        with contextlib.suppress(SSL.Error):
            self._conn.shutdown()
        return self._drain_bio()


class TlsAppStream:
    """The application's view of a `tls-over-plain` connection (SPEC section 7.6).

    It sits between the application and the connection's plain byte stream: writes are
    encrypted into the send buffer, the stream's bytes are decrypted into a bounded
    buffer that the application reads. Any TLS failure raises TlsStreamError, which the
    engine turns into a failed connection (the comparison this mode exists for).
    """

    def __init__(self, role: Role, config: TlsConfig | None, limit: int) -> None:
        self.tls = TlsOverStream(role, config)
        self.limit = limit  # decrypted bytes held for the application at most
        self.buf = bytearray()

    def start(self) -> bytes:
        """The client's first TLS flight for the stream (empty for the server).

        SPEC section 7.6.
        """
        return self.tls.start()

    def send(self, data: bytes) -> bytes:
        """Application bytes in, TLS bytes for the stream out (SPEC section 7.6)."""
        return self.tls.send(data)

    def close(self) -> bytes:
        """close_notify, to be written before the stream's DATA_FIN (SPEC section 7.6)."""
        return self.tls.close()

    @property
    def readable(self) -> int:
        """Decrypted bytes waiting for the application (SPEC section 7.6)."""
        return len(self.buf)

    def read(self, max_bytes: int = -1) -> bytes:
        """Take up to `max_bytes` decrypted bytes (all when negative) (SPEC section 7.6)."""
        n = len(self.buf) if max_bytes < 0 else min(max_bytes, len(self.buf))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def pump(self, stream_bytes: bytes) -> bytes:
        """Feed bytes read from the plain stream; returns TLS bytes to write back.

        SPEC section 7.6.
        """
        plain, out = self.tls.receive(stream_bytes)
        self.buf += plain
        return out

    @property
    def room(self) -> int:
        """How many stream bytes to take now without exceeding the buffer limit.

        SPEC section 7.6.
        """
        return max(0, self.limit - len(self.buf))

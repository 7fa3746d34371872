"""Key logging in the NSS key log format, so captures can be decrypted offline.

Nothing is written unless ``SSLKEYLOGFILE`` is set (or a path is given explicitly). Lines:

- the standard TLS 1.3 lines OpenSSL produces (``CLIENT_HANDSHAKE_TRAFFIC_SECRET``,
  ``EXPORTER_SECRET``, ...), passed through from pyOpenSSL's key log callback;
- one ``MPTCPSEC_SECRET <connection id hex> <connection secret hex>`` line per connection
  and end (papers/SPEC.md section 7.5).

``load_keylog`` parses such a file, and ``subflow_keys_from_keylog`` turns a connection id
plus the subflow's join nonces into the AEAD keys of both directions.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from mptcpsec.crypto.keyschedule import (
    SECRET_LEN,
    DirectionKeys,
    KeySchedule,
    Secret,
    SubflowKeys,
    derive_connection_secret,
)
from mptcpsec.errors import KeyExchangeError

ENV_VAR = "SSLKEYLOGFILE"
MPTCPSEC_LABEL = "MPTCPSEC_SECRET"

_lock = threading.Lock()


class KeyLogError(KeyExchangeError):
    """A key log that cannot be parsed, or a connection that is not in it."""


def keylog_path(explicit: str | os.PathLike[str] | None = None) -> str | None:
    """The key log file to write: ``explicit`` if given, else ``$SSLKEYLOGFILE``, else None."""
    if explicit is not None:
        return os.fspath(explicit)
    value = os.environ.get(ENV_VAR)
    return value or None


def write_line(line: str, path: str | os.PathLike[str] | None = None) -> bool:
    """Append one line to the key log (created 0600); a no-op returning False when disabled."""
    target = keylog_path(path)
    if target is None:
        return False
    data = (line.rstrip("\n") + "\n").encode("ascii")
    with _lock:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return True


def log_connection_secret(connection_id: bytes, secret: Secret,
                          path: str | os.PathLike[str] | None = None) -> bool:
    """Write the MPTCPSEC_SECRET line of one connection (only when key logging is on)."""
    if keylog_path(path) is None:
        return False
    return write_line(f"{MPTCPSEC_LABEL} {connection_id.hex()} {secret.buffer.hex()}", path)


def log_tls_line(line: bytes, path: str | os.PathLike[str] | None = None) -> bool:
    """Pass one OpenSSL key log line through (the pyOpenSSL callback hands us bytes)."""
    if keylog_path(path) is None:
        return False
    return write_line(line.decode("ascii", "replace"), path)


@dataclass(repr=False)
class KeyLog:
    """A parsed key log: TLS secrets by (label, client_random) and MPTCPsec secrets by id."""

    tls: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    mptcpsec: dict[bytes, bytes] = field(default_factory=dict)

    def connection_secret(self, connection_id: bytes) -> Secret:
        """The connection secret of ``connection_id``.

        Falls back to recomputing it from the TLS ``EXPORTER_SECRET`` line (tls mode) when
        only the standard TLS lines were logged.
        """
        if connection_id in self.mptcpsec:
            return Secret(self.mptcpsec[connection_id])
        ems = self.tls.get(("EXPORTER_SECRET", connection_id))
        if ems is not None:
            from mptcpsec.crypto.exporter import EXPORTER_LEN, MPTCPSEC_EXPORTER_LABEL, tls13_export

            hash_name = {32: "sha256", 48: "sha384"}.get(len(ems))
            if hash_name is None:
                raise KeyLogError("EXPORTER_SECRET of unexpected length")
            exported = tls13_export(ems, MPTCPSEC_EXPORTER_LABEL, b"", EXPORTER_LEN, hash_name)
            return derive_connection_secret("tls", exported)
        raise KeyLogError(f"connection {connection_id.hex()} is not in the key log")

    def __repr__(self) -> str:
        return f"KeyLog(tls_lines={len(self.tls)}, mptcpsec_lines={len(self.mptcpsec)})"


def parse_keylog(text: str) -> KeyLog:
    """Parse key log text; comments and blank lines are skipped, malformed lines rejected."""
    log = KeyLog()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise KeyLogError(f"key log line {lineno}: expected 3 fields, got {len(parts)}")
        label, ident_hex, secret_hex = parts
        try:
            ident, secret = bytes.fromhex(ident_hex), bytes.fromhex(secret_hex)
        except ValueError:
            raise KeyLogError(f"key log line {lineno}: fields are not hex") from None
        if label == MPTCPSEC_LABEL:
            if len(secret) != SECRET_LEN:
                raise KeyLogError(f"key log line {lineno}: MPTCPsec secret is not 32 bytes")
            log.mptcpsec[ident] = secret
        else:
            log.tls[(label, ident)] = secret
    return log


def load_keylog(path: str | os.PathLike[str]) -> KeyLog:
    """Read and parse a key log file."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise KeyLogError(f"cannot read key log {os.fspath(path)!r}: {exc}") from None
    return parse_keylog(text)


def subflow_keys_from_keylog(keylog: KeyLog, connection_id: bytes, subflow_id: int,
                             client_nonce: bytes, server_nonce: bytes,
                             algorithm: str | Enum = "aes-128-gcm",
                             generation: int = 0) -> SubflowKeys:
    """The AEAD keys of both directions of one subflow (at key-update ``generation``)."""
    secret = keylog.connection_secret(connection_id)
    schedule = KeySchedule(secret, algorithm)
    secret.wipe()
    keys = schedule.subflow_keys(subflow_id, client_nonce, server_nonce)
    out = SubflowKeys(subflow_id, _copy(keys.c2s), _copy(keys.s2c))
    schedule.wipe()
    for _ in range(generation):
        out.c2s.update()
        out.s2c.update()
    return out


def _copy(dk: DirectionKeys) -> DirectionKeys:
    return DirectionKeys(dk.algorithm, bytearray(dk.traffic_secret), bytearray(dk.key),
                         bytearray(dk.iv), dk.generation)

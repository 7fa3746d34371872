"""Key logging in the NSS key log format, so captures can be decrypted offline.

The key log is a writable text object the caller passes in (``keylog_file`` of the key
exchange configs, as aioquic's ``secrets_log_file``): this module never opens a file or
reads the environment. The asyncio adapter opens ``$SSLKEYLOGFILE`` or ``--keylog``
(``mptcpsec.aio.keylog``). Lines (papers/SPEC.md section 7.5):

- the standard TLS 1.3 lines OpenSSL produces (``CLIENT_HANDSHAKE_TRAFFIC_SECRET``,
  ``EXPORTER_SECRET``, ...), passed through from pyOpenSSL's key log callback;
- one ``MPTCPSEC_SECRET <connection id hex> <connection secret hex>`` line per connection
  and end.

``parse_keylog`` parses such text, and ``subflow_keys_from_keylog`` turns a connection id
plus the subflow's join nonces into the AEAD keys of both directions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, runtime_checkable

from mptcpsec.crypto.keyschedule import (
    SECRET_LEN,
    DirectionKeys,
    KeySchedule,
    Secret,
    SubflowKeys,
    derive_connection_secret,
)

from ..errors import KeyLogError as KeyLogError

MPTCPSEC_LABEL = "MPTCPSEC_SECRET"


@runtime_checkable
class KeyLogWriter(Protocol):
    """Where key log lines go: any text object with ``write`` (an open file, ``io.StringIO``).

    Each call gets one complete line, newline included, so an append-mode file shared by
    several connections keeps whole lines.
    """

    def write(self, line: str, /) -> object: ...


def check_writer(writer: object, what: str = "keylog_file") -> KeyLogWriter | None:
    """``writer`` if it is None or writable; a clear error for a path given by mistake."""
    if writer is None or isinstance(writer, KeyLogWriter):
        return writer
    if isinstance(writer, (str, bytes, os.PathLike)):
        raise KeyLogError(f"{what} takes an open, writable text object, not a path "
                          f"({writer!r}): open it with mptcpsec.aio.keylog.open_key_log")
    raise KeyLogError(f"{what} must have a write(str) method, got {type(writer).__name__}")


def write_line(writer: KeyLogWriter | None, line: str) -> bool:
    """Hand one line to ``writer``; a no-op returning False when key logging is off."""
    if writer is None:
        return False
    writer.write(line.rstrip("\n") + "\n")
    return True


def log_connection_secret(writer: KeyLogWriter | None, connection_id: bytes,
                          secret: Secret) -> bool:
    """Write the MPTCPSEC_SECRET line of one connection (only when ``writer`` is set)."""
    if writer is None:
        return False
    return write_line(writer, f"{MPTCPSEC_LABEL} {connection_id.hex()} {secret.buffer.hex()}")


def log_tls_line(writer: KeyLogWriter | None, line: bytes) -> bool:
    """Pass one OpenSSL key log line through (the pyOpenSSL callback hands us bytes)."""
    return write_line(writer, line.decode("ascii", "replace"))


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

"""Key log files: the adapter opens them, the key exchanges write lines to what they are given.

``open_key_log`` honours ``SSLKEYLOGFILE`` (the convention of browsers, curl and OpenSSL
tools) when no path is given; ``with_key_log`` puts the writer into the chosen key
exchange's config. Lines and their meaning: papers/SPEC.md section 7.5,
``mptcpsec.crypto.keylog``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ..crypto.keylog import KeyLog, KeyLogError, KeyLogWriter, parse_keylog
from ..crypto.keyschedule import Role
from ..protocol.config import ConnectionConfig
from .private_files import open_private

ENV_VAR = "SSLKEYLOGFILE"


class KeyLogFile:
    """An append-only key log file, created 0600, one ``write`` per complete line.

    A symlink, a file owned by someone else, or one that group or others may read is
    refused with a :class:`KeyLogError` (``mptcpsec.aio.private_files``), existing files
    included.

    Each line is one ``os.write`` on an ``O_APPEND`` descriptor, so several connections
    (and processes) sharing the file never interleave within a line.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._fd: int | None = open_private(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise KeyLogError(f"cannot open key log {self.path!r}: {exc}") from None
        self._lock = threading.Lock()

    def write(self, line: str, /) -> int:
        """Append one complete line (SPEC section 7.5) in a single write."""
        data = line.encode("ascii", "replace")
        with self._lock:
            if self._fd is None:
                raise KeyLogError(f"key log {self.path!r} is closed")
            return os.write(self._fd, data)

    def close(self) -> None:
        """Close the file; later writes are a KeyLogError."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> KeyLogFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KeyLogFile({self.path!r})"


_shared: dict[str, KeyLogFile] = {}
_shared_lock = threading.Lock()


def open_key_log(path: str | os.PathLike[str] | None = None,
                 environ: Mapping[str, str] | None = None) -> KeyLogFile | None:
    """The key log to write: ``path`` if given, else ``$SSLKEYLOGFILE``, else None.

    One open file per path for the life of the process (every connection appends to it).
    """
    env = os.environ if environ is None else environ
    target = os.fspath(path) if path is not None else (env.get(ENV_VAR) or None)
    if target is None:
        return None
    with _shared_lock:
        log = _shared.get(target)
        if log is None or log._fd is None:
            log = _shared[target] = KeyLogFile(target)
        return log


def with_key_log(config: ConnectionConfig, writer: KeyLogWriter | None) -> ConnectionConfig:
    """``config`` with ``writer`` as the key log of its key exchange (unless one is set)."""
    if writer is None:
        return config
    if config.key_exchange == "psk" and config.psk is not None \
            and config.psk.keylog_file is None:
        return replace(config, psk=replace(config.psk, keylog_file=writer))
    if config.key_exchange == "tls" and config.tls is not None \
            and config.tls.keylog_file is None:
        return replace(config, tls=replace(config.tls, keylog_file=writer))
    if config.key_exchange == "split-path":
        from ..crypto.splitpath import SplitPathConfig

        sp = config.split_path or SplitPathConfig(Role.CLIENT)
        if sp.keylog_file is None:
            return replace(config, split_path=replace(sp, keylog_file=writer))
    return config


def load_keylog(path: str | os.PathLike[str]) -> KeyLog:
    """Read and parse a key log file."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise KeyLogError(f"cannot read key log {os.fspath(path)!r}: {exc}") from None
    return parse_keylog(text)


__all__ = ["ENV_VAR", "KeyLogFile", "load_keylog", "open_key_log", "with_key_log"]

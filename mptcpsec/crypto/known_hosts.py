"""Trust on first use of split-path server identity keys: the store interface.

A client remembers each server's Ed25519 identity key under a name ("host:port") and
refuses a different key, or no key, for that name later (papers/SPEC.md section 7.3).
The key exchange only talks to a :class:`KnownHosts` store; :class:`MemoryKnownHosts`
keeps entries in memory (tests, embedding programs) and the file-backed store
(``mptcpsec.aio.stores.FileKnownHosts``) lives with the adapter. The text format,
``NAME ed25519 HEXKEY`` per line, is parsed and written here, without any file.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mptcpsec.errors import KeyExchangeError

from ..errors import KnownHostsConflictError as KnownHostsConflictError

IDENTITY_LEN = 32


@runtime_checkable
class KnownHosts(Protocol):
    """Where a client looks up and remembers server identity keys."""

    def get(self, name: str) -> bytes | None:
        """The identity key remembered for ``name``, or None."""
        ...

    def remember(self, name: str, key: bytes) -> None:
        """Remember ``key`` for ``name`` (first use); raise
        :class:`KnownHostsConflictError` if ``name`` already has a key."""
        ...


def check_name(name: str) -> str:
    """A known_hosts name: non-empty, no whitespace (it is the first field of a line)."""
    if not name or any(c.isspace() for c in name):
        raise KeyExchangeError(f"invalid known_hosts name {name!r}")
    return name


def parse_known_hosts(text: str) -> dict[str, bytes]:
    """``NAME ed25519 HEXKEY`` lines to {name: key}; comments and blank lines skipped."""
    hosts: dict[str, bytes] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] != "ed25519":
            raise KeyExchangeError(f"known_hosts line {lineno}: expected 'NAME ed25519 HEXKEY'")
        try:
            key = bytes.fromhex(parts[2])
        except ValueError:
            key = b""
        if len(key) != IDENTITY_LEN:
            raise KeyExchangeError(f"known_hosts line {lineno}: key is not 32 hex bytes")
        if parts[0] in hosts:
            raise KnownHostsConflictError(
                f"known_hosts line {lineno}: a second entry for {parts[0]!r}")
        hosts[parts[0]] = key
    return hosts


def format_known_host(name: str, key: bytes) -> str:
    """One known_hosts line (newline included)."""
    if len(key) != IDENTITY_LEN:
        raise KeyExchangeError("an identity key is 32 bytes")
    return f"{check_name(name)} ed25519 {key.hex()}\n"


class MemoryKnownHosts:
    """A known_hosts store in memory, optionally seeded from known_hosts text."""

    def __init__(self, text: str = "") -> None:
        self.hosts = parse_known_hosts(text)

    def get(self, name: str) -> bytes | None:
        """The key remembered for ``name`` (SPEC section 7.3), or None."""
        return self.hosts.get(name)

    def remember(self, name: str, key: bytes) -> None:
        """Remember ``key`` for ``name`` (first use, SPEC section 7.3)."""
        format_known_host(name, key)  # validates
        if name in self.hosts:
            raise KnownHostsConflictError(f"known_hosts already holds a key for {name!r}")
        self.hosts[name] = bytes(key)

    def __repr__(self) -> str:
        return f"MemoryKnownHosts({len(self.hosts)} hosts)"


__all__ = ["KnownHosts", "KnownHostsConflictError", "MemoryKnownHosts", "format_known_host",
           "parse_known_hosts"]

"""Typed exceptions: every rejection of bad input is one of these, never a crash."""

from __future__ import annotations


class MptcpsecError(Exception):
    """Base class of every error this package raises on purpose."""


class CryptoError(MptcpsecError):
    """A cryptographic operation was refused or failed."""


class BackendUnavailableError(CryptoError):
    """The selected crypto backend cannot be loaded (e.g. the C core is not built)."""


class UnsupportedAlgorithmError(CryptoError, ValueError):
    """An AEAD algorithm name or number that this package does not implement."""


class InvalidKeyError(CryptoError, ValueError):
    """A key or IV of the wrong length."""


class AuthenticationError(CryptoError):
    """A tag did not verify: the record was forged, altered, replayed or reordered."""


class CounterExhaustedError(CryptoError):
    """The record counter reached its limit; a key update is required."""


class ContextFailedError(CryptoError):
    """The AEAD object refused use after an earlier failure (a poisoned direction)."""


class RecordError(MptcpsecError, ValueError):
    """A record that cannot be parsed: bad version, type or length."""


class RecordTooLargeError(RecordError):
    """A record length over the configured maximum."""


class TruncatedError(RecordError):
    """Input ended before a complete structure, or an output buffer is too small."""


class WireError(MptcpsecError, ValueError):
    """An MPTCP option or other wire structure that cannot be encoded or decoded."""


class KeyExchangeError(MptcpsecError):
    """Key establishment failed; the message says which check failed."""

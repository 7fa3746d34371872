"""Typed exceptions: every rejection of bad input is one of these, never a crash."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # wire.options imports this module: no import cycle at run time
    from .tunnel.request import Status
    from .wire.options import PoisonReason


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


class OptionError(WireError):
    """An MPTCP option (TCP option kind 30) that cannot be encoded or decoded."""


class OptionTruncatedError(OptionError):
    """The input ends before the option (or its kind/length bytes) is complete."""


class OptionLengthError(OptionError):
    """An option length that no RFC 8684 form of that option has."""


class OptionFlagsError(OptionError):
    """A flag combination that has no meaning, e.g. a DSS 8-byte-DSN flag without a mapping."""


class OptionValueError(OptionError):
    """A field value out of range, or fields that belong to no single form of the option."""


class UnknownOptionError(OptionError):
    """A TCP option kind other than 30, or an MPTCP subtype this codec does not know."""


class OptionsTooLongError(OptionError):
    """Options that do not fit in a record's 255-byte option area."""


class RecordVersionError(RecordError):
    """A record header whose version is not 1."""


class RecordTypeError(RecordError):
    """A record type that is unknown or not accepted in the current state."""


class RecordFlagsError(RecordError):
    """A record with flag bits that its type does not define."""


class RecordOptionsError(RecordError):
    """A record whose options break the rules of its type (papers/SPEC.md, section 5)."""


class RecordBodyError(RecordError):
    """A record body of a length its type or protection forbids (e.g. shorter than the tag)."""


class ParserFailedError(RecordError):
    """The incremental parser was fed again after it rejected input; the subflow is poisoned."""


class ConfigError(MptcpsecError, ValueError):
    """A configuration that cannot work (the message says which field and why)."""


class ConnectionError_(MptcpsecError):
    """The connection failed; the message says why (no clean subflow left, peer abort...)."""


class TlsStreamError(MptcpsecError):
    """The TLS session over the multipath stream failed (bad record MAC, alert, ...)."""


class ProtocolViolation(MptcpsecError):
    """A peer broke a record rule on one subflow, which is then poisoned (SPEC section 3.5).

    Record handlers raise it; the engine catches it once per subflow and poisons that
    subflow with `reason` (a PoisonReason, also sent to the peer) and `detail` (for people).
    """

    def __init__(self, reason: PoisonReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class StateTransitionError(MptcpsecError, AssertionError):
    """An engine state change that the transition table does not allow (a bug, never input)."""


class KeyLogError(KeyExchangeError):
    """A key log that cannot be parsed, or a connection that is not in it."""


class IdentityMismatchError(KeyExchangeError):
    """The server's identity key differs from the one remembered for that server."""


class PskError(KeyExchangeError):
    """A pre-shared key that cannot be used."""


class PskMissingError(PskError):
    """No pre-shared key was configured (file absent, variable unset or empty)."""


class PskTooShortError(PskError):
    """The pre-shared key is shorter than MIN_PSK_LEN bytes."""


class PskFormatError(PskError):
    """The pre-shared key is not valid hex or ``base64:`` text."""


class PcapError(WireError):
    """A pcap event that does not fit the subflow's state (unknown subflow, bad address)."""


class TransportError(MptcpsecError):
    """The event loop handed over a transport without the stream methods a subflow uses."""


class CliError(MptcpsecError):
    """A command-line problem; the message says what to do."""


class ClientsFileError(MptcpsecError):
    """A malformed clients file (the message names the line)."""


class PolicyError(MptcpsecError):
    """A malformed --allow rule or bound."""


class RequestError(MptcpsecError):
    """A malformed CONNECT request or status (wrong version, command, type or length)."""


class SampleError(MptcpsecError):
    """The sample exchange did not complete."""


class NetCliError(Exception):
    """A command-line mistake for --net netns (the caller turns it into its CliError)."""


class LabError(RuntimeError):
    """The lab cannot be built or used (missing privilege, tool, or kernel feature)."""


class AttackError(ValueError):
    """An attack specification that cannot work (the message says how to fix it)."""


class ServerError(RuntimeError):
    """The benchmark server failed to start or to answer."""


class KnownHostsConflictError(KeyExchangeError):
    """A second identity key for a name already in known_hosts (the first one stays)."""


class ReadOnlyBufferError(MptcpsecError, TypeError):
    """``open_records`` was given an immutable buffer (``bytes``) to decrypt in place."""


class UnsafeFileError(MptcpsecError, OSError):
    """A file for secrets that is a symlink, not ours, not regular, or open to others."""


class Refused(MptcpsecError):
    """The gateway refuses a CONNECT request; ``status`` is what it answers (SPEC 11)."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

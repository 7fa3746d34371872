"""The one AEAD backend interface: algorithms, sealers, openers and batch results.

Every record the protocol sends or receives goes through a `Sealer` or an `Opener`
obtained from a `Backend`; the C core and the pure-Python reference implement the same
contract byte for byte, so tests run both and compare.
"""

from __future__ import annotations

import abc
import enum
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import overload

from ..errors import (
    AuthenticationError,
    ContextFailedError,
    CounterExhaustedError,
    CryptoError,
    MptcpsecError,
    ReadOnlyBufferError as ReadOnlyBufferError,
    RecordError,
    RecordTooLargeError,
    UnsupportedAlgorithmError,
)
from ..wire.header import HEADER_LEN, MAX_BODY_LEN, PROTECTED_TYPES, type_mask

TAG_LEN = 16
IV_LEN = 12


class Algorithm(enum.Enum):
    """AEAD algorithms; the value is the name used on the command line."""

    AES_128_GCM = "aes-128-gcm"
    AES_256_GCM = "aes-256-gcm"
    CHACHA20_POLY1305 = "chacha20-poly1305"

    @property
    def key_len(self) -> int:
        return 16 if self is Algorithm.AES_128_GCM else 32

    @property
    def core_id(self) -> int:
        """The algorithm number the C core uses."""
        return _CORE_IDS[self]

    @property
    def safe_record_limit(self) -> int:
        """Records one key may protect before a key update (RFC 8446 section 5.5)."""
        if self is Algorithm.CHACHA20_POLY1305:
            return 2**62
        return int(2**24.5)

    @classmethod
    def parse(cls, name: str | Algorithm) -> Algorithm:
        if isinstance(name, Algorithm):
            return name
        key = str(name).strip().lower().replace("_", "-")
        for alg in cls:
            if alg.value == key:
                return alg
        choices = ", ".join(a.value for a in cls)
        raise UnsupportedAlgorithmError(
            f"unknown AEAD algorithm {name!r} (choose one of {choices})")


_CORE_IDS = {Algorithm.AES_128_GCM: 1, Algorithm.AES_256_GCM: 2, Algorithm.CHACHA20_POLY1305: 3}

#: (type, flags, options, plaintext): one record to seal.
RecordSpec = tuple[int, int, bytes, bytes]

DEFAULT_ALLOWED_TYPES = type_mask(PROTECTED_TYPES)


class FailureReason(str, enum.Enum):
    """Why a batch open stopped: the reason a poisoned subflow reports."""

    AUTH = "bad-tag"
    VERSION = "bad-version"
    TYPE = "bad-type"
    TOO_LARGE = "too-large"
    SHORT_BODY = "short-body"
    COUNTER = "counter-exhausted"
    FAILED = "already-failed"


_REASON_ERRORS: dict[FailureReason, type[MptcpsecError]] = {
    FailureReason.AUTH: AuthenticationError,
    FailureReason.VERSION: RecordError,
    FailureReason.TYPE: RecordError,
    FailureReason.TOO_LARGE: RecordTooLargeError,
    FailureReason.SHORT_BODY: RecordError,
    FailureReason.COUNTER: CounterExhaustedError,
    FailureReason.FAILED: ContextFailedError,
}


def failure(reason: FailureReason, index: int) -> MptcpsecError:
    """The typed exception describing a batch-open failure at record `index`."""
    text = {
        FailureReason.AUTH: "failed authentication",
        FailureReason.VERSION: "has an unknown version",
        FailureReason.TYPE: "has a type not accepted here",
        FailureReason.TOO_LARGE: "announces a body over the maximum",
        FailureReason.SHORT_BODY: "has a body shorter than the tag",
        FailureReason.COUNTER: "would exhaust the record counter",
        FailureReason.FAILED: "was not opened: this direction already failed",
    }[reason]
    return _REASON_ERRORS[reason](f"record {index} {text} ({reason.value})")


@dataclass(frozen=True, slots=True)
class OpenedRecord:
    """Where an opened record lies in the buffer it was opened in."""

    offset: int
    type: int
    flags: int
    opt_len: int
    pt_len: int

    @property
    def opt_offset(self) -> int:
        return self.offset + HEADER_LEN

    @property
    def pt_offset(self) -> int:
        return self.offset + HEADER_LEN + self.opt_len

    @property
    def end(self) -> int:
        return self.pt_offset + self.pt_len + TAG_LEN

    def options(self, buf: bytes | bytearray | memoryview) -> bytes:
        return bytes(buf[self.opt_offset : self.pt_offset])

    def plaintext(self, buf: bytes | bytearray | memoryview) -> bytes:
        return bytes(buf[self.pt_offset : self.pt_offset + self.pt_len])


class RecordList(Sequence[OpenedRecord]):
    """Opened records as packed (offset, type, flags, opt_len, pt_len) rows.

    Built from one copy of the C core's output array; `OpenedRecord` objects are made only
    for the rows a caller looks at, so a batch of small records costs no per-record
    Python allocation until it is consumed.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: memoryview | None = None) -> None:
        self._rows = rows  # a memoryview of 'I' with 3 words per record, or None

    @classmethod
    def from_records(cls, records: Iterable[OpenedRecord]) -> RecordList:
        words = array("I")
        for r in records:
            words.extend((r.offset, r.type | r.flags << 8 | r.opt_len << 16, r.pt_len))
        return cls(memoryview(words))

    def __len__(self) -> int:
        return 0 if self._rows is None else len(self._rows) // 3

    @overload
    def __getitem__(self, index: int) -> OpenedRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[OpenedRecord]: ...
    def __getitem__(self, index: int | slice) -> OpenedRecord | list[OpenedRecord]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n or self._rows is None:
            raise IndexError("record index out of range")
        off, packed, pt_len = self._rows[3 * index : 3 * index + 3]
        return OpenedRecord(off, packed & 0xFF, (packed >> 8) & 0xFF, packed >> 16, pt_len)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordList | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    # Unhashable like the list it compares equal to: the standard idiom, which mypy only
    # accepts with an ignore since object.__hash__ is a method.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RecordList({list(self)!r})"


@dataclass(slots=True)
class BatchOpenResult:
    """Records opened from a receive buffer, and the failure that stopped the batch."""

    records: RecordList = field(default_factory=RecordList)
    consumed: int = 0
    reason: FailureReason | None = None
    error: MptcpsecError | None = None

    @property
    def failed(self) -> bool:
        return self.reason is not None

    @property
    def error_index(self) -> int | None:
        """Index of the failing record (== number of records opened before it)."""
        return len(self.records) if self.reason is not None else None


def check_in_place(buf: object, out: object) -> None:
    """Refuse to decrypt in place into a read-only buffer (it would rewrite a ``bytes``
    object that Python, and every other holder of it, takes to be immutable)."""
    target = buf if out is None else out
    try:
        readonly = memoryview(target).readonly  # type: ignore[arg-type]
    except TypeError:
        raise ReadOnlyBufferError(f"open_records needs a bytearray, not "
                                  f"{type(target).__name__}") from None
    if readonly:
        raise ReadOnlyBufferError(
            f"open_records decrypts in place: give a bytearray (or out=bytearray), not a "
            f"read-only {type(target).__name__}")


def check_key_iv(alg: Algorithm, key: bytes, iv: bytes) -> None:
    from ..errors import InvalidKeyError

    if len(key) != alg.key_len:
        raise InvalidKeyError(f"{alg.value} needs a {alg.key_len}-byte key, got {len(key)} bytes")
    if len(iv) != IV_LEN:
        raise InvalidKeyError(f"the IV must be {IV_LEN} bytes, got {len(iv)} bytes")


class Sealer(abc.ABC):
    """Seals records for one (subflow, direction); keyed once, counter advances per record."""

    algorithm: Algorithm

    @property
    @abc.abstractmethod
    def counter(self) -> int: ...

    @abc.abstractmethod
    def _seal_at(self, counter: int, ad: bytes, plaintext: bytes) -> bytes:
        """Test-only: one AEAD seal at an explicit counter (ciphertext || tag).

        Sealing twice at one counter reuses a nonce (SPEC section 4), so this is not part of
        the public API: known-answer tests and the per-call benchmark use it; records are
        sealed with ``seal_records``/``seal_chunks``, whose counter only moves forward.
        """

    @abc.abstractmethod
    def seal_records(self, records: Sequence[RecordSpec]) -> bytearray:
        """Complete records (header, options, ciphertext, tag), back to back."""

    @abc.abstractmethod
    def seal_chunks(
        self,
        data: bytes | bytearray | memoryview,
        chunk: int,
        rtype: int,
        flags: int = 0,
        options: bytes = b"",
        seq_off: int | None = None,
        seq_base: int = 0,
        len_off: int | None = None,
    ) -> bytearray:
        """Cut `data` into records of at most `chunk` bytes sharing one options template.

        With `seq_off`, the big-endian u64 at that options offset of each record is set to
        `seq_base` + the record's offset in `data` (a DSS data sequence number); with
        `len_off`, the big-endian u16 there is set to the record's length.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Wipe the key material; the object is unusable afterwards."""

    def __enter__(self) -> Sealer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.algorithm.value} counter={self.counter}>"


class Opener(abc.ABC):
    """Opens records for one (subflow, direction). After one failure it refuses all."""

    algorithm: Algorithm

    @property
    @abc.abstractmethod
    def counter(self) -> int: ...

    @property
    @abc.abstractmethod
    def failed(self) -> bool: ...

    @abc.abstractmethod
    def open(self, counter: int, ad: bytes, body: bytes) -> bytes:
        """One AEAD open with an explicit counter; raises AuthenticationError."""

    @abc.abstractmethod
    def open_records(
        self,
        buf: bytearray,
        max_body: int = MAX_BODY_LEN,
        allowed_types: int = DEFAULT_ALLOWED_TYPES,
        out: bytearray | None = None,
        max_records: int = 4096,
        stop_after: int = 0,
        stop_before: int = 0,
    ) -> BatchOpenResult:
        """Open every complete record in `buf` in place (or into `out` at the same offsets).

        Stops at the first failure, reporting its reason and index; an incomplete record at
        the end is left for later (`consumed` marks the end of the last opened record).
        The batch also ends after a record whose type is in the `stop_after` mask (say a
        KEY_UPDATE: what follows needs the next key) and before one whose type is in
        `stop_before` (say an unprotected JOIN record, left for the caller to parse).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Wipe the key material; the object is unusable afterwards."""

    def __enter__(self) -> Opener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.algorithm.value} counter={self.counter}>"


class Backend(abc.ABC):
    """A provider of sealers, openers and the small MAC helpers."""

    name: str

    @abc.abstractmethod
    def sealer(self, alg: Algorithm | str, key: bytes, iv: bytes) -> Sealer: ...

    @abc.abstractmethod
    def opener(self, alg: Algorithm | str, key: bytes, iv: bytes) -> Opener: ...

    @abc.abstractmethod
    def hmac_sha256(self, key: bytes, msg: bytes, length: int = 32) -> bytes:
        """HMAC-SHA256 truncated to `length` bytes (MP_JOIN, ADD_ADDR)."""

    @abc.abstractmethod
    def ct_equal(self, a: bytes, b: bytes) -> bool:
        """Constant-time comparison."""


def check_chunk_args(chunk: int, options: bytes, seq_off: int | None, len_off: int | None) -> None:
    """Argument checks shared by both backends' seal_chunks."""
    from ..wire.header import MAX_OPT_LEN, MAX_PLAINTEXT

    if chunk <= 0:
        raise ValueError("chunk must be positive")
    if chunk > MAX_PLAINTEXT:
        raise RecordTooLargeError(f"chunk {chunk} over the record maximum {MAX_PLAINTEXT}")
    if len(options) > MAX_OPT_LEN:
        raise RecordTooLargeError(f"{len(options)} option bytes, at most {MAX_OPT_LEN}")
    if seq_off is not None and not 0 <= seq_off <= len(options) - 8:
        raise ValueError(f"seq_off {seq_off} does not leave 8 bytes inside the options")
    if len_off is not None and not 0 <= len_off <= len(options) - 2:
        raise ValueError(f"len_off {len_off} does not leave 2 bytes inside the options")


__all__ = [
    "DEFAULT_ALLOWED_TYPES",
    "IV_LEN",
    "TAG_LEN",
    "Algorithm",
    "Backend",
    "BatchOpenResult",
    "CryptoError",
    "FailureReason",
    "OpenedRecord",
    "Opener",
    "RecordList",
    "RecordSpec",
    "Sealer",
]

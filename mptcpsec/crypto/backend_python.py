"""Pure-Python reference backend on `cryptography`: one library call per record.

It defines the expected output of the C core byte for byte and is the backend of last
resort for platforms without a compiler; it is never selected silently.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..errors import (
    AuthenticationError,
    ContextFailedError,
    CounterExhaustedError,
    RecordError,
    RecordTooLargeError,
    TruncatedError,
)
from ..wire.header import HEADER_LEN, MAX_BODY_LEN, MAX_OPT_LEN, MAX_PLAINTEXT, VERSION
from .aead import (
    DEFAULT_ALLOWED_TYPES,
    TAG_LEN,
    Algorithm,
    Backend,
    BatchOpenResult,
    FailureReason,
    OpenedRecord,
    Opener,
    RecordList,
    RecordSpec,
    Sealer,
    check_chunk_args,
    check_in_place,
    check_key_iv,
    failure,
)

_U64_MAX = 2**64 - 1
_MAX_SINGLE = 0x3FFFFFFF
_HDR = struct.Struct("!BBBBH")


class _RefObject:
    def __init__(self, alg: Algorithm | str, key: bytes, iv: bytes) -> None:
        self.algorithm = Algorithm.parse(alg)
        check_key_iv(self.algorithm, key, iv)
        cls = ChaCha20Poly1305 if self.algorithm is Algorithm.CHACHA20_POLY1305 else AESGCM
        self._aead: AESGCM | ChaCha20Poly1305 | None = cls(bytes(key))
        self._iv_int = int.from_bytes(iv, "big")
        self._counter = 0

    def _nonce(self, counter: int) -> bytes:
        return (self._iv_int ^ counter).to_bytes(12, "big")

    def _live(self) -> AESGCM | ChaCha20Poly1305:
        if self._aead is None:
            raise ContextFailedError("this AEAD object was closed and its key wiped")
        return self._aead

    @property
    def counter(self) -> int:
        return self._counter

    def _set_counter(self, value: int) -> None:
        """Test-only for a sealer (a counter moved back reuses nonces)."""
        self._counter = value

    def close(self) -> None:
        # `cryptography` keeps its own copy of the key; dropping the object frees it.
        self._aead = None
        self._iv_int = 0


class RefSealer(_RefObject, Sealer):
    def _seal_at(self, counter: int, ad: bytes, plaintext: bytes) -> bytes:
        if len(plaintext) > _MAX_SINGLE or len(ad) > _MAX_SINGLE:
            raise RecordTooLargeError("plaintext or associated data over the single-call limit")
        return self._live().encrypt(self._nonce(counter), bytes(plaintext), bytes(ad))

    def _seal_one(self, rtype: int, flags: int, options: bytes, plaintext: bytes) -> bytes:
        header = _HDR.pack(VERSION, rtype, flags, len(options), len(plaintext) + TAG_LEN)
        ad = header + options
        body = self._live().encrypt(self._nonce(self._counter), plaintext, ad)
        self._counter += 1
        return ad + body

    def seal_records(self, records: Sequence[RecordSpec]) -> bytearray:
        self._live()
        if len(records) > _U64_MAX - self._counter:
            raise CounterExhaustedError("the record counter would wrap")
        for i, (rtype, flags, options, plaintext) in enumerate(records):
            if len(options) > MAX_OPT_LEN or len(plaintext) > MAX_PLAINTEXT:
                raise RecordTooLargeError(
                    f"record {i}: {len(options)} option bytes (max {MAX_OPT_LEN}) and "
                    f"{len(plaintext)} plaintext bytes (max {MAX_PLAINTEXT})")
            if not (0 <= rtype <= 255 and 0 <= flags <= 255):
                raise RecordError(f"record {i}: type and flags are single bytes")
        out = bytearray()
        for rtype, flags, options, plaintext in records:
            out += self._seal_one(rtype, flags, bytes(options), bytes(plaintext))
        return out

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
        check_chunk_args(chunk, options, seq_off, len_off)
        self._live()
        data = bytes(data)
        offsets = range(0, len(data), chunk) if data else range(1)
        if len(offsets) > _U64_MAX - self._counter:
            raise CounterExhaustedError("the record counter would wrap")
        out = bytearray()
        template = bytearray(options)
        for off in offsets:
            piece = data[off : off + chunk]
            if seq_off is not None:
                template[seq_off : seq_off + 8] = ((seq_base + off) & _U64_MAX).to_bytes(8, "big")
            if len_off is not None:
                template[len_off : len_off + 2] = len(piece).to_bytes(2, "big")
            out += self._seal_one(rtype, flags, bytes(template), piece)
        return out


class RefOpener(_RefObject, Opener):
    def set_counter(self, value: int) -> None:
        """Where the next record is expected (a reader resuming a captured stream)."""
        self._set_counter(value)

    def __init__(self, alg: Algorithm | str, key: bytes, iv: bytes) -> None:
        super().__init__(alg, key, iv)
        self._failed = False

    @property
    def failed(self) -> bool:
        return self._failed or self._aead is None

    def open(self, counter: int, ad: bytes, body: bytes) -> bytes:
        if len(body) < TAG_LEN:
            raise RecordError(f"body of {len(body)} bytes is shorter than the {TAG_LEN}-byte tag")
        if len(body) > _MAX_SINGLE or len(ad) > _MAX_SINGLE:
            raise RecordTooLargeError("body or associated data over the single-call limit")
        try:
            return self._live().decrypt(self._nonce(counter), bytes(body), bytes(ad))
        except InvalidTag:
            raise AuthenticationError("record failed authentication (bad-tag)") from None

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
        aead = self._live()
        check_in_place(buf, out)
        result = BatchOpenResult()
        opened: list[OpenedRecord] = []
        if out is not None and len(out) < len(buf):
            raise TruncatedError("the output buffer must be at least as long as the input")
        if self._failed:
            result.reason = FailureReason.FAILED
            result.error = failure(result.reason, 0)
            return result
        dest = buf if out is None else out
        max_body = min(max_body, MAX_BODY_LEN)
        pos, size, reason = 0, len(buf), None
        while len(opened) < max_records and size - pos >= HEADER_LEN:
            version, rtype, flags, opt_len, body_len = _HDR.unpack_from(buf, pos)
            ad_end = pos + HEADER_LEN + opt_len
            if version != VERSION:
                reason = FailureReason.VERSION
            elif rtype < 32 and stop_before & (1 << rtype):
                break
            elif rtype >= 32 or not allowed_types & (1 << rtype):
                reason = FailureReason.TYPE
            elif body_len > max_body:
                reason = FailureReason.TOO_LARGE
            elif body_len < TAG_LEN:
                reason = FailureReason.SHORT_BODY
            elif size - pos < HEADER_LEN + opt_len + body_len:
                break
            elif self._counter == _U64_MAX:
                reason = FailureReason.COUNTER
            if reason is not None:
                break
            try:
                pt = aead.decrypt(self._nonce(self._counter),
                                  bytes(buf[ad_end : ad_end + body_len]), bytes(buf[pos:ad_end]))
            except InvalidTag:
                reason = FailureReason.AUTH
                dest[ad_end : ad_end + body_len - TAG_LEN] = bytes(body_len - TAG_LEN)
                break
            self._counter += 1
            dest[ad_end : ad_end + len(pt)] = pt
            opened.append(OpenedRecord(pos, rtype, flags, opt_len, len(pt)))
            pos = ad_end + body_len
            if stop_after & (1 << rtype):
                break
        result.consumed = pos
        result.records = RecordList.from_records(opened)
        if reason is not None:
            self._failed = True
            result.reason = reason
            result.error = failure(reason, len(result.records))
        return result


class ReferenceBackend(Backend):
    name = "python"

    def sealer(self, alg: Algorithm | str, key: bytes, iv: bytes) -> Sealer:
        return RefSealer(alg, key, iv)

    def opener(self, alg: Algorithm | str, key: bytes, iv: bytes) -> Opener:
        return RefOpener(alg, key, iv)

    def hmac_sha256(self, key: bytes, msg: bytes, length: int = 32) -> bytes:
        if not 1 <= length <= 32:
            raise ValueError("HMAC-SHA256 truncation length must be 1..32 bytes")
        return hmac.new(bytes(key), bytes(msg), "sha256").digest()[:length]

    def ct_equal(self, a: bytes, b: bytes) -> bool:
        return hmac.compare_digest(bytes(a), bytes(b))

    def wipe(self, buf: bytearray) -> None:
        buf[:] = bytes(len(buf))

"""The C core backend (cffi, libcrypto): the hot path for every record."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import (
    AuthenticationError,
    BackendUnavailableError,
    ContextFailedError,
    CounterExhaustedError,
    CryptoError,
    InvalidKeyError,
    RecordError,
    RecordTooLargeError,
    TruncatedError,
    UnsupportedAlgorithmError,
)
from ..wire.header import HEADER_LEN, MAX_BODY_LEN, MAX_OPT_LEN, MAX_PLAINTEXT
from .aead import (
    DEFAULT_ALLOWED_TYPES,
    TAG_LEN,
    Algorithm,
    Backend,
    BatchOpenResult,
    FailureReason,
    Opener,
    RecordList,
    RecordSpec,
    Sealer,
    check_chunk_args,
    check_in_place,
    check_key_iv,
    failure,
)

if TYPE_CHECKING:
    from .._core import FFI, CData, Lib

try:
    from .. import _core
except ImportError as exc:  # pragma: no cover - exercised by the selection tests
    _CORE: tuple[FFI, Lib] | None = None
    _IMPORT_ERROR: ImportError | None = exc
else:
    _CORE = (_core.ffi, _core.lib)
    _IMPORT_ERROR = None

_REC_IN = struct.Struct("=BBHIII")
_REC_OUT_SIZE = 12


def _load() -> tuple[FFI, Lib]:
    """The C module's ``ffi`` and ``lib``; a clear error naming the fix if it is not built."""
    if _CORE is None:
        raise BackendUnavailableError(
            "the mptcpsec C core is not built (mptcpsec._core failed to import: "
            f"{_IMPORT_ERROR}); run `make install` (or `make build` after editing csrc/), "
            "which needs a C compiler and the OpenSSL 3 headers (Debian: libssl-dev); "
            "or select the pure-Python reference with MPTCPSEC_BACKEND=python"
        )
    return _CORE


def _raise(code: int, what: str) -> NoReturn:
    lib = _load()[1]
    exc: type[Exception] = {
        lib.MPS_ERR_ARG: ValueError,
        lib.MPS_ERR_ALG: UnsupportedAlgorithmError,
        lib.MPS_ERR_KEYLEN: InvalidKeyError,
        lib.MPS_ERR_IVLEN: InvalidKeyError,
        lib.MPS_ERR_NOMEM: MemoryError,
        lib.MPS_ERR_CRYPTO: CryptoError,
        lib.MPS_ERR_AUTH: AuthenticationError,
        lib.MPS_ERR_TOOBIG: RecordTooLargeError,
        lib.MPS_ERR_SHORT: TruncatedError,
        lib.MPS_ERR_VERSION: RecordError,
        lib.MPS_ERR_TYPE: RecordError,
        lib.MPS_ERR_COUNTER: CounterExhaustedError,
        lib.MPS_ERR_DIRECTION: CryptoError,
        lib.MPS_ERR_BODYLEN: RecordError,
        lib.MPS_ERR_FAILED: ContextFailedError,
    }.get(code, CryptoError)
    raise exc(f"{what}: C core error {code}")


def _arg(ffi: Any, data: bytes | bytearray | memoryview) -> Any:
    """Bytes pass to C as they are; other buffers through from_buffer."""
    return data if type(data) is bytes else ffi.from_buffer(data)


#: The C core's error (csrc/mptcpsec_core.h, enum mps_err) behind each reason a batch
#: open stops with; any other code is reported as FAILED.
FAILURE_CODES: dict[FailureReason, str] = {
    FailureReason.AUTH: "MPS_ERR_AUTH",
    FailureReason.VERSION: "MPS_ERR_VERSION",
    FailureReason.TYPE: "MPS_ERR_TYPE",
    FailureReason.TOO_LARGE: "MPS_ERR_TOOBIG",
    FailureReason.SHORT_BODY: "MPS_ERR_BODYLEN",
    FailureReason.COUNTER: "MPS_ERR_COUNTER",
    FailureReason.FAILED: "MPS_ERR_FAILED",
}


def _reason(code: int) -> FailureReason:
    lib = _load()[1]
    for reason, name in FAILURE_CODES.items():
        if getattr(lib, name) == code:
            return reason
    return FailureReason.FAILED


class _CoreObject:
    """Owns one mps_aead; frees (and so wipes) it on close or garbage collection."""

    def __init__(self, alg: Algorithm | str, key: bytes, iv: bytes, encrypt: bool) -> None:
        self._ffi, self._lib = _load()
        self.algorithm = Algorithm.parse(alg)
        check_key_iv(self.algorithm, key, iv)
        err = self._ffi.new("int *")
        ptr = self._lib.mps_aead_new(self.algorithm.core_id, key, len(key), iv, len(iv),
                                     1 if encrypt else 0, err)
        if ptr == self._ffi.NULL:
            _raise(err[0], "cannot create the AEAD object")
        self._ctx: CData | None = self._ffi.gc(ptr, self._lib.mps_aead_free)
        self._out_len = self._ffi.new("size_t *")
        self._scratch_buf: Any = None
        self._scratch_len = 0

    def _scratch(self, size: int) -> Any:
        """A reusable output buffer of at least `size` bytes (results are copied out)."""
        if size > self._scratch_len or self._scratch_buf is None:
            self._scratch_buf = self._ffi.new("uint8_t[]", max(size, 2048))
            self._scratch_len = max(size, 2048)
        return self._scratch_buf

    def _live(self) -> Any:
        if self._ctx is None:
            raise ContextFailedError("this AEAD object was closed and its key wiped")
        return self._ctx

    @property
    def counter(self) -> int:
        return int(self._lib.mps_aead_counter(self._live()))

    def _set_counter(self, value: int) -> None:
        """Test-only for a sealer (a counter moved back reuses nonces)."""
        self._lib.mps_aead_set_counter(self._live(), value)

    def close(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            self._ffi.release(ctx)


class CoreSealer(_CoreObject, Sealer):
    def __init__(self, alg: Algorithm | str, key: bytes, iv: bytes) -> None:
        super().__init__(alg, key, iv, encrypt=True)

    def _seal_at(self, counter: int, ad: bytes, plaintext: bytes) -> bytes:
        size = len(plaintext) + TAG_LEN
        if size > self._lib.MPS_MAX_SINGLE or len(ad) > self._lib.MPS_MAX_SINGLE:
            raise RecordTooLargeError("plaintext or associated data over the single-call limit")
        out = self._scratch(size)
        n = self._lib.mps_seal(self._live(), counter, _arg(self._ffi, ad), len(ad),
                               _arg(self._ffi, plaintext), len(plaintext), out, size)
        if n < 0:
            _raise(n, "seal failed")
        return self._ffi.buffer(out, n)[:]

    def seal_records(self, records: Sequence[RecordSpec]) -> bytearray:
        descs = bytearray(_REC_IN.size * len(records))
        opts: list[bytes] = []
        pts: list[bytes] = []
        opt_off = pt_off = total = 0
        pack = _REC_IN.pack_into
        for i, (rtype, flags, options, plaintext) in enumerate(records):
            olen, plen = len(options), len(plaintext)
            if olen > MAX_OPT_LEN or plen > MAX_PLAINTEXT:
                raise RecordTooLargeError(
                    f"record {i}: {olen} option bytes (max {MAX_OPT_LEN}) and "
                    f"{plen} plaintext bytes (max {MAX_PLAINTEXT})")
            if not (0 <= rtype <= 255 and 0 <= flags <= 255):
                raise RecordError(f"record {i}: type and flags are single bytes")
            pack(descs, i * _REC_IN.size, rtype, flags, olen, opt_off, pt_off, plen)
            opts.append(options)
            pts.append(plaintext)
            opt_off += olen
            pt_off += plen
            total += HEADER_LEN + olen + plen + TAG_LEN
        optbuf = b"".join(opts)
        ptbuf = b"".join(pts)
        out = bytearray(total)
        ffi = self._ffi
        n = self._lib.mps_seal_batch(
            self._live(), ffi.from_buffer("mps_rec_in[]", descs), len(records),
            optbuf, len(optbuf), ptbuf, len(ptbuf),
            ffi.from_buffer(out), total, self._out_len)
        if n < 0:
            _raise(n, "batch seal failed")
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
        size = len(data)
        nrec = -(-size // chunk) if size else 1
        out = bytearray(size + nrec * (HEADER_LEN + len(options) + TAG_LEN))
        ffi, lib = self._ffi, self._lib
        n = lib.mps_seal_chunks(
            self._live(), rtype, flags, options, len(options),
            lib.MPS_NO_PATCH if seq_off is None else seq_off, seq_base,
            lib.MPS_NO_PATCH if len_off is None else len_off,
            ffi.from_buffer(data), size, chunk, ffi.from_buffer(out), len(out), self._out_len)
        if n < 0:
            _raise(n, "chunk seal failed")
        return out


class CoreOpener(_CoreObject, Opener):
    def set_counter(self, value: int) -> None:
        """Where the next record is expected (a reader resuming a captured stream)."""
        self._set_counter(value)

    def __init__(self, alg: Algorithm | str, key: bytes, iv: bytes) -> None:
        super().__init__(alg, key, iv, encrypt=False)
        self._recs_cap = 0
        self._recs: Any = None
        self._consumed = self._ffi.new("size_t *")
        self._err = self._ffi.new("int *")

    @property
    def failed(self) -> bool:
        return self._ctx is None or bool(self._lib.mps_aead_failed(self._ctx))

    def open(self, counter: int, ad: bytes, body: bytes) -> bytes:
        if len(body) < TAG_LEN:
            raise RecordError(f"body of {len(body)} bytes is shorter than the {TAG_LEN}-byte tag")
        if len(body) > self._lib.MPS_MAX_SINGLE or len(ad) > self._lib.MPS_MAX_SINGLE:
            raise RecordTooLargeError("body or associated data over the single-call limit")
        size = len(body) - TAG_LEN
        out = self._scratch(size)
        n = self._lib.mps_open(self._live(), counter, _arg(self._ffi, ad), len(ad),
                               _arg(self._ffi, body), len(body), out, size)
        if n < 0:
            _raise(n, "open failed")
        return self._ffi.buffer(out, n)[:]

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
        ffi, lib = self._ffi, self._lib
        check_in_place(buf, out)
        if max_records > self._recs_cap:
            self._recs = ffi.new("mps_rec_out[]", max_records)
            self._recs_cap = max_records
        if out is not None and len(out) < len(buf):
            raise TruncatedError("the output buffer must be at least as long as the input")
        outp = ffi.NULL if out is None else ffi.from_buffer(out)
        n = lib.mps_open_batch(
            self._live(), ffi.from_buffer(buf), len(buf), outp, 0 if out is None else len(out),
            max_body, allowed_types, stop_after, stop_before, self._recs, max_records,
            self._consumed, self._err)
        rows = None
        if n:
            # mps_rec_out is three 32-bit words: offset, type|flags<<8|opt_len<<16, pt_len.
            rows = memoryview(bytes(ffi.buffer(self._recs, n * _REC_OUT_SIZE))).cast("I")
        result = BatchOpenResult(records=RecordList(rows), consumed=int(self._consumed[0]))
        code = self._err[0]
        if code != lib.MPS_OK:
            if code in (lib.MPS_ERR_ARG, lib.MPS_ERR_SHORT, lib.MPS_ERR_DIRECTION):
                _raise(code, "batch open refused its arguments")
            result.reason = _reason(code)
            result.error = failure(result.reason, n)
        return result


class CoreBackend(Backend):
    name = "c"

    def __init__(self) -> None:
        self._ffi, self._lib = _load()

    def sealer(self, alg: Algorithm | str, key: bytes, iv: bytes) -> Sealer:
        return CoreSealer(alg, key, iv)

    def opener(self, alg: Algorithm | str, key: bytes, iv: bytes) -> Opener:
        return CoreOpener(alg, key, iv)

    def hmac_sha256(self, key: bytes, msg: bytes, length: int = 32) -> bytes:
        if not 1 <= length <= 32:
            raise ValueError("HMAC-SHA256 truncation length must be 1..32 bytes")
        out = self._ffi.new("uint8_t[]", length)
        rc = self._lib.mps_hmac_sha256(key, len(key), msg, len(msg), out, length)
        if rc != 0:
            _raise(rc, "HMAC failed")
        return bytes(self._ffi.buffer(out, length))

    def ct_equal(self, a: bytes, b: bytes) -> bool:
        if len(a) != len(b):
            return False
        return bool(self._lib.mps_ct_equal(a, b, len(a)))

    def wipe(self, buf: bytearray) -> None:
        """Zero a bytearray with OPENSSL_cleanse (not optimised away)."""
        if buf:
            self._lib.mps_wipe(self._ffi.from_buffer(buf), len(buf))

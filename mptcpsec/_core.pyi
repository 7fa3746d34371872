"""Types of the C core (csrc/mptcpsec_core.h), built by cffi as ``mptcpsec._core``.

Only what the package uses is declared: the cffi ``ffi`` object's calls, the functions
and the numeric constants of ``lib``. ``FFI``, ``CData``, ``Buffer`` and ``Lib`` exist in
this stub only (import them under ``TYPE_CHECKING``).
"""

from collections.abc import Callable
from typing import Any

class CData:
    """A cffi C object: a pointer, an array or a struct."""

    def __getitem__(self, index: int) -> Any: ...
    def __setitem__(self, index: int, value: Any) -> None: ...
    def __len__(self) -> int: ...

class Buffer:
    """``ffi.buffer(...)``: a view of C memory (the buffer protocol, slicing)."""

    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __getitem__(self, index: slice) -> bytes: ...
    def __len__(self) -> int: ...

#: What a ``const uint8_t *`` / ``uint8_t *`` parameter takes.
_In = bytes | CData

class FFI:
    NULL: CData
    def new(self, cdecl: str, init: Any = ..., /) -> CData: ...
    def buffer(self, cdata: CData, size: int = ..., /) -> Buffer: ...
    def from_buffer(self, cdecl_or_buffer: Any, buffer: Any = ..., /,
                    require_writable: bool = ...) -> CData: ...
    def gc(self, cdata: CData, destructor: Callable[[CData], object] | None,
           size: int = ..., /) -> CData: ...
    def release(self, cdata: CData, /) -> None: ...
    def sizeof(self, cdecl: str | CData, /) -> int: ...
    def typeof(self, cdecl: str | CData, /) -> Any: ...

class Lib:
    # csrc/mptcpsec_core.h: #define
    MPS_HEADER_LEN: int
    MPS_TAG_LEN: int
    MPS_IV_LEN: int
    MPS_VERSION: int
    MPS_MAX_OPT_LEN: int
    MPS_MAX_BODY_LEN: int
    MPS_MAX_PLAINTEXT: int
    MPS_MAX_SINGLE: int
    MPS_NO_PATCH: int
    # enum mps_alg
    MPS_AES_128_GCM: int
    MPS_AES_256_GCM: int
    MPS_CHACHA20_POLY1305: int
    # enum mps_err
    MPS_OK: int
    MPS_ERR_ARG: int
    MPS_ERR_ALG: int
    MPS_ERR_KEYLEN: int
    MPS_ERR_IVLEN: int
    MPS_ERR_NOMEM: int
    MPS_ERR_CRYPTO: int
    MPS_ERR_AUTH: int
    MPS_ERR_TOOBIG: int
    MPS_ERR_SHORT: int
    MPS_ERR_VERSION: int
    MPS_ERR_TYPE: int
    MPS_ERR_COUNTER: int
    MPS_ERR_DIRECTION: int
    MPS_ERR_BODYLEN: int
    MPS_ERR_FAILED: int

    def mps_aead_new(self, alg: int, key: _In, key_len: int, iv: _In, iv_len: int,
                     encrypt: int, err: CData, /) -> CData: ...
    def mps_aead_free(self, ctx: CData, /) -> None: ...
    def mps_aead_counter(self, ctx: CData, /) -> int: ...
    def mps_aead_set_counter(self, ctx: CData, counter: int, /) -> int: ...
    def mps_aead_failed(self, ctx: CData, /) -> int: ...
    def mps_key_len(self, alg: int, /) -> int: ...
    def mps_seal(self, ctx: CData, counter: int, ad: _In, ad_len: int, pt: _In, pt_len: int,
                 out: CData, out_cap: int, /) -> int: ...
    def mps_open(self, ctx: CData, counter: int, ad: _In, ad_len: int, ct: _In, ct_len: int,
                 out: CData, out_cap: int, /) -> int: ...
    def mps_seal_batch(self, ctx: CData, recs: CData, n: int, opts: _In, opts_len: int,
                       pt: _In, pt_len: int, out: CData, out_cap: int, out_len: CData,
                       /) -> int: ...
    def mps_seal_chunks(self, ctx: CData, type: int, flags: int, opts: _In, opt_len: int,
                        seq_off: int, seq_base: int, len_off: int, pt: _In, pt_len: int,
                        chunk: int, out: CData, out_cap: int, out_len: CData, /) -> int: ...
    def mps_open_batch(self, ctx: CData, buf: CData, len: int, out: CData, out_cap: int,
                       max_body: int, allowed_types: int, stop_after: int, stop_before: int,
                       recs: CData, max_recs: int, consumed: CData, err: CData, /) -> int: ...
    def mps_hmac_sha256(self, key: _In, key_len: int, msg: _In, msg_len: int, out: CData,
                        out_len: int, /) -> int: ...
    def mps_ct_equal(self, a: _In, b: _In, len: int, /) -> int: ...
    def mps_wipe(self, buf: CData, len: int, /) -> None: ...

ffi: FFI
lib: Lib

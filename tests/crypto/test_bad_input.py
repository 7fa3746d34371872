"""Bad input gets a typed exception, never a crash."""

from __future__ import annotations

import os
import struct

import pytest

from mptcpsec.crypto import Algorithm, Backend, FailureReason, backend_c, get_backend
from mptcpsec.errors import (
    BackendUnavailableError,
    ContextFailedError,
    InvalidKeyError,
    RecordError,
    RecordTooLargeError,
    TruncatedError,
    UnsupportedAlgorithmError,
)
from mptcpsec.wire.header import MAX_OPT_LEN, MAX_PLAINTEXT, RecordType, type_mask


@pytest.mark.parametrize("alg", list(Algorithm), ids=lambda a: a.value)
def test_wrong_key_or_iv_length(backend: Backend, alg: Algorithm) -> None:
    for key_len in (0, 1, alg.key_len - 1, alg.key_len + 1, 64):
        with pytest.raises(InvalidKeyError):
            backend.sealer(alg, bytes(key_len), bytes(12))
        with pytest.raises(InvalidKeyError):
            backend.opener(alg, bytes(key_len), bytes(12))
    for iv_len in (0, 8, 11, 13, 16):
        with pytest.raises(InvalidKeyError):
            backend.sealer(alg, bytes(alg.key_len), bytes(iv_len))


def test_unknown_algorithm(backend: Backend) -> None:
    for name in ("aes-192-gcm", "rot13", "", "AES-128-CBC"):
        with pytest.raises(UnsupportedAlgorithmError):
            backend.sealer(name, bytes(16), bytes(12))
    assert Algorithm.parse("AES_128_GCM") is Algorithm.AES_128_GCM


def test_oversized_records_refused_before_sealing(backend: Backend) -> None:
    sealer = backend.sealer(Algorithm.AES_128_GCM, bytes(16), bytes(12))
    with pytest.raises(RecordTooLargeError):
        sealer.seal_records([(1, 0, b"", bytes(MAX_PLAINTEXT + 1))])
    with pytest.raises(RecordTooLargeError):
        sealer.seal_records([(1, 0, bytes(MAX_OPT_LEN + 1), b"")])
    with pytest.raises(RecordError):
        sealer.seal_records([(256, 0, b"", b"")])
    with pytest.raises(RecordTooLargeError):
        sealer.seal_chunks(b"x", MAX_PLAINTEXT + 1, RecordType.DATA)
    with pytest.raises(ValueError):
        sealer.seal_chunks(b"x", 0, RecordType.DATA)
    with pytest.raises(ValueError):
        sealer.seal_chunks(b"x", 10, RecordType.DATA, options=bytes(7), seq_off=0)
    assert sealer.counter == 0  # nothing was sealed


def _header(version=1, rtype=1, flags=0, opt_len=0, body_len=16) -> bytes:
    return struct.pack("!BBBBH", version, rtype, flags, opt_len, body_len)


@pytest.mark.parametrize(
    ("header", "reason", "exc"),
    [
        (_header(body_len=60000), FailureReason.TOO_LARGE, RecordTooLargeError),
        (_header(version=2), FailureReason.VERSION, RecordError),
        (_header(rtype=0), FailureReason.TYPE, RecordError),
        (_header(rtype=31), FailureReason.TYPE, RecordError),
        (_header(rtype=200), FailureReason.TYPE, RecordError),
        (_header(body_len=15), FailureReason.SHORT_BODY, RecordError),
    ],
)
def test_bad_headers_fail_as_soon_as_the_header_arrives(backend: Backend, header: bytes,
                                                        reason: FailureReason, exc: type) -> None:
    opener = backend.opener(Algorithm.AES_128_GCM, bytes(16), bytes(12))
    res = opener.open_records(bytearray(header), max_body=16400)
    assert res.reason is reason and isinstance(res.error, exc) and res.error_index == 0
    assert opener.failed


def test_type_mask_is_honoured(backend: Backend) -> None:
    key, iv = os.urandom(16), os.urandom(12)
    wire = backend.sealer(Algorithm.AES_128_GCM, key, iv).seal_records([(RecordType.CLOSE, 0,
                                                                          b"", b"")])
    res = backend.opener(Algorithm.AES_128_GCM, key, iv).open_records(
        bytearray(wire), allowed_types=type_mask([RecordType.DATA]))
    assert res.reason is FailureReason.TYPE


def test_truncated_and_misused_buffers(backend: Backend) -> None:
    opener = backend.opener(Algorithm.AES_128_GCM, bytes(16), bytes(12))
    for n in range(6):
        res = opener.open_records(bytearray(_header()[:n]))
        assert res.records == [] and res.consumed == 0 and not res.failed
    with pytest.raises(TruncatedError):
        opener.open_records(bytearray(40), out=bytearray(10))
    with pytest.raises(RecordError):
        opener.open(0, b"", bytes(15))
    opener.close()
    with pytest.raises(ContextFailedError):
        opener.open(0, b"", bytes(16))
    sealer = backend.sealer(Algorithm.AES_128_GCM, bytes(16), bytes(12))
    sealer.close()
    with pytest.raises(ContextFailedError):
        sealer.seal_records([(1, 0, b"", b"")])


def test_counter_exhaustion_is_refused(backend: Backend) -> None:
    from mptcpsec.errors import CounterExhaustedError

    sealer = backend.sealer(Algorithm.AES_128_GCM, bytes(16), bytes(12))
    # Counter 2**64 - 1 is never used: it marks an exhausted direction.
    sealer._set_counter(2**64 - 3)
    with pytest.raises(CounterExhaustedError):
        sealer.seal_records([(1, 0, b"", b"")] * 3)
    sealer.seal_records([(1, 0, b"", b"")] * 2)
    assert sealer.counter == 2**64 - 1
    with pytest.raises(CounterExhaustedError):
        sealer.seal_chunks(b"x", 1, RecordType.DATA)


def test_backend_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    from mptcpsec.crypto import active_backend_name

    monkeypatch.delenv("MPTCPSEC_BACKEND", raising=False)
    assert active_backend_name() == "c"
    monkeypatch.setenv("MPTCPSEC_BACKEND", "python")
    assert active_backend_name() == "python"
    monkeypatch.setenv("MPTCPSEC_BACKEND", "fortran")
    with pytest.raises(BackendUnavailableError, match="choose one of"):
        get_backend()


def test_missing_c_build_is_a_clear_error_not_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    from mptcpsec.crypto import backend as selection

    monkeypatch.setattr(backend_c, "_CORE", None)  # as if mptcpsec._core failed to import
    monkeypatch.setattr(selection, "_cache", {})
    monkeypatch.setenv("MPTCPSEC_BACKEND", "c")
    with pytest.raises(BackendUnavailableError, match="make install"):
        get_backend()
    with pytest.raises(BackendUnavailableError, match="libssl-dev"):
        backend_c.CoreSealer(Algorithm.AES_128_GCM, bytes(16), bytes(12))

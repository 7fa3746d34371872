"""AEAD API misuse that the objects refuse (SPEC section 4): nonce reuse and in-place
decryption into immutable bytes."""

from __future__ import annotations

import pytest

from mptcpsec.crypto.aead import Algorithm, Backend, ReadOnlyBufferError
from mptcpsec.crypto.backend_c import CoreBackend
from mptcpsec.crypto.backend_python import ReferenceBackend

BACKENDS = [CoreBackend(), ReferenceBackend()]
KEY, IV = bytes(range(16)), bytes(12)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_sealer_has_no_public_way_to_pick_a_counter(backend: Backend) -> None:
    sealer = backend.sealer(Algorithm.AES_128_GCM, KEY, IV)
    assert not hasattr(sealer, "seal") and not hasattr(sealer, "set_counter")
    a = sealer.seal_records([(1, 0, b"", b"same")])
    b = sealer.seal_records([(1, 0, b"", b"same")])
    assert a != b and sealer.counter == 2  # the public path never repeats a nonce
    opener = backend.opener(Algorithm.AES_128_GCM, KEY, IV)
    opener.set_counter(0)  # an opener may be positioned: it seals nothing


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_open_records_refuses_immutable_bytes(backend: Backend) -> None:
    wire = backend.sealer(Algorithm.AES_128_GCM, KEY, IV).seal_records(
        [(1, 0, b"", b"secret plaintext")])
    frozen = bytes(wire)
    opener = backend.opener(Algorithm.AES_128_GCM, KEY, IV)
    with pytest.raises(ReadOnlyBufferError, match="bytearray"):
        opener.open_records(frozen)  # type: ignore[arg-type]
    with pytest.raises(ReadOnlyBufferError):
        opener.open_records(bytearray(wire), out=bytes(len(wire)))  # type: ignore[arg-type]
    assert frozen == bytes(wire)  # untouched
    assert not opener.open_records(bytearray(wire)).failed

"""Every single-bit change is caught; batch open stops exactly at the tampered record."""

from __future__ import annotations

import os

import pytest

from mptcpsec.crypto import Algorithm, Backend, FailureReason
from mptcpsec.errors import AuthenticationError, ContextFailedError
from mptcpsec.wire.header import RecordType

ALGS = list(Algorithm)


def _flips(data: bytes):
    for i in range(len(data) * 8):
        b = bytearray(data)
        b[i // 8] ^= 1 << (i % 8)
        yield bytes(b)


@pytest.mark.parametrize("alg", ALGS, ids=lambda a: a.value)
def test_every_bit_flip_of_ad_ciphertext_or_tag_fails(backend: Backend, alg: Algorithm) -> None:
    key, iv = os.urandom(alg.key_len), os.urandom(12)
    ad, pt = os.urandom(21), os.urandom(37)
    body = backend.sealer(alg, key, iv)._seal_at(5, ad, pt)
    opener = backend.opener(alg, key, iv)
    assert opener.open(5, ad, body) == pt
    for bad_ad in _flips(ad):
        with pytest.raises(AuthenticationError):
            opener.open(5, bad_ad, body)
    for bad_body in _flips(body):  # ciphertext bits, then tag bits
        with pytest.raises(AuthenticationError):
            opener.open(5, ad, bad_body)
    for wrong in (4, 6, 5 ^ (1 << 63)):
        with pytest.raises(AuthenticationError):
            opener.open(wrong, ad, body)


@pytest.mark.parametrize("alg", ALGS, ids=lambda a: a.value)
def test_every_bit_flip_of_a_record_is_never_delivered(backend: Backend, alg: Algorithm) -> None:
    key, iv = os.urandom(alg.key_len), os.urandom(12)
    secret = os.urandom(24)
    wire = bytes(backend.sealer(alg, key, iv).seal_records(
        [(RecordType.DATA, 0, os.urandom(12), secret)]))
    for bad in _flips(wire):
        buf = bytearray(bad)
        res = backend.opener(alg, key, iv).open_records(buf)
        assert res.records == []  # nothing opened: failed, or a longer record still incomplete
        if res.failed:
            assert res.error_index == 0 and res.consumed == 0
        assert secret not in bytes(buf)  # no plaintext left behind in place either


@pytest.mark.parametrize("alg", ALGS, ids=lambda a: a.value)
@pytest.mark.parametrize("where", ["header", "option", "ciphertext", "tag"])
def test_batch_open_stops_at_the_tampered_record(backend: Backend, alg: Algorithm,
                                                 where: str) -> None:
    key, iv = os.urandom(alg.key_len), os.urandom(12)
    recs = [(RecordType.DATA, 0, os.urandom(8), os.urandom(100 + i)) for i in range(20)]
    wire = bytearray(backend.sealer(alg, key, iv).seal_records(recs))
    sizes = [6 + 8 + len(r[3]) + 16 for r in recs]
    k = 13
    start = sum(sizes[:k])
    offset = {"header": 2, "option": 6 + 3, "ciphertext": 6 + 8 + 50, "tag": sizes[k] - 1}[where]
    wire[start + offset] ^= 0x40
    opener = backend.opener(alg, key, iv)
    res = opener.open_records(wire)
    assert res.error_index == k and res.reason is FailureReason.AUTH
    assert isinstance(res.error, AuthenticationError)
    assert res.consumed == start
    assert [r.plaintext(wire) for r in res.records] == [r[3] for r in recs[:k]]
    assert opener.failed
    again = opener.open_records(bytearray(wire[start:]))
    assert again.reason is FailureReason.FAILED and isinstance(again.error, ContextFailedError)


@pytest.mark.parametrize("alg", ALGS, ids=lambda a: a.value)
def test_deleted_replayed_and_reordered_records_fail(backend: Backend, alg: Algorithm) -> None:
    key, iv = os.urandom(alg.key_len), os.urandom(12)
    recs = [(RecordType.DATA, 0, b"", bytes([i]) * 30) for i in range(4)]
    parts = [bytes(backend.sealer(alg, key, iv).seal_records(recs))[i * 52:(i + 1) * 52]
             for i in range(4)]
    for name, order in {"delete": [0, 2, 3], "replay": [0, 1, 1, 2],
                        "reorder": [0, 2, 1, 3]}.items():
        buf = bytearray(b"".join(parts[i] for i in order))
        res = backend.opener(alg, key, iv).open_records(buf)
        bad = next(i for i, (a, b) in enumerate(zip(order, range(4), strict=False)) if a != b)
        assert res.error_index == bad, name
        assert res.reason is FailureReason.AUTH


def test_partial_records_wait_for_more_bytes(backend: Backend) -> None:
    alg = Algorithm.AES_128_GCM
    key, iv = os.urandom(16), os.urandom(12)
    recs = [(RecordType.DATA, 0, b"opt", os.urandom(40)) for _ in range(3)]
    wire = bytes(backend.sealer(alg, key, iv).seal_records(recs))
    for cut in range(len(wire) + 1):
        opener = backend.opener(alg, key, iv)
        first = bytearray(wire[:cut])
        res1 = opener.open_records(first)
        assert not res1.failed
        rest = bytearray(wire[res1.consumed:])
        res2 = opener.open_records(rest)
        assert not res2.failed and res1.consumed + res2.consumed == len(wire)
        got = [r.plaintext(first) for r in res1.records] + [r.plaintext(rest) for r in res2.records]
        assert got == [r[3] for r in recs]


def test_batch_stops_after_and_before_marked_types(backend: Backend) -> None:
    from mptcpsec.wire.header import type_mask

    alg = Algorithm.AES_128_GCM
    key, iv = os.urandom(16), os.urandom(12)
    sealer = backend.sealer(alg, key, iv)
    wire = bytearray(sealer.seal_records([(RecordType.DATA, 0, b"", b"a"),
                                          (RecordType.KEY_UPDATE, 0, b"", b""),
                                          (RecordType.DATA, 0, b"", b"b")]))
    first_two = 2 * (6 + 16) + 1
    clear = bytes([1, RecordType.HANDSHAKE, 1, 0, 0, 3]) + b"xyz"  # an unprotected record
    wire[first_two:first_two] = clear
    opener = backend.opener(alg, key, iv)
    res = opener.open_records(wire, stop_after=type_mask([RecordType.KEY_UPDATE]),
                              stop_before=type_mask([RecordType.HANDSHAKE]))
    assert [r.type for r in res.records] == [RecordType.DATA, RecordType.KEY_UPDATE]
    assert res.consumed == first_two and not res.failed
    rest = bytearray(wire[first_two:])
    res = opener.open_records(rest, stop_before=type_mask([RecordType.HANDSHAKE]))
    assert res.records == [] and res.consumed == 0 and not res.failed  # left for the caller
    tail = bytearray(rest[len(clear):])
    res = opener.open_records(tail)
    assert [r.plaintext(tail) for r in res.records] == [b"b"]

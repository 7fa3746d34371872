"""Both backends against `cryptography` and pynacl on random inputs, and against each other."""

from __future__ import annotations

import os

import nacl.bindings
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings, strategies as st

from mptcpsec.crypto import Algorithm, get_backend
from mptcpsec.wire.header import MAX_OPT_LEN, MAX_PLAINTEXT, PROTECTED_TYPES, RecordType

C = get_backend("c")
PY = get_backend("python")

algs = st.sampled_from(list(Algorithm))
counters = st.integers(min_value=0, max_value=2**64 - 1)


def _independent(alg: Algorithm, key: bytes, nonce: bytes, ad: bytes, pt: bytes) -> bytes:
    cls = ChaCha20Poly1305 if alg is Algorithm.CHACHA20_POLY1305 else AESGCM
    return cls(key).encrypt(nonce, pt, ad)


def _nonce(iv: bytes, counter: int) -> bytes:
    return (int.from_bytes(iv, "big") ^ counter).to_bytes(12, "big")


@settings(max_examples=200, deadline=None)
@given(alg=algs, data=st.data(), counter=counters,
       ad=st.binary(max_size=300), pt=st.binary(max_size=3000))
def test_single_seal_equals_independent_libraries(alg, data, counter, ad, pt) -> None:
    key = data.draw(st.binary(min_size=alg.key_len, max_size=alg.key_len))
    iv = data.draw(st.binary(min_size=12, max_size=12))
    expected = _independent(alg, key, _nonce(iv, counter), ad, pt)
    assert C.sealer(alg, key, iv)._seal_at(counter, ad, pt) == expected
    assert PY.sealer(alg, key, iv)._seal_at(counter, ad, pt) == expected
    assert C.opener(alg, key, iv).open(counter, ad, expected) == pt
    if alg is Algorithm.CHACHA20_POLY1305:
        nacl_ct = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
            pt, ad, _nonce(iv, counter), key)
        assert nacl_ct == expected


records = st.lists(
    st.tuples(
        st.sampled_from([int(t) for t in PROTECTED_TYPES]),
        st.integers(0, 255),
        st.binary(max_size=40),
        st.binary(max_size=2000),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(alg=algs, recs=records, start=st.integers(0, 2**40))
def test_batch_seal_identical_and_opens(alg, recs, start) -> None:
    key, iv = os.urandom(alg.key_len), os.urandom(12)
    sc, sp = C.sealer(alg, key, iv), PY.sealer(alg, key, iv)
    sc._set_counter(start)
    sp._set_counter(start)
    wire = sc.seal_records(recs)
    assert wire == sp.seal_records(recs)
    assert sc.counter == sp.counter == start + len(recs)
    for be in (C, PY):
        op = be.opener(alg, key, iv)
        op.set_counter(start)
        buf = bytearray(wire)
        res = op.open_records(buf)
        assert res.error is None and res.consumed == len(wire)
        got = [(r.type, r.flags, r.options(buf), r.plaintext(buf)) for r in res.records]
        assert got == [(t, f, o, p) for t, f, o, p in recs]


@settings(max_examples=100, deadline=None)
@given(alg=algs, data=st.binary(max_size=20000), chunk=st.integers(1, 5000),
       seq_base=st.integers(0, 2**64 - 1), opt_len=st.integers(12, 30))
def test_seal_chunks_identical_and_patches(alg, data, chunk, seq_base, opt_len) -> None:
    key, iv = os.urandom(alg.key_len), os.urandom(12)
    template = os.urandom(opt_len)
    args = dict(rtype=RecordType.DATA, flags=3, options=template, seq_off=2,
                seq_base=seq_base, len_off=opt_len - 2)
    wire = C.sealer(alg, key, iv).seal_chunks(data, chunk, **args)
    assert wire == PY.sealer(alg, key, iv).seal_chunks(data, chunk, **args)
    buf = bytearray(wire)
    opener = C.opener(alg, key, iv)
    opened, pos = [], 0
    while pos < len(buf):  # max_records bounds one call; continue where it stopped
        view = bytearray(buf[pos:])
        res = opener.open_records(view, max_records=1000)
        assert res.error is None and res.consumed > 0
        opened += [(r, view) for r in res.records]
        pos += res.consumed
    assert b"".join(r.plaintext(v) for r, v in opened) == data
    off = 0
    for r, view in opened:
        buf = view
        opts = r.options(buf)
        assert int.from_bytes(opts[2:10], "big") == (seq_base + off) % 2**64
        assert int.from_bytes(opts[-2:], "big") == r.pt_len <= chunk
        off += r.pt_len


def test_empty_and_maximum_size_records() -> None:
    for alg in Algorithm:
        key, iv = os.urandom(alg.key_len), os.urandom(12)
        recs = [(1, 0, b"", b""), (1, 0, bytes(MAX_OPT_LEN), os.urandom(MAX_PLAINTEXT))]
        wire = C.sealer(alg, key, iv).seal_records(recs)
        assert wire == PY.sealer(alg, key, iv).seal_records(recs)
        assert len(wire) == 6 + 16 + 6 + MAX_OPT_LEN + MAX_PLAINTEXT + 16
        buf = bytearray(wire)
        res = C.opener(alg, key, iv).open_records(buf)
        assert [r.plaintext(buf) for r in res.records] == [b"", recs[1][3]]
        # Single calls: empty, and a 1 MiB plaintext with no associated data.
        big = os.urandom(1 << 20)
        for pt in (b"", big):
            ct = C.sealer(alg, key, iv)._seal_at(7, b"", pt)
            assert ct == PY.sealer(alg, key, iv)._seal_at(7, b"", pt)
            assert C.opener(alg, key, iv).open(7, b"", ct) == pt


def test_hmac_and_compare_match_between_backends() -> None:
    # RFC 4231 test case 2.
    key, msg = b"Jefe", b"what do ya want for nothing?"
    full = bytes.fromhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    for be in (C, PY):
        assert be.hmac_sha256(key, msg) == full
        assert be.hmac_sha256(key, msg, 8) == full[:8]
        assert be.ct_equal(full, full) and not be.ct_equal(full, full[:-1] + b"\0")
        assert not be.ct_equal(full, full[:-1])

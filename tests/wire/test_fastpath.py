"""The fast paths (wire/fastpath.py, found by profiling) agree with the general rules.

DATA and acknowledgement records we send have one option layout each; the engine parses
those with one struct unpack and everything else with the full codec. The buffers copy
each byte once and cut acknowledged bytes off lazily. These tests hold the fast paths to
the general code: same values, or a refusal that sends the record down the general path.
"""

from __future__ import annotations

import os
import random

from hypothesis import given, settings, strategies as st

from mptcpsec.errors import MptcpsecError
from mptcpsec.protocol.stream import Range, ReassemblyBuffer, SendBuffer
from mptcpsec.wire import fastpath
from mptcpsec.wire.fastpath import ACK_OPTS, ACK_OPTS_FIXED, DataOptions, parse_data
from mptcpsec.wire.header import RecordType
from mptcpsec.wire.options import Dss, MpsWindow, encode_options
from mptcpsec.wire.records import check_record

U64 = st.integers(0, 2**64 - 1)


@settings(max_examples=300, deadline=None)
@given(ack=U64, dsn=U64, n=st.integers(0, 65519), fin=st.booleans(), edge=U64)
def test_fast_data_options_match_the_codec(ack: int, dsn: int, n: int, fin: bool,
                                           edge: int) -> None:
    opts = encode_options([Dss(data_ack=ack, dsn=dsn, ssn=0, data_len=n + fin, data_fin=fin),
                           MpsWindow(edge)])
    assert parse_data(opts) == DataOptions(ack, dsn, n + fin, fin, edge)
    if n or fin:
        decoded = check_record(RecordType.DATA, 0, opts, n)
        assert decoded[0].data_ack == ack and decoded[0].dsn == dsn
        assert decoded[0].data_fin == fin and decoded[1] == MpsWindow(edge)


@settings(max_examples=500, deadline=None)
@given(base=st.binary(min_size=38, max_size=38), flips=st.lists(st.integers(0, 37), max_size=3),
       seed=st.integers(0, 2**32 - 1))
def test_fast_data_options_never_accept_what_the_codec_refuses(base: bytes, flips: list[int],
                                                               seed: int) -> None:
    # Start from a valid layout, then break bytes at random: the fast path either refuses
    # or agrees with the codec.
    rng = random.Random(seed)
    good = bytearray(encode_options([Dss(data_ack=rng.getrandbits(64), dsn=rng.getrandbits(64),
                                         ssn=0, data_len=100), MpsWindow(rng.getrandbits(64))]))
    for i in flips:
        good[i] = base[i]
    fast = parse_data(bytes(good))
    if fast is None:
        return
    ack, dsn, dlen, fin, edge = (fast.data_ack, fast.dsn, fast.data_len, fast.data_fin,
                                 fast.window_edge)
    if dlen == 0:
        return  # no plaintext and no DATA_FIN: the engine's caller refuses it as well
    try:
        decoded = check_record(RecordType.DATA, 0, bytes(good), dlen - fin)
    except MptcpsecError as exc:  # pragma: no cover - would be a fast-path bug
        raise AssertionError(f"fast path accepted options the codec refuses: {exc}") from exc
    assert (decoded[0].data_ack, decoded[0].dsn, decoded[0].data_fin) == (ack, dsn, fin)
    assert decoded[1] == MpsWindow(edge)


@settings(max_examples=300, deadline=None)
@given(ack=U64, edge=U64, flips=st.lists(st.tuples(st.integers(0, 23), st.integers(0, 255)),
                                         max_size=2))
def test_fast_ack_layout_is_exactly_the_codecs_ack(ack: int, edge: int,
                                                   flips: list[tuple[int, int]]) -> None:
    opts = bytearray(encode_options([Dss(data_ack=ack), MpsWindow(edge)]))
    assert len(opts) == ACK_OPTS.size
    for i, v in flips:
        opts[i] = v
    fields = ACK_OPTS.unpack(bytes(opts))
    fixed = fields[:4] + fields[5:9]
    if fixed != ACK_OPTS_FIXED:
        return  # the engine takes the general path
    decoded = check_record(RecordType.CONTROL, 0, bytes(opts), 0)
    assert decoded == [Dss(data_ack=fields[4]), MpsWindow(fields[9])]


def test_send_buffer_matches_a_model_under_lazy_compaction() -> None:
    rng = random.Random(5)
    sb = SendBuffer(2**64 - 5000, limit=1 << 19)  # DSNs cross 2**64 like any other integer
    written = bytearray()
    base = sb.base
    for _ in range(4000):
        op = rng.random()
        if op < 0.35 and sb.writable:
            data = os.urandom(rng.randint(1, min(sb.writable, rng.choice((9000, 40000)))))
            kind = rng.randrange(3)
            if kind == 0:
                sb.write(data)  # bytes: may be kept as it is
            elif kind == 1:
                mutable = bytearray(data)
                sb.write(mutable)
                mutable[:] = bytes(len(mutable))  # the writer reuses its buffer: no effect
            else:
                sb.write(memoryview(data)[: len(data)])
            written += data
        elif op < 0.7:
            got = sb.next_chunk(rng.randint(1, 5000))
            if got is not None:
                dsn, data = got
                assert data == written[dsn - base:dsn - base + len(data)]
        elif op < 0.95 and sb.next_dsn > sb.base:
            sb.ack(rng.randint(sb.base + 1, sb.next_dsn))
        elif sb.next_dsn > sb.base:
            sb.reinject([Range(sb.base, sb.next_dsn)])
        assert sb.unacked == sb.end - sb.base == base + len(written) - sb.base
        assert sb.writable == max(0, sb.limit - sb.unacked)
        assert sb.peek(sb.base, sb.next_dsn) == written[sb.base - base:sb.next_dsn - base]


def test_reassembly_reads_across_chunks_and_keeps_nothing_once_read() -> None:
    rb = ReassemblyBuffer(0, window=1000)
    rb.receive(10, bytearray(b"klmnopqrst"))  # out of order, kept aside
    rb.receive(0, bytearray(b"abcdefghij"))
    rb.receive(20, b"uvwxyz")
    assert rb.readable == 26 and rb.window_edge == 26 + 1000 - 26
    assert rb.read(3) == b"abc"
    assert rb.read(12) == b"defghijklmno"  # spans two chunks from a partly read one
    assert rb.read(0) == b""
    assert rb.read() == b"pqrstuvwxyz" and rb.readable == 0 and rb.buffered == 0
    assert rb.window_edge == 26 + 1000
    rb.set_fin(26)
    assert rb.at_eof


def _established(window: int = 1 << 20):
    from mptcpsec.crypto.keyschedule import Role, Secret
    from mptcpsec.crypto.psk import PskConfig
    from mptcpsec.protocol.config import ConnectionConfig
    from tests.protocol.loopback import Loopback

    cfg = ConnectionConfig(key_exchange="psk", receive_window=window, max_record=1000)
    cfg.psk = PskConfig(Role.CLIENT, Secret(b"\x29" * 32))
    lb = Loopback(cfg)
    lb.open(1)
    lb.pump()
    assert lb.server is not None and lb.server.established
    return lb


def _seal_run(lb, pieces: list[tuple[int, bytes]]) -> bytes:
    """DATA records from the client's own sealer, at the DSNs given (offsets from its IDSN)."""
    sub = lb.client.subflows[0]
    rb = lb.client.recvbuf  # what the client would acknowledge and advertise now
    template = fastpath.data_template(rb.next_dsn, rb.window_edge)
    seq_off, len_off = fastpath.DATA_DSN_OFFSET, fastpath.DATA_LEN_OFFSET
    base = lb.client.sendbuf.base
    return b"".join(bytes(sub.sealer.seal_chunks(data, len(data), RecordType.DATA, 0, template,
                                                 seq_off=seq_off, seq_base=base + off,
                                                 len_off=len_off)) for off, data in pieces)


def test_a_run_of_data_records_out_of_order_and_overlapping_is_delivered_once() -> None:
    lb = _established()
    data = os.urandom(6000)
    # One batch: [3000, 6000) ahead of [0, 3000), then a duplicate of [1000, 2000).
    wire = _seal_run(lb, [(3000, data[3000:4000]), (4000, data[4000:5000]),
                          (5000, data[5000:6000]), (0, data[:1000]), (1000, data[1000:2000]),
                          (2000, data[2000:3000]), (1000, data[1000:2000])])
    before = lb.server.subflows[0].records_received
    lb.deliver_raw(lb.links[0], wire)
    assert lb.server.read() == data
    assert lb.server.recvbuf.duplicates == 1000
    assert lb.server.subflows[0].records_received - before == 7
    assert lb.server.subflows[0].state.value == "established"


def test_a_record_past_the_window_inside_a_run_poisons_at_that_record() -> None:
    lb = _established(window=2500)
    data = os.urandom(3000)
    wire = _seal_run(lb, [(0, data[:1000]), (1000, data[1000:2000]), (2000, data[2000:3000])])
    before = lb.server.subflows[0].records_received
    lb.deliver_raw(lb.links[0], wire)
    assert lb.server.read() == data[:2000]  # the records before it were good
    sub = lb.server.subflows[0]
    assert sub.state.value == "poisoned" and "receive window" in sub.reason
    assert sub.records_received - before == 3


def test_send_buffer_chunks_stay_valid_after_acks_and_writes() -> None:
    sb = SendBuffer(0, limit=1 << 20)
    big, small = os.urandom(50_000), os.urandom(100)
    sb.write(big)
    sb.write(small)
    first = sb.next_chunk(30_000)
    rest = sb.next_chunk(1 << 20)
    assert first is not None and rest is not None
    assert bytes(first[1]) + bytes(rest[1]) == big + small  # a view, then a joined copy
    sb.ack(sb.next_dsn)
    assert sb.unacked == 0 and sb.segments == 0  # acknowledged segments are dropped
    sb.write(bytearray(40_000))
    assert sb.next_chunk(10) == (50_100, bytes(10))
    assert first[1] == big[:30_000] and rest[1] == big[30_000:] + small


@settings(max_examples=200, deadline=None)
@given(ack=U64, edge=U64)
def test_packed_ack_and_data_template_equal_the_codec(ack: int, edge: int) -> None:
    from mptcpsec.wire.records import control_spec

    assert fastpath.ack_spec(ack, edge) == control_spec([Dss(data_ack=ack), MpsWindow(edge)])
    assert fastpath.parse_ack(fastpath.ack_options(ack, edge)) == (ack, edge)
    packed = fastpath.data_template(ack, edge)
    assert packed == encode_options([Dss(data_ack=ack, dsn=0, ssn=0, data_len=0),
                                     MpsWindow(edge)])

"""Connection-level buffers: exact in-order delivery, de-duplication, bounded memory."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings, strategies as st

from mptcpsec.protocol.stream import Range, ReassemblyBuffer, SendBuffer


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 5000), cuts=st.lists(st.integers(1, 700), min_size=1, max_size=40),
       seed=st.integers(0, 2**32 - 1), dup=st.floats(0, 1), base=st.integers(0, 2**63))
def test_reassembly_delivers_each_byte_once_in_order(size, cuts, seed, dup, base) -> None:
    data = os.urandom(size)
    rng = random.Random(seed)
    segs, pos, i = [], 0, 0
    while pos < size:
        n = cuts[i % len(cuts)]
        segs.append((base + pos, data[pos:pos + n]))
        pos += n
        i += 1
    # Re-injection makes duplicates that overlap other segments at arbitrary offsets.
    extra = []
    for dsn, piece in segs:
        if rng.random() < dup:
            cut = rng.randint(0, len(piece))
            extra.append((dsn + cut, piece[cut:]))
    allsegs = segs + extra
    rng.shuffle(allsegs)
    rb = ReassemblyBuffer(base, window=size)
    out = bytearray()
    for dsn, piece in allsegs:
        rb.receive(dsn, piece)
        assert rb.buffered <= size  # never more than the window
        out += rb.read(rng.randint(0, 300))
    out += rb.read()
    assert bytes(out) == data
    assert rb.next_dsn == base + size


def test_reassembly_refuses_data_beyond_the_window() -> None:
    rb = ReassemblyBuffer(100, window=10)
    rb.receive(100, b"abcde")
    with pytest.raises(ValueError, match="beyond the receive window"):
        rb.receive(106, b"0123456789")
    rb.receive(105, b"fghij")
    assert rb.free_window == 0 and rb.window_edge == 110
    assert rb.read(4) == b"abcd"
    assert rb.window_edge == 114  # reading opens the window
    rb.receive(110, b"klmn")
    assert rb.read() == b"efghijklmn"


def test_send_buffer_ack_and_reinjection() -> None:
    sb = SendBuffer(1000, limit=100)
    sb.write(bytes(range(60)))
    assert sb.writable == 40
    a = sb.next_chunk(25)
    b = sb.next_chunk(25)
    c = sb.next_chunk(25)
    assert (a[0], b[0], c[0]) == (1000, 1025, 1050) and len(c[1]) == 10
    assert sb.next_chunk(25) is None
    assert sb.ack(1010) == 10 and sb.base == 1010
    assert sb.ack(1005) == 0  # old ACKs change nothing
    assert sb.ack(2000) == 0  # an ACK beyond anything sent is ignored
    # The subflow that carried [1000, 1050) died: the unacked part is sent again first.
    assert sb.reinject([Range(1000, 1025), Range(1025, 1050)]) == 40
    assert sb.next_chunk(30) == (1010, bytes(range(10, 40)))
    assert sb.next_chunk(30) == (1040, bytes(range(40, 50)))
    sb.write(b"xyz")
    assert sb.next_chunk(30) == (1060, b"xyz")
    sb.close()
    assert sb.fin_dsn == 1063
    assert sb.ack(1064) == 53 and sb.fin_acked(1064) and sb.unacked == 0
    with pytest.raises(ValueError):
        sb.write(b"late")

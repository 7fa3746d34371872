"""Connection-level byte stream: the send buffer in DSN space and the reassembly buffer.

Both are bounded: the send buffer holds at most `limit` unacknowledged bytes (the writer
is pushed back beyond that), the reassembly buffer accepts only data inside the receive
window and drops duplicates, so re-injected data is delivered exactly once.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

#: Writes this large become send-buffer segments of their own; smaller ones are gathered.
_SEGMENT_MIN = 16 * 1024


@dataclass(frozen=True, slots=True)
class Range:
    """A half-open DSN range [start, end)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Bytes in the range (DSNs, SPEC section 5.2)."""
        return self.end - self.start


class SendBuffer:
    """Bytes written by the application, indexed by 64-bit data sequence number.

    Bytes stay here until the peer's cumulative DATA_ACK covers them, so that anything in
    flight on a subflow that dies can be re-injected on another.

    Held as segments that never change, so a chunk to send is a view into one (no copy)
    and an acknowledged segment is simply dropped. A large write of immutable bytes (bytes,
    or a memoryview of bytes) becomes a segment as it is; other large writes are copied
    once; small writes gather in a tail that becomes a segment when it is first sent.
    """

    def __init__(self, initial_dsn: int, limit: int) -> None:
        self.base = initial_dsn  # the peer's DATA_ACK: bytes before it are released
        self._segs: list[bytes | bytearray | memoryview] = []  # segments, in DSN order
        self._seg_dsn: list[int] = []  # DSN of each segment's first byte
        self._tail = bytearray()  # small writes, not yet a segment
        self._tail_dsn = initial_dsn
        self.next_dsn = initial_dsn  # first DSN never sent yet
        self.limit = limit
        self._reinject: list[Range] = []  # ranges to send again, in DSN order
        self.fin_dsn: int | None = None  # DSN of DATA_FIN once the writer closed

    @property
    def end(self) -> int:
        """DSN after the last byte written (SPEC section 10.3)."""
        return self._tail_dsn + len(self._tail)

    @property
    def unacked(self) -> int:
        """Bytes written and not yet acknowledged (SPEC section 10.3)."""
        return self.end - self.base

    @property
    def writable(self) -> int:
        """Bytes the application may still write before it is pushed back (SPEC section 10.3)."""
        return max(0, self.limit - self.unacked)

    @property
    def segments(self) -> int:
        """Written segments still held (acknowledged ones are dropped; SPEC section 10.3)."""
        return len(self._segs)

    @property
    def unsent(self) -> int:
        """Bytes written and not yet sent once (SPEC section 10.3)."""
        return self.end - self.next_dsn

    @property
    def pending_reinjection(self) -> int:
        """Re-injected ranges wait to be sent again (SPEC section 10.4)."""
        return sum(r.length for r in self._reinject)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append application bytes after the last DSN (SPEC section 10.3)."""
        if self.fin_dsn is not None:
            raise ValueError("the stream was closed for writing")
        if isinstance(data, memoryview) and not (data.ndim == 1 and data.format == "B"
                                                 and data.c_contiguous):
            data = data.tobytes()
        n = len(data)
        if n < _SEGMENT_MIN:
            self._tail += data
            return
        self._freeze()
        if not (type(data) is bytes
                or (type(data) is memoryview and type(data.obj) is bytes)):
            data = bytes(data)  # the writer may change its buffer afterwards
        self._segs.append(data)
        self._seg_dsn.append(self._tail_dsn)
        self._tail_dsn += n

    def _freeze(self) -> None:
        if self._tail:
            self._segs.append(self._tail)
            self._seg_dsn.append(self._tail_dsn)
            self._tail_dsn += len(self._tail)
            self._tail = bytearray()

    def close(self) -> None:
        """No more writes: the DATA_FIN takes the DSN after the last byte (SPEC 5.2)."""
        if self.fin_dsn is None:
            self.fin_dsn = self.end

    def ack(self, data_ack: int) -> int:
        """Apply a cumulative DATA_ACK; returns the number of newly acknowledged bytes.

        An ACK beyond anything sent is ignored (the caller treats it as a protocol error).

        SPEC section 10.3.
        """
        limit = self.next_dsn
        if self.fin_dsn is not None and self.next_dsn >= self.fin_dsn:
            limit = self.fin_dsn + 1  # the DATA_FIN occupies one DSN
        if data_ack <= self.base or data_ack > limit:
            return 0
        acked = min(data_ack, self.end) - self.base
        self.base += acked
        segs, starts = self._segs, self._seg_dsn
        drop = 0
        while drop < len(segs) and starts[drop] + len(segs[drop]) <= self.base:
            drop += 1
        if drop:
            del segs[:drop]
            del starts[:drop]
        self._reinject = [Range(max(r.start, self.base), r.end) for r in self._reinject
                          if r.end > self.base]
        return acked

    def fin_acked(self, data_ack: int) -> bool:
        """Whether `data_ack` covers our DATA_FIN (SPEC section 5.2)."""
        return self.fin_dsn is not None and data_ack >= self.fin_dsn + 1

    def reinject(self, ranges: list[Range]) -> int:
        """Queue ranges (from a dead subflow) to be sent again; returns the bytes queued.

        SPEC section 10.3.
        """
        queued = 0
        for r in ranges:
            start, end = max(r.start, self.base), min(r.end, self.next_dsn)
            if start >= end:
                continue
            self._reinject.append(Range(start, end))
            queued += end - start
        merged: list[Range] = []
        for r in sorted(self._reinject, key=lambda r: r.start):
            if merged and r.start <= merged[-1].end:
                if r.end > merged[-1].end:
                    merged[-1] = Range(merged[-1].start, r.end)
            else:
                merged.append(r)
        self._reinject = merged
        return queued

    def next_chunk(self, max_len: int) -> tuple[int, bytes | memoryview] | None:
        """The next bytes to put on a subflow: re-injected ranges first, then new data.

        The bytes are a read-only view or a copy; either stays valid after later calls.

        SPEC section 10.3.
        """
        while self._reinject:
            r = self._reinject[0]
            start = max(r.start, self.base)
            if start >= r.end:
                self._reinject.pop(0)
                continue
            end = min(r.end, start + max_len)
            if end == r.end:
                self._reinject.pop(0)
            else:
                self._reinject[0] = Range(end, r.end)
            return start, self._slice(start, end)
        if self.next_dsn < self.end:
            start = self.next_dsn
            end = min(self.end, start + max_len)
            self.next_dsn = end
            return start, self._slice(start, end)
        return None

    def peek(self, start: int, end: int) -> bytes | memoryview:
        """Bytes of [start, end) still held (for redundant scheduling) (SPEC section 10.3)."""
        start = max(start, self.base)
        return self._slice(start, max(start, end))

    def _slice(self, start: int, end: int) -> bytes | memoryview:
        """Bytes of [start, end) (held DSNs): a view into one segment, or a joined copy."""
        if end > self._tail_dsn:
            self._freeze()
        if start >= end:
            return b""
        starts, segs = self._seg_dsn, self._segs
        i = bisect.bisect_right(starts, start) - 1
        off = start - starts[i]
        if end - starts[i] <= len(segs[i]):
            return memoryview(segs[i]).toreadonly()[off:off + end - start]
        parts = []
        while start < end:
            seg = segs[i]
            take = min(end - start, len(seg) - off)
            parts.append(memoryview(seg)[off:off + take])
            start += take
            i, off = i + 1, 0
        return b"".join(parts)


class ReassemblyBuffer:
    """In-order delivery from out-of-order, possibly duplicated DSN ranges.

    Only data inside [delivered, delivered + window) is kept, so memory is bounded by the
    window whatever a peer sends. In-order data is kept as the chunks it arrived in (the
    buffer takes ownership of what `receive` is given) and copied once, when it is read.
    """

    def __init__(self, initial_dsn: int, window: int) -> None:
        self.next_dsn = initial_dsn  # first DSN not yet contiguous
        self.window = window
        # Contiguous bytes not yet read by the application: chunks, the first one read up
        # to _ready_off, _ready_len bytes in all.
        self._ready: deque[bytes | bytearray | memoryview] = deque()
        self._ready_off = 0
        self._ready_len = 0
        self._starts: list[int] = []  # out-of-order segments, sorted, non-overlapping
        self._segs: dict[int, bytes | bytearray] = {}
        self._ooo_bytes = 0
        self.duplicates = 0  # bytes received more than once
        self.fin_dsn: int | None = None

    @property
    def readable(self) -> int:
        """In-order bytes read() returns now (SPEC section 5.2)."""
        return self._ready_len

    @property
    def buffered(self) -> int:
        """Bytes held: in order and out of order (SPEC section 10.3 window)."""
        return self._ready_len + self._ooo_bytes

    @property
    def free_window(self) -> int:
        """Bytes the peer may still send beyond next_dsn (SPEC section 5.2)."""
        return max(0, self.window - self.buffered)

    @property
    def window_edge(self) -> int:
        """First DSN beyond what the receiver accepts now (SPEC section 5.2)."""
        return self.next_dsn + self.window - self._ready_len

    @property
    def at_eof(self) -> bool:
        """Every byte before the peer's DATA_FIN was read (SPEC section 5.2)."""
        return self.fin_dsn is not None and self.next_dsn >= self.fin_dsn and not self._ready_len

    def receive(self, dsn: int, data: bytes | bytearray) -> int:
        """Add a mapped range; returns the bytes that became newly in order.

        Raises ValueError for data beyond the advertised window (a peer bug or attack).

        SPEC section 5.2.
        """
        end = dsn + len(data)
        if end > self.window_edge and end > self.next_dsn:
            raise ValueError(f"data [{dsn}, {end}) beyond the receive window edge "
                             f"{self.window_edge}")
        if end <= self.next_dsn:
            self.duplicates += len(data)
            return 0
        if dsn < self.next_dsn:
            self.duplicates += self.next_dsn - dsn
            data = data[self.next_dsn - dsn:]
            dsn = self.next_dsn
        if dsn > self.next_dsn:
            self._store(dsn, data)
            return 0
        before = self.next_dsn
        self._append(data)
        self.next_dsn = end
        self._drain_segments()
        return self.next_dsn - before

    def receive_run(self, dsn: int, pieces: list[bytearray], total: int) -> int:
        """`receive` of contiguous non-empty pieces (one per record) starting at `dsn`,
        `total` bytes in all: kept as they are when in order, joined otherwise."""
        end = dsn + total
        if dsn == self.next_dsn and end <= self.window_edge:
            self._ready.extend(pieces)
            self._ready_len += total
            self.next_dsn = end
            if self._starts:
                self._drain_segments()
            return self.next_dsn - dsn
        return self.receive(dsn, pieces[0] if len(pieces) == 1 else b"".join(pieces))

    def _store(self, dsn: int, data: bytes | bytearray) -> None:
        # Trim against existing segments so that stored bytes never overlap.
        end = dsn + len(data)
        i = bisect.bisect_right(self._starts, dsn) - 1
        pieces: list[tuple[int, bytes | bytearray]] = []
        cur = dsn
        j = max(i, 0)
        while cur < end:
            if j < len(self._starts) and self._starts[j] <= cur:
                s = self._starts[j]
                e = s + len(self._segs[s])
                if e > cur:
                    self.duplicates += min(e, end) - cur
                    cur = min(e, end)
                j += 1
                continue
            nxt = self._starts[j] if j < len(self._starts) else end
            stop = min(nxt, end)
            if stop > cur:
                pieces.append((cur, data[cur - dsn:stop - dsn]))
            cur = stop
        for s, piece in pieces:
            bisect.insort(self._starts, s)
            self._segs[s] = piece
            self._ooo_bytes += len(piece)

    def _drain_segments(self) -> None:
        while self._starts and self._starts[0] <= self.next_dsn:
            s = self._starts.pop(0)
            piece = self._segs.pop(s)
            self._ooo_bytes -= len(piece)
            end = s + len(piece)
            if end > self.next_dsn:
                self._append(piece if s == self.next_dsn else piece[self.next_dsn - s:])
                self.duplicates += self.next_dsn - s
                self.next_dsn = end
            else:
                self.duplicates += len(piece)

    def set_fin(self, dsn: int) -> None:
        """The peer's DATA_FIN: the stream ends at `dsn` (SPEC section 5.2)."""
        self.fin_dsn = dsn

    def _append(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._ready.append(data)
            self._ready_len += len(data)

    def read(self, max_bytes: int = -1) -> bytes:
        """Take up to `max_bytes` in-order bytes; the window opens (SPEC 10.3)."""
        n = self._ready_len if max_bytes < 0 else min(max_bytes, self._ready_len)
        if n <= 0:
            return b""
        parts: list[bytes | bytearray | memoryview] = []
        need = n
        while need:
            chunk = self._ready[0]
            avail = len(chunk) - self._ready_off
            if avail <= need:
                parts.append(memoryview(chunk)[self._ready_off:] if self._ready_off else chunk)
                self._ready.popleft()
                self._ready_off = 0
                need -= avail
            else:
                parts.append(memoryview(chunk)[self._ready_off:self._ready_off + need])
                self._ready_off += need
                need = 0
        self._ready_len -= n
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

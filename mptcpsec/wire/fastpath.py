"""The fast-path codec: the two option layouts every sender uses, packed and parsed directly.

Every DATA record the engine sends carries one DSS (64-bit DATA_ACK and DSN, SSN 0, no
checksum) then one WINDOW option; every acknowledgement is a CONTROL record with a DSS
holding only a 64-bit DATA_ACK then WINDOW (papers/SPEC.md sections 4 and 5). Those two
layouts are packed and parsed here with one struct call each. Anything else returns None
and takes the general codec (`wire.options`, `wire.records`), which stays the authority:
the tests in tests/wire/test_fastpath.py hold each function to it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .header import HEADER_LEN, TAG_LEN, RecordType
from .options import (
    DSS_FLAG_A,
    DSS_FLAG_F,
    DSS_FLAG_M,
    KIND_MPTCP,
    DSS_FLAG_a,
    DSS_FLAG_m,
    MpsExtType,
    Subtype,
)

U64_MASK = (1 << 64) - 1

#: Byte 2 of a DSS option: subtype in the high nibble, reserved bits 0.
DSS_SUBTYPE_BYTE = Subtype.DSS << 4
#: Byte 2 of a WINDOW option: MP_EXPERIMENTAL subtype, MPTCPsec WINDOW type.
WINDOW_SUBTYPE_BYTE = (Subtype.MP_EXPERIMENTAL << 4) | MpsExtType.WINDOW
#: RFC 8684 figure 9 lengths: 64-bit DATA_ACK only; 64-bit DSN mapping without DATA_ACK;
#: both (no checksum in either).
DSS_ACK_ONLY_LEN = 12
DSS_MAPPING_LEN = 18
DSS_ACK_MAPPING_LEN = 26
WINDOW_LEN = 12

#: DSS flags of an acknowledgement: DATA_ACK present, 8 octets.
ACK_FLAGS = DSS_FLAG_A | DSS_FLAG_a
#: DSS flags of a DATA record: 64-bit DATA_ACK and a 64-bit DSN mapping.
DATA_FLAGS = ACK_FLAGS | DSS_FLAG_M | DSS_FLAG_m
#: The same with DATA_FIN.
DATA_FIN_FLAGS = DATA_FLAGS | DSS_FLAG_F
_DSS_RESERVED_FLAGS = 0xE0

#: DATA options: DSS(kind, len, subtype, flags, ack, dsn, ssn, dlen) WINDOW(kind, len,
#: subtype, reserved, edge).
DATA_OPTS = struct.Struct("!BBBBQQIHBBBBQ")
#: The fixed fields of DATA_OPTS (kinds, lengths, subtypes, SSN, reserved), in order.
DATA_OPTS_FIXED = (KIND_MPTCP, DSS_ACK_MAPPING_LEN, DSS_SUBTYPE_BYTE, 0,
                   KIND_MPTCP, WINDOW_LEN, WINDOW_SUBTYPE_BYTE, 0)
#: Where a DATA template's DSN and data-level length sit (the sealer fills them in).
DATA_DSN_OFFSET = 12
DATA_LEN_OFFSET = 24

#: ACK options: DSS(kind, len, subtype, flags, ack) WINDOW(kind, len, subtype, reserved,
#: edge).
ACK_OPTS = struct.Struct("!BBBBQBBBBQ")
ACK_OPTS_FIXED = (KIND_MPTCP, DSS_ACK_ONLY_LEN, DSS_SUBTYPE_BYTE, ACK_FLAGS,
                  KIND_MPTCP, WINDOW_LEN, WINDOW_SUBTYPE_BYTE, 0)

#: A DATA record's header bytes 4-5 (body length) then its DATA_OPTS.
_RUN_RECORD = struct.Struct("!4xH" + DATA_OPTS.format.lstrip("!"))
_DSS_ACK_MAPPING = struct.Struct("!QQIH")
_DSS_MAPPING = struct.Struct("!QIH")


@dataclass(frozen=True)
class DataOptions:
    """What the DATA fast path reads from a record's options (SPEC section 5, DATA)."""

    data_ack: int | None
    dsn: int
    data_len: int
    data_fin: bool
    window_edge: int | None  # None when no WINDOW option follows the DSS


def data_template(data_ack: int, edge: int) -> bytes:
    """DATA options with DSN and length 0, to be filled per record (SPEC section 5)."""
    return DATA_OPTS.pack(KIND_MPTCP, DSS_ACK_MAPPING_LEN, DSS_SUBTYPE_BYTE, DATA_FLAGS,
                          data_ack, 0, 0, 0, KIND_MPTCP, WINDOW_LEN, WINDOW_SUBTYPE_BYTE, 0,
                          edge & U64_MASK)


def ack_options(data_ack: int, edge: int) -> bytes:
    """encode_options([Dss(data_ack=data_ack), MpsWindow(edge)]), packed directly."""
    return ACK_OPTS.pack(KIND_MPTCP, DSS_ACK_ONLY_LEN, DSS_SUBTYPE_BYTE, ACK_FLAGS, data_ack,
                         KIND_MPTCP, WINDOW_LEN, WINDOW_SUBTYPE_BYTE, 0, edge & U64_MASK)


def ack_spec(data_ack: int, edge: int) -> tuple[int, int, bytes, bytes]:
    """control_spec([Dss(data_ack=data_ack), MpsWindow(edge)]) (SPEC section 5, CONTROL)."""
    return (RecordType.CONTROL, 0, ack_options(data_ack, edge), b"")


def parse_ack(opts: bytes) -> tuple[int, int] | None:
    """(data_ack, window_edge) of the acknowledgement layout, or None for any other."""
    if len(opts) != ACK_OPTS.size:
        return None
    k, ln, st, fl, ack, k2, ln2, st2, res2, edge = ACK_OPTS.unpack(opts)
    if (k, ln, st, fl, k2, ln2, st2, res2) != ACK_OPTS_FIXED:
        return None
    return ack, edge


def parse_data(opts: bytes) -> DataOptions | None:
    """The DATA options of our own layout, or a lone canonical DSS; None for any other.

    The lone DSS (64-bit DSN, optional 64-bit DATA_ACK, SSN 0, no checksum, nothing after
    it) is what a DATA_FIN without data looks like; every other layout is the general
    codec's to judge.
    """
    if len(opts) == DATA_OPTS.size:
        k, ln, st, flags, ack, dsn, ssn, dlen, k2, ln2, st2, res2, edge = DATA_OPTS.unpack(opts)
        if ((k, ln, st, ssn, k2, ln2, st2, res2) == DATA_OPTS_FIXED
                and flags in (DATA_FLAGS, DATA_FIN_FLAGS)):
            return DataOptions(ack, dsn, dlen, flags == DATA_FIN_FLAGS, edge)
    if len(opts) < DSS_MAPPING_LEN or opts[0] != KIND_MPTCP or opts[2] != DSS_SUBTYPE_BYTE:
        return None
    flags, length = opts[3], opts[1]
    if flags & _DSS_RESERVED_FLAGS:
        return None
    has_ack = flags & DSS_FLAG_A
    if ((flags & (DSS_FLAG_M | DSS_FLAG_m)) != (DSS_FLAG_M | DSS_FLAG_m)
            or bool(has_ack) != bool(flags & DSS_FLAG_a)):
        return None
    if length != (DSS_ACK_MAPPING_LEN if has_ack else DSS_MAPPING_LEN) or len(opts) != length:
        return None
    data_ack: int | None
    if has_ack:
        data_ack, dsn, ssn, dlen = _DSS_ACK_MAPPING.unpack_from(opts, 4)
    else:
        data_ack = None
        dsn, ssn, dlen = _DSS_MAPPING.unpack_from(opts, 4)
    if ssn != 0:
        return None
    return DataOptions(data_ack, dsn, dlen, bool(flags & DSS_FLAG_F), None)


class RecordBounds(Protocol):
    """Where an opened record lies in the receive buffer (crypto.aead.OpenedRecord)."""

    @property
    def offset(self) -> int: ...


@dataclass
class DataRun:
    """Consecutive plain DATA records, contiguous in DSN: one reassembly call for all."""

    first_dsn: int
    pieces: list[bytearray]
    total: int
    acks: list[int]  # distinct consecutive DATA_ACK values, in order
    window_edge: int  # the largest edge among them
    end: int  # index of the first record not in the run


def data_run(buf: bytearray, records: Sequence[RecordBounds], i: int) -> DataRun | None:
    """Walk the plain DATA records from index i: our layout, no flags, no DATA_FIN, with
    data, each DSN right after the previous one (SPEC section 5); None if record i is not.

    The opened records lie back to back from the first one's offset, so the headers are
    read here rather than building a record object for each.
    """
    unpack, size, fixed = _RUN_RECORD.unpack_from, DATA_OPTS.size, DATA_OPTS_FIXED
    data_type, flags_data = RecordType.DATA, DATA_FLAGS
    pieces: list[bytearray] = []
    acks: list[int] = []
    first = expect = edge = -1
    n = len(records)
    if i >= n:
        return None
    pos = records[i].offset
    while i < n:
        if buf[pos + 1] != data_type or buf[pos + 2] or buf[pos + 3] != size:
            break
        blen, k, ln, st, fl, ack, dsn, ssn, dlen, k2, ln2, st2, res2, wnd = unpack(buf, pos)
        plen = blen - TAG_LEN
        if ((k, ln, st, ssn, k2, ln2, st2, res2) != fixed or fl != flags_data or dlen != plen
                or plen <= 0 or (pieces and dsn != expect)):
            break
        if not pieces:
            first = dsn
        body = pos + HEADER_LEN + size
        pieces.append(buf[body:body + plen])
        expect = dsn + plen
        if not acks or acks[-1] != ack:
            acks.append(ack)
        edge = max(edge, wnd)
        pos = body + blen
        i += 1
    if not pieces:
        return None
    return DataRun(first, pieces, expect - first, acks, edge, i)

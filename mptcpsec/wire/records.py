"""MPTCPsec record framing: build and parse records, the per-type rules, the incremental parser.

A record is ``header (6) || options (opt_len) || body (body_len)`` (papers/SPEC.md
sections 2, 3, 5). Protected records have ``body = ciphertext || tag``; the AEAD is always
done by the crypto backend, so this module only frames: it builds the option bytes and
the ``(type, flags, options, plaintext)`` tuples the backend's ``seal_records`` takes,
frames unprotected records (plaintext HANDSHAKE and JOIN records, the ``plain``
comparison mode), and checks what an opened record may contain.

``RecordParser`` splits a byte stream into records whatever its fragmentation. It checks
each header as soon as its 6 bytes are there, before buffering any of the body, and its
buffer never holds more than one record of the configured maximum size. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntFlag

from ..errors import (
    ParserFailedError,
    RecordBodyError,
    RecordError,
    RecordFlagsError,
    RecordOptionsError,
    RecordTooLargeError,
    RecordTypeError,
    RecordVersionError,
    TruncatedError,
    WireError,
)
from .header import (
    DEFAULT_MAX_PLAINTEXT,
    HEADER_LEN,
    MAX_BODY_LEN,
    MAX_OPT_LEN,
    TAG_LEN,
    VERSION,
    RecordHeader,
    RecordType,
    type_mask,
)
from .options import (
    AddAddr,
    Dss,
    MpCapable,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpsSubflow,
    MpsWindow,
    MptcpOption,
    MpTcpRst,
    PoisonReason,
    RemoveAddr,
    decode_options,
    encode_options,
)

#: (type, flags, options, plaintext): what ``Sealer.seal_records`` takes.
RecordSpec = tuple[int, int, bytes, bytes]

#: Every record type this version defines.
ALL_TYPES: tuple[RecordType, ...] = tuple(RecordType)
#: Types sent unprotected before keys exist.
CLEAR_TYPES: tuple[RecordType, ...] = (RecordType.HANDSHAKE, RecordType.JOIN)
#: Largest JOIN body: a 32-byte nonce and a 32-byte MAC (papers/SPEC.md section 5.4).
MAX_JOIN_BODY = 64
#: Default largest body: a protected record of ``DEFAULT_MAX_PLAINTEXT`` bytes.
DEFAULT_MAX_BODY = DEFAULT_MAX_PLAINTEXT + TAG_LEN


class HandshakeFlags(IntFlag):
    """Flags of a HANDSHAKE record."""

    #: Unprotected: the body is the handshake message itself, without a tag.
    CLEAR = 0x01


class KeyUpdateFlags(IntFlag):
    """Flags of a KEY_UPDATE record."""

    #: The sender asks the peer to update its own sending key on this subflow too.
    UPDATE_REQUESTED = 0x01


#: The flag bits each type defines; every other bit MUST be zero.
DEFINED_FLAGS: dict[int, int] = {
    RecordType.DATA: 0,
    RecordType.CONTROL: 0,
    RecordType.HANDSHAKE: int(HandshakeFlags.CLEAR),
    RecordType.KEY_UPDATE: int(KeyUpdateFlags.UPDATE_REQUESTED),
    RecordType.CLOSE: 0,
    RecordType.JOIN: 0,
}


# ----------------------------------------------------------------------------- records

@dataclass(frozen=True, slots=True)
class Record:
    """One framed record as it is on the wire (body = ciphertext || tag when protected)."""

    type: int
    flags: int
    options: bytes = b""
    body: bytes = b""

    @property
    def header(self) -> RecordHeader:
        return RecordHeader(type=self.type, flags=self.flags, opt_len=len(self.options),
                            body_len=len(self.body))

    def encode(self) -> bytes:
        return self.header.pack() + self.options + self.body

    def __len__(self) -> int:
        return HEADER_LEN + len(self.options) + len(self.body)

    @property
    def associated_data(self) -> bytes:
        """Header || options: what the AEAD authenticates for a protected record."""
        return self.header.pack() + self.options

    def decoded_options(self) -> list[MptcpOption]:
        return decode_options(self.options)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Record:
        """Exactly one complete record, with nothing after it."""
        if len(data) < HEADER_LEN:
            raise TruncatedError(f"record header needs {HEADER_LEN} bytes, got {len(data)}")
        header = _unpack_header(data, 0)
        if len(data) < header.record_len:
            raise TruncatedError(f"record of {header.record_len} bytes, got {len(data)}")
        if len(data) > header.record_len:
            raise RecordError(f"{len(data) - header.record_len} bytes after the record")
        return _slice_record(data, 0, header)


def _slice_record(data: bytes | bytearray | memoryview, pos: int, h: RecordHeader) -> Record:
    opt_start = pos + HEADER_LEN
    body_start = opt_start + h.opt_len
    return Record(type=h.type, flags=h.flags, options=bytes(data[opt_start:body_start]),
                  body=bytes(data[body_start:body_start + h.body_len]))


def _option_bytes(options: bytes | bytearray | Iterable[MptcpOption]) -> bytes:
    if isinstance(options, (bytes, bytearray)):
        if len(options) > MAX_OPT_LEN:
            raise RecordTooLargeError(f"{len(options)} bytes of options, at most {MAX_OPT_LEN}")
        return bytes(options)
    return encode_options(options)


def build_record(rtype: int, flags: int = 0,
                 options: bytes | bytearray | Iterable[MptcpOption] = b"",
                 body: bytes | bytearray = b"") -> bytes:
    """Frame an unprotected record (plaintext HANDSHAKE or JOIN, or ``plain`` mode)."""
    return Record(int(rtype), int(flags), _option_bytes(options), bytes(body)).encode()


def clear_handshake(message: bytes | bytearray,
                    options: bytes | Iterable[MptcpOption] = b"") -> bytes:
    """A HANDSHAKE record sent before keys exist: CLEAR flag, body = the message, no tag."""
    return build_record(RecordType.HANDSHAKE, HandshakeFlags.CLEAR, options, message)


def join_record(join: MpJoinSyn | MpJoinSynAck | MpJoinAck, subflow_id: int | None = None,
                payload: bytes | bytearray = b"") -> bytes:
    """A JOIN record (always unprotected); the first one names its subflow ID."""
    opts: list[MptcpOption] = [join]
    if subflow_id is not None:
        opts.append(MpsSubflow(subflow_id))
    return build_record(RecordType.JOIN, 0, opts, payload)


# ----------------------------------------------------------------------------- specs to seal

def data_dss(dsn: int, length: int, data_ack: int | None = None,
             data_fin: bool = False) -> Dss:
    """The canonical DSS of a DATA record: 64-bit DSN (and DATA_ACK), SSN 0, no checksum."""
    return Dss(data_ack=data_ack, dsn=dsn, ssn=0, data_len=length + int(data_fin),
               data_fin=data_fin)


def data_spec(dsn: int, payload: bytes | bytearray, data_ack: int | None = None,
              data_fin: bool = False, extra: Sequence[MptcpOption] = ()) -> RecordSpec:
    """A DATA record mapping ``payload`` to DSNs ``dsn .. dsn+len-1`` (plus DATA_FIN)."""
    dss = data_dss(dsn, len(payload), data_ack, data_fin)
    return (RecordType.DATA, 0, encode_options([dss, *extra]), bytes(payload))


def control_spec(options: Sequence[MptcpOption]) -> RecordSpec:
    """A CONTROL record: authenticated options, empty plaintext."""
    if not options:
        raise RecordOptionsError("a CONTROL record carries at least one option")
    return (RecordType.CONTROL, 0, encode_options(options), b"")


def data_ack_spec(data_ack: int) -> RecordSpec:
    """A CONTROL record that only acknowledges data (a 64-bit DATA_ACK)."""
    return control_spec([Dss(data_ack=data_ack)])


def subflow_reset_spec(subflow_id: int, reason: PoisonReason | int,
                       rst_reason: int = 1, transient: bool = False) -> RecordSpec:
    """Report a subflow as reset (e.g. poisoned) over another, clean subflow."""
    return control_spec([MpTcpRst(reason=rst_reason, transient=transient),
                         MpsSubflow(subflow_id, int(reason))])


def key_update_spec(request_update: bool = False) -> RecordSpec:
    """KEY_UPDATE: the next record in this direction uses the next key of the chain."""
    flags = KeyUpdateFlags.UPDATE_REQUESTED if request_update else 0
    return (RecordType.KEY_UPDATE, int(flags), b"", b"")


def close_spec(data_ack: int | None = None) -> RecordSpec:
    """CLOSE: the authenticated end of this subflow's direction (like close_notify)."""
    opts = encode_options([Dss(data_ack=data_ack)]) if data_ack is not None else b""
    return (RecordType.CLOSE, 0, opts, b"")


@dataclass(frozen=True, slots=True)
class DataTemplate:
    """Options of a run of DATA records for ``Sealer.seal_chunks``.

    The DSS comes first, so the DSN and data-level length sit at fixed offsets that the
    C core patches per record: ``seq_off`` (big-endian u64) and ``len_off`` (u16).
    """

    options: bytes
    seq_off: int
    len_off: int


def data_template(data_ack: int | None = None, extra: Sequence[MptcpOption] = ()) -> DataTemplate:
    """A :class:`DataTemplate` with DSN 0 and length 0 placeholders."""
    dss = data_dss(0, 0, data_ack)
    seq_off = 4 + (8 if data_ack is not None else 0)
    return DataTemplate(encode_options([dss, *extra]), seq_off, seq_off + 8 + 4)


# ----------------------------------------------------------------------------- rules

def is_protected(rtype: int, flags: int, protected: bool = True) -> bool:
    """Whether a record of this type and flags has ``ciphertext || tag`` as its body.

    JOIN records never do; a HANDSHAKE record does unless its CLEAR flag is set; every
    other type does in ``mptcpsec`` mode (``protected=True``) and does not in ``plain``
    mode. So a stream can be split without knowing when the keys arrived.
    """
    if rtype == RecordType.JOIN:
        return False
    if rtype == RecordType.HANDSHAKE:
        return not flags & HandshakeFlags.CLEAR
    return protected


def check_header(header: RecordHeader, *, max_body: int = DEFAULT_MAX_BODY,
                 allowed_types: int | Iterable[int] = ALL_TYPES,
                 protected: bool = True) -> None:
    """Reject a header by its fixed fields alone (before any of its body is read).

    ``protected`` is the connection mode (``plain`` mode: False), see :func:`is_protected`.
    """
    mask = allowed_types if isinstance(allowed_types, int) else type_mask(allowed_types)
    if header.version != VERSION:
        raise RecordVersionError(f"unknown record version {header.version}")
    if header.type not in DEFINED_FLAGS:
        raise RecordTypeError(f"unknown record type {header.type}")
    if not (mask >> header.type) & 1:
        raise RecordTypeError(f"record type {RecordType(header.type).name} not accepted here")
    if header.flags & ~DEFINED_FLAGS[header.type]:
        raise RecordFlagsError(
            f"{RecordType(header.type).name} record with undefined flags {header.flags:#04x}")
    if header.body_len > max_body:
        raise RecordTooLargeError(f"record body of {header.body_len} bytes, at most {max_body}")
    if is_protected(header.type, header.flags, protected) and header.body_len < TAG_LEN:
        raise RecordBodyError(f"protected record body of {header.body_len} bytes is shorter "
                              f"than the {TAG_LEN}-byte tag")


#: Options that may ride on DATA and CONTROL records.
_SIGNALS = (AddAddr, RemoveAddr, MpPrio, MpsWindow)


def check_record(rtype: int, flags: int, options: bytes | bytearray | memoryview,
                 pt_len: int) -> list[MptcpOption]:
    """Apply the per-type rules of papers/SPEC.md section 5 to an opened record.

    ``pt_len`` is the plaintext length (the body length of an unprotected record).
    Returns the decoded options; raises :class:`RecordOptionsError` (or the codec's
    :class:`~mptcpsec.errors.WireError`) on the first rule broken.
    """
    if rtype not in DEFINED_FLAGS:
        raise RecordTypeError(f"unknown record type {rtype}")
    if flags & ~DEFINED_FLAGS[rtype]:
        raise RecordFlagsError(f"{RecordType(rtype).name} record with undefined flags {flags:#04x}")
    try:
        opts = decode_options(options)
    except WireError as exc:
        raise RecordOptionsError(f"{RecordType(rtype).name} record options: {exc}") from exc
    name = RecordType(rtype).name
    for o in opts:
        if getattr(o, "reserved", 0):
            raise RecordOptionsError(f"{name}: {type(o).__name__} with reserved bits set")
    kinds = [type(o) for o in opts]

    def only(allowed: tuple[type[MptcpOption], ...]) -> None:
        for o in opts:
            if not isinstance(o, allowed):
                raise RecordOptionsError(f"{name} record may not carry {type(o).__name__}")

    def empty_plaintext() -> None:
        if pt_len:
            raise RecordBodyError(f"{name} record carries {pt_len} plaintext bytes, must be 0")

    def ack_only(dss: Dss) -> None:
        if dss.has_mapping or dss.data_ack is None or not dss.data_ack_wide:
            raise RecordOptionsError(f"{name}: DSS must be a 64-bit DATA_ACK without mapping")

    if rtype == RecordType.DATA:
        if not opts or not isinstance(opts[0], Dss) or not opts[0].has_mapping:
            raise RecordOptionsError("DATA record must start with a DSS carrying a mapping")
        dss = opts[0]
        if not dss.dsn_wide or (dss.data_ack is not None and not dss.data_ack_wide):
            raise RecordOptionsError("DATA: DSS must use the 8-byte DSN and DATA_ACK forms")
        if dss.checksum is not None or dss.ssn != 0:
            raise RecordOptionsError("DATA: DSS must have subflow sequence number 0, no checksum")
        if dss.data_len != pt_len + int(dss.data_fin):
            raise RecordOptionsError(
                f"DATA: DSS data-level length {dss.data_len} != plaintext {pt_len}"
                f"{' + DATA_FIN' if dss.data_fin else ''}")
        if pt_len == 0 and not dss.data_fin:
            raise RecordBodyError("DATA record without plaintext or DATA_FIN")
        if kinds.count(Dss) != 1:
            raise RecordOptionsError("DATA record carries exactly one DSS")
        if kinds.count(MpsWindow) > 1:
            raise RecordOptionsError("DATA record carries at most one WINDOW")
        only((Dss, *_SIGNALS))
    elif rtype == RecordType.CONTROL:
        empty_plaintext()
        if not opts:
            raise RecordOptionsError("CONTROL record without options")
        only((Dss, *_SIGNALS, MpFastclose, MpTcpRst, MpsSubflow))
        for o in opts:
            if isinstance(o, Dss):
                ack_only(o)
        if kinds.count(Dss) > 1 or kinds.count(MpsWindow) > 1:
            raise RecordOptionsError("CONTROL record carries at most one DSS and one WINDOW")
        if kinds.count(MpTcpRst) != kinds.count(MpsSubflow) or kinds.count(MpTcpRst) > 1:
            raise RecordOptionsError("CONTROL: an MP_TCPRST goes with exactly one SUBFLOW option")
    elif rtype == RecordType.HANDSHAKE:
        only((MpCapable, MpsSubflow))
        if kinds.count(MpCapable) > 1 or kinds.count(MpsSubflow) > 1:
            raise RecordOptionsError(
                "HANDSHAKE record carries at most one MP_CAPABLE and one SUBFLOW option")
        for o in opts:
            if isinstance(o, MpsSubflow):
                if o.reason != PoisonReason.NONE:
                    raise RecordOptionsError("HANDSHAKE: SUBFLOW reason must be 0")
                continue
            assert isinstance(o, MpCapable)
            if o.version != 1 or not o.hmac_sha256:
                raise RecordOptionsError("HANDSHAKE: MP_CAPABLE must be version 1 with H set")
    elif rtype == RecordType.KEY_UPDATE:
        empty_plaintext()
        if opts:
            raise RecordOptionsError("KEY_UPDATE record carries no options")
    elif rtype == RecordType.CLOSE:
        empty_plaintext()
        only((Dss,))
        if len(opts) > 1:
            raise RecordOptionsError("CLOSE record carries at most one DSS")
        for o in opts:
            assert isinstance(o, Dss)
            ack_only(o)
    elif rtype == RecordType.JOIN:
        only((MpJoinSyn, MpJoinSynAck, MpJoinAck, MpsSubflow))
        joins = [o for o in opts if not isinstance(o, MpsSubflow)]
        subs = [o for o in opts if isinstance(o, MpsSubflow)]
        if len(joins) != 1 or not isinstance(opts[0], (MpJoinSyn, MpJoinSynAck, MpJoinAck)):
            raise RecordOptionsError("JOIN record starts with exactly one MP_JOIN")
        want = 1 if isinstance(joins[0], MpJoinSyn) else 0
        if len(subs) != want:
            raise RecordOptionsError("JOIN: a SUBFLOW option goes with the MP_JOIN SYN form only")
        if subs and subs[0].reason != PoisonReason.NONE:
            raise RecordOptionsError("JOIN: SUBFLOW reason must be 0")
        if pt_len > MAX_JOIN_BODY:
            raise RecordBodyError(f"JOIN body of {pt_len} bytes, at most {MAX_JOIN_BODY}")
    return opts


# ----------------------------------------------------------------------------- parsing

def parse_records(data: bytes | bytearray | memoryview, *, max_body: int = MAX_BODY_LEN,
                  allowed_types: int | Iterable[int] = ALL_TYPES,
                  protected: bool = True) -> tuple[list[Record], int]:
    """Every complete record at the start of ``data`` and the number of bytes they span."""
    out: list[Record] = []
    pos = 0
    while len(data) - pos >= HEADER_LEN:
        header = _unpack_header(data, pos)
        check_header(header, max_body=max_body, allowed_types=allowed_types, protected=protected)
        if len(data) - pos < header.record_len:
            break
        out.append(_slice_record(data, pos, header))
        pos += header.record_len
    return out, pos


def _unpack_header(data: bytes | bytearray | memoryview, pos: int) -> RecordHeader:
    if data[pos] != VERSION:
        raise RecordVersionError(f"unknown record version {data[pos]}")
    return RecordHeader.unpack(data[pos:pos + HEADER_LEN])


class RecordParser:
    """Incremental record splitter for one subflow direction.

    ``feed(chunk)`` returns the records completed by ``chunk``. A header is checked the
    moment its 6th byte arrives; a record that breaks a rule raises a typed
    :class:`~mptcpsec.errors.RecordError` and the parser refuses further input
    (:class:`ParserFailedError`), like a poisoned subflow. Only an incomplete record is
    ever buffered, so ``buffered`` stays below ``max_record_len``.

    ``protected`` is the connection mode (False in ``plain`` mode); whether a record has
    a tag otherwise follows from its type and flags (:func:`is_protected`), so one parser
    covers the plaintext handshake and the protected records after it. ``allowed_types``
    may be changed between calls.
    """

    def __init__(self, *, max_body: int = DEFAULT_MAX_BODY,
                 allowed_types: int | Iterable[int] = ALL_TYPES, protected: bool = True) -> None:
        if not 0 <= max_body <= MAX_BODY_LEN:
            raise ValueError(f"max_body must be in 0..{MAX_BODY_LEN}")
        self.max_body = max_body
        self.allowed_types = (allowed_types if isinstance(allowed_types, int)
                              else type_mask(allowed_types))
        self.protected = protected
        self._buf = bytearray()
        self._need = HEADER_LEN  # bytes the record being buffered needs in total
        self._error: RecordError | None = None
        self.records_parsed = 0
        self.bytes_parsed = 0

    @property
    def max_record_len(self) -> int:
        """The largest record this parser accepts: header + 255 option bytes + max_body."""
        return HEADER_LEN + MAX_OPT_LEN + self.max_body

    @property
    def buffered(self) -> int:
        """Bytes of the incomplete record held now (always < ``max_record_len``)."""
        return len(self._buf)

    @property
    def failed(self) -> bool:
        return self._error is not None

    def _check(self, data: bytes | bytearray | memoryview, pos: int) -> RecordHeader:
        try:
            header = _unpack_header(data, pos)
            check_header(header, max_body=self.max_body, allowed_types=self.allowed_types,
                         protected=self.protected)
        except RecordError as exc:
            self._error = exc
            raise
        return header

    def feed(self, data: bytes | bytearray | memoryview) -> list[Record]:
        if self._error is not None:
            raise ParserFailedError(f"parser already failed: {self._error}")
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        out: list[Record] = []
        pos, end = 0, len(view)
        buf = self._buf
        # 1. Complete the record already being buffered, if any.
        if buf:
            while pos < end:
                take = min(self._need - len(buf), end - pos)
                buf += view[pos:pos + take]
                pos += take
                if len(buf) < self._need:
                    break
                if self._need == HEADER_LEN:
                    self._need = self._check(buf, 0).record_len
                    if self._need > HEADER_LEN:
                        continue
                header = RecordHeader.unpack(buf)
                out.append(_slice_record(buf, 0, header))
                self._done(header.record_len)
                buf.clear()
                self._need = HEADER_LEN
                break
        # 2. Whole records straight from the input, without copying them into the buffer.
        while not buf and end - pos >= HEADER_LEN:
            header = self._check(view, pos)
            if end - pos < header.record_len:
                break
            out.append(_slice_record(view, pos, header))
            self._done(header.record_len)
            pos += header.record_len
        # 3. Keep the incomplete tail (its header, if present, is already checked).
        if pos < end:
            buf += view[pos:end]
            self._need = (RecordHeader.unpack(buf).record_len if len(buf) >= HEADER_LEN
                          else HEADER_LEN)
        return out

    def _done(self, length: int) -> None:
        self.records_parsed += 1
        self.bytes_parsed += length

    def eof(self) -> None:
        """The transport ended: an incomplete record left over is a truncation."""
        if self._buf:
            raise TruncatedError(f"stream ended inside a record ({len(self._buf)} bytes "
                                 f"of {self._need})")


__all__ = [
    "ALL_TYPES", "CLEAR_TYPES", "DEFAULT_MAX_BODY", "DEFINED_FLAGS", "MAX_JOIN_BODY",
    "DataTemplate",
    "HandshakeFlags", "KeyUpdateFlags", "Record", "RecordParser", "RecordSpec", "build_record",
    "check_header", "check_record", "clear_handshake", "close_spec", "control_spec",
    "data_ack_spec", "data_dss", "data_spec", "data_template", "is_protected", "join_record",
    "key_update_spec",
    "parse_records", "subflow_reset_spec",
]

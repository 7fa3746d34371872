"""scapy layers for the MPTCP options, wired into scapy's TCP option parser.

scapy 2.8 leaves TCP option kind 30 as raw bytes. Importing this module registers kind
30 as ``"MPTCP"`` and makes ``TCP.options`` dissect it into the classes below (one per
option form, chosen from the subtype and the length), and build them back:

    >>> pkt = IP(raw_bytes)                       # doctest: +SKIP
    >>> name, opt = pkt[TCP].options[0]           # ("MPTCP", MPTCP_DSS(...))
    >>> TCP(options=[("MPTCP", MPTCP_TCPRST(reason=6))])   # builds kind 30, length 4

A layer holds the option *value* (the bytes after kind and length, from the subtype
byte on); scapy's option field adds kind and length. ``to_scapy``/``from_scapy``
convert to and from the typed codec in :mod:`mptcpsec.wire.options`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scapy.fields import (
    BitEnumField,
    BitField,
    ByteEnumField,
    ByteField,
    ConditionalField,
    FieldListField,
    FlagsField,
    IntField,
    IP6Field,
    IPField,
    LongField,
    MultipleTypeField,
    ShortField,
    StrField,
    XIntField,
    XLongField,
    XShortField,
    XStrFixedLenField,
)
from scapy.layers import inet
from scapy.packet import Packet

from .options import (
    KIND_MPTCP,
    MpsExtType,
    MptcpOption,
    PoisonReason,
    Subtype,
    TcpRstReason,
    decode_option,
)

OPTION_NAME = "MPTCP"

_SUBTYPES = {int(s): s.name for s in Subtype}
_RST_REASONS = {int(r): r.name.lower() for r in TcpRstReason}
_POISON_REASONS = {int(r): r.name.lower() for r in PoisonReason}


class _MptcpValue(Packet):
    """Base: remembers the dissected length, so fields that only a length reveals work.

    While dissecting, ``_has(field, n)`` asks "is the value at least n bytes long"; while
    building, it asks "did the caller set the field".
    """

    __slots__ = ["_vlen"]

    def pre_dissect(self, s: bytes) -> bytes:
        self._vlen = len(s)
        return s

    def _has(self, name: str, min_len: int) -> bool:
        vlen = getattr(self, "_vlen", None)
        if vlen is not None:
            return bool(vlen >= min_len)
        return self.getfieldval(name) is not None

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes | None]:
        return b"", s or None

    def mysummary(self) -> str:
        return self.sprintf(f"{OPTION_NAME} {self.name}")


def _has(name: str, min_len: int) -> Callable[[Any], bool]:
    return lambda pkt: pkt._has(name, min_len)


def _subtype(value: int) -> BitEnumField:
    return BitEnumField("subtype", value, 4, _SUBTYPES)


#: "Unset" for a 64-bit field: scapy supports None there but annotates the default as int.
_UNSET_U64: Any = None


class MPTCP_CAPABLE(_MptcpValue):
    name = "MP_CAPABLE"
    fields_desc = [
        _subtype(Subtype.MP_CAPABLE),
        BitField("version", 1, 4),
        FlagsField("flags", 0x01, 8, "HGFEDCBA"),
        ConditionalField(XLongField("sender_key", _UNSET_U64), _has("sender_key", 10)),
        ConditionalField(XLongField("receiver_key", _UNSET_U64), _has("receiver_key", 18)),
        ConditionalField(ShortField("data_len", None), _has("data_len", 20)),
        ConditionalField(XShortField("checksum", None), _has("checksum", 22)),
    ]


class MPTCP_JOIN_SYN(_MptcpValue):
    name = "MP_JOIN (SYN)"
    fields_desc = [
        _subtype(Subtype.MP_JOIN),
        BitField("reserved", 0, 3),
        BitField("backup", 0, 1),
        ByteField("address_id", 0),
        XIntField("token", 0),
        XIntField("nonce", 0),
    ]


class MPTCP_JOIN_SYNACK(_MptcpValue):
    name = "MP_JOIN (SYN/ACK)"
    fields_desc = [
        _subtype(Subtype.MP_JOIN),
        BitField("reserved", 0, 3),
        BitField("backup", 0, 1),
        ByteField("address_id", 0),
        XStrFixedLenField("hmac", b"\x00" * 8, 8),
        XIntField("nonce", 0),
    ]


class MPTCP_JOIN_ACK(_MptcpValue):
    name = "MP_JOIN (ACK)"
    fields_desc = [
        _subtype(Subtype.MP_JOIN),
        BitField("reserved", 0, 12),
        XStrFixedLenField("hmac", b"\x00" * 20, 20),
    ]


def _dss_flag(pkt: Any, letter: str) -> bool:
    return letter in str(pkt.flags)


def _dss_base_len(pkt: Any) -> int:
    """Value length of a DSS up to (not including) the checksum."""
    n = 2
    if _dss_flag(pkt, "A"):
        n += 8 if _dss_flag(pkt, "a") else 4
    if _dss_flag(pkt, "M"):
        n += (8 if _dss_flag(pkt, "m") else 4) + 6
    return n


class MPTCP_DSS(_MptcpValue):
    name = "DSS"
    fields_desc = [
        _subtype(Subtype.DSS),
        BitField("reserved", 0, 7),
        # bit 0 = A (DATA_ACK present), a (8-byte DATA_ACK), M (mapping), m (8-byte DSN), F
        FlagsField("flags", 0, 5, "AaMmF"),
        ConditionalField(
            MultipleTypeField([(LongField("data_ack", 0), lambda p: _dss_flag(p, "a"))],
                              IntField("data_ack", 0)),
            lambda p: _dss_flag(p, "A")),
        ConditionalField(
            MultipleTypeField([(LongField("dsn", 0), lambda p: _dss_flag(p, "m"))],
                              IntField("dsn", 0)),
            lambda p: _dss_flag(p, "M")),
        ConditionalField(IntField("ssn", 0), lambda p: _dss_flag(p, "M")),
        ConditionalField(ShortField("data_len", 0), lambda p: _dss_flag(p, "M")),
        ConditionalField(
            XShortField("checksum", None),
            lambda p: _dss_flag(p, "M") and p._has("checksum", _dss_base_len(p) + 2)),
    ]


def _v6(pkt: Any) -> bool:
    vlen = getattr(pkt, "_vlen", None)
    if vlen is not None:
        return bool(vlen >= 18)
    return ":" in str(pkt.fields.get("address", ""))


def _add_addr_port(pkt: Any) -> bool:
    vlen = getattr(pkt, "_vlen", None)
    if vlen is not None:
        return vlen in (8, 16, 20, 28)
    return pkt.getfieldval("port") is not None


class MPTCP_ADD_ADDR(_MptcpValue):
    name = "ADD_ADDR"
    fields_desc = [
        _subtype(Subtype.ADD_ADDR),
        BitField("reserved", 0, 3),
        BitField("echo", 0, 1),
        ByteField("address_id", 0),
        MultipleTypeField([(IP6Field("address", "::"),
                            (_v6, lambda pkt, val: ":" in str(val)))],
                          IPField("address", "0.0.0.0")),
        ConditionalField(ShortField("port", None), _add_addr_port),
        ConditionalField(XStrFixedLenField("hmac", b"\x00" * 8, 8), lambda p: not p.echo),
    ]


class MPTCP_REMOVE_ADDR(_MptcpValue):
    name = "REMOVE_ADDR"
    fields_desc = [
        _subtype(Subtype.REMOVE_ADDR),
        BitField("reserved", 0, 4),
        FieldListField("address_ids", [], ByteField("id", 0)),
    ]


class MPTCP_PRIO(_MptcpValue):
    name = "MP_PRIO"
    fields_desc = [
        _subtype(Subtype.MP_PRIO),
        BitField("reserved", 0, 3),
        BitField("backup", 0, 1),
    ]


class MPTCP_FAIL(_MptcpValue):
    name = "MP_FAIL"
    fields_desc = [
        _subtype(Subtype.MP_FAIL),
        BitField("reserved", 0, 12),
        LongField("dsn", 0),
    ]


class MPTCP_FASTCLOSE(_MptcpValue):
    name = "MP_FASTCLOSE"
    fields_desc = [
        _subtype(Subtype.MP_FASTCLOSE),
        BitField("reserved", 0, 12),
        XLongField("receiver_key", 0),
    ]


class MPTCP_TCPRST(_MptcpValue):
    name = "MP_TCPRST"
    fields_desc = [
        _subtype(Subtype.MP_TCPRST),
        FlagsField("flags", 0, 4, "TWVU"),  # bit 0 = T (transient)
        ByteEnumField("reason", 0, _RST_REASONS),
    ]


class MPTCP_MPS_SUBFLOW(_MptcpValue):
    name = "MPTCPsec SUBFLOW"
    fields_desc = [
        _subtype(Subtype.MP_EXPERIMENTAL),
        BitField("ext_type", MpsExtType.SUBFLOW, 4),
        ByteEnumField("reason", 0, _POISON_REASONS),
        IntField("subflow_id", 0),
    ]


class MPTCP_MPS_WINDOW(_MptcpValue):
    name = "MPTCPsec WINDOW"
    fields_desc = [
        _subtype(Subtype.MP_EXPERIMENTAL),
        BitField("ext_type", MpsExtType.WINDOW, 4),
        ByteField("reserved", 0),
        LongField("edge", 0),
    ]


class MPTCP_Unknown(_MptcpValue):
    name = "MPTCP (unknown)"
    fields_desc = [
        _subtype(0),
        BitField("rest", 0, 4),
        StrField("data", b""),
    ]


#: Every layer class, for tests and tools.
LAYERS: tuple[type[_MptcpValue], ...] = (
    MPTCP_CAPABLE, MPTCP_JOIN_SYN, MPTCP_JOIN_SYNACK, MPTCP_JOIN_ACK, MPTCP_DSS, MPTCP_ADD_ADDR,
    MPTCP_REMOVE_ADDR, MPTCP_PRIO, MPTCP_FAIL, MPTCP_FASTCLOSE, MPTCP_TCPRST, MPTCP_MPS_SUBFLOW,
    MPTCP_MPS_WINDOW, MPTCP_Unknown,
)

_BY_SUBTYPE: dict[int, type[_MptcpValue]] = {
    Subtype.MP_CAPABLE: MPTCP_CAPABLE,
    Subtype.DSS: MPTCP_DSS,
    Subtype.ADD_ADDR: MPTCP_ADD_ADDR,
    Subtype.REMOVE_ADDR: MPTCP_REMOVE_ADDR,
    Subtype.MP_PRIO: MPTCP_PRIO,
    Subtype.MP_FAIL: MPTCP_FAIL,
    Subtype.MP_FASTCLOSE: MPTCP_FASTCLOSE,
    Subtype.MP_TCPRST: MPTCP_TCPRST,
}
_JOIN_BY_LEN = {10: MPTCP_JOIN_SYN, 14: MPTCP_JOIN_SYNACK, 22: MPTCP_JOIN_ACK}


def layer_for(value: bytes) -> type[_MptcpValue]:
    """The layer class that dissects an option value (bytes after kind and length)."""
    if not value:
        return MPTCP_Unknown
    subtype = value[0] >> 4
    if subtype == Subtype.MP_JOIN:
        return _JOIN_BY_LEN.get(len(value), MPTCP_Unknown)
    if subtype == Subtype.MP_EXPERIMENTAL:
        ext = value[0] & 0x0F
        if ext == MpsExtType.SUBFLOW and len(value) == 6:
            return MPTCP_MPS_SUBFLOW
        if ext == MpsExtType.WINDOW and len(value) == 10:
            return MPTCP_MPS_WINDOW
        return MPTCP_Unknown
    return _BY_SUBTYPE.get(subtype, MPTCP_Unknown)


def dissect(value: bytes) -> _MptcpValue:
    """Dissect one option value into its layer."""
    return layer_for(value)(value)


def to_scapy(option: MptcpOption) -> _MptcpValue:
    """The scapy layer of a codec option (its value bytes, dissected)."""
    return dissect(option.encode()[2:])


def from_scapy(layer: Packet) -> MptcpOption:
    """The codec option of a scapy layer (built, then decoded strictly)."""
    value = bytes(layer)
    option, _ = decode_option(bytes((KIND_MPTCP, 2 + len(value))) + value)
    return option


# ----------------------------------------------------------------------------- registration

_original: dict[str, Callable[..., Any]] = {}


def _dissect_or_raw(value: bytes) -> _MptcpValue | bytes:
    """A malformed option stays raw bytes, as scapy leaves any option it cannot parse."""
    try:
        layer = dissect(value)
    except Exception:  # scapy fields raise struct.error, IndexError, ValueError, ...
        return value
    return layer if bytes(layer) == value else value


def _m2i(self: Any, pkt: Any, x: bytes) -> list[tuple[Any, Any]]:
    opts = _original["m2i"](self, pkt, x)
    return [(name, _dissect_or_raw(value)) if name == OPTION_NAME and isinstance(value, bytes)
            else (name, value) for name, value in opts]


def _i2m(self: Any, pkt: Any, x: Any) -> bytes:
    if x:
        x = [(name, bytes(value)) if isinstance(value, Packet) else (name, value)
             for name, value in x]
    return bytes(_original["i2m"](self, pkt, x))


def register() -> None:
    """Make scapy's TCP dissect and build kind-30 options with these layers (idempotent)."""
    if _original:
        return
    inet.TCPOptions[0][KIND_MPTCP] = (OPTION_NAME, None)
    inet.TCPOptions[1][OPTION_NAME] = KIND_MPTCP
    field_cls = inet.TCPOptionsField
    _original["m2i"] = field_cls.m2i
    _original["i2m"] = field_cls.i2m
    # Patch the class itself (scapy has no hook for new option kinds).
    setattr(field_cls, "m2i", _m2i)  # noqa: B010
    setattr(field_cls, "i2m", _i2m)  # noqa: B010


def unregister() -> None:
    """Undo :func:`register` (scapy leaves kind 30 raw again)."""
    if not _original:
        return
    field_cls = inet.TCPOptionsField
    setattr(field_cls, "m2i", _original.pop("m2i"))  # noqa: B010
    setattr(field_cls, "i2m", _original.pop("i2m"))  # noqa: B010
    inet.TCPOptions[0].pop(KIND_MPTCP, None)
    inet.TCPOptions[1].pop(OPTION_NAME, None)


def registered() -> bool:
    return bool(_original)


def mptcp_options(tcp: Packet) -> list[_MptcpValue]:
    """The MPTCP option layers of a TCP layer, in order."""
    return [value for name, value in tcp.options
            if name == OPTION_NAME and isinstance(value, _MptcpValue)]


register()

__all__ = [
    "LAYERS",
    "MPTCP_ADD_ADDR",
    "MPTCP_CAPABLE",
    "MPTCP_DSS",
    "MPTCP_FAIL",
    "MPTCP_FASTCLOSE",
    "MPTCP_JOIN_ACK",
    "MPTCP_JOIN_SYN",
    "MPTCP_JOIN_SYNACK",
    "MPTCP_MPS_SUBFLOW",
    "MPTCP_MPS_WINDOW",
    "MPTCP_PRIO",
    "MPTCP_REMOVE_ADDR",
    "MPTCP_TCPRST",
    "OPTION_NAME",
    "MPTCP_Unknown",
    "dissect",
    "from_scapy",
    "layer_for",
    "mptcp_options",
    "register",
    "registered",
    "to_scapy",
    "unregister",
]

"""RFC 8684 MPTCP options (TCP option kind 30): one frozen dataclass per option form.

Every option is encoded exactly as in RFC 8684 section 3 (kind, length, subtype nibble,
flags, fields, all big-endian), so the bytes inside an MPTCPsec record are the bytes a
TCP header would carry and Wireshark decodes them unchanged. Decoding is strict: a
length no form of the option has, a flag that has no meaning in the form, or input that
ends early raises a typed :class:`~mptcpsec.errors.OptionError`; reserved bits are kept
so that decode/encode is lossless (the record layer rejects non-zero reserved bits).

No I/O here; ``decode_options`` / ``encode_options`` handle a record's option area.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass, fields
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from itertools import pairwise
from typing import ClassVar, TypeVar, cast

from ..errors import (
    OptionError,
    OptionFlagsError,
    OptionLengthError,
    OptionsTooLongError,
    OptionTruncatedError,
    OptionValueError,
    UnknownOptionError,
)

KIND_MPTCP = 30
#: A record's option area holds at most this many bytes (the header's opt_len is a u8).
MAX_OPTIONS_LEN = 255
#: The largest length byte an option can carry.
MAX_OPTION_LEN = 255

_U16 = 0xFFFF
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


class Subtype(IntEnum):
    """MPTCP option subtypes (RFC 8684 section 8, IANA registry)."""

    MP_CAPABLE = 0x0
    MP_JOIN = 0x1
    DSS = 0x2
    ADD_ADDR = 0x3
    REMOVE_ADDR = 0x4
    MP_PRIO = 0x5
    MP_FAIL = 0x6
    MP_FASTCLOSE = 0x7
    MP_TCPRST = 0x8
    MP_EXPERIMENTAL = 0xF


class TcpRstReason(IntEnum):
    """MP_TCPRST reason codes (RFC 8684 section 3.6)."""

    UNSPECIFIED = 0x00
    MPTCP_ERROR = 0x01
    LACK_OF_RESOURCES = 0x02
    ADMINISTRATIVELY_PROHIBITED = 0x03
    TOO_MUCH_OUTSTANDING_DATA = 0x04
    UNACCEPTABLE_PERFORMANCE = 0x05
    MIDDLEBOX_INTERFERENCE = 0x06


class MpsExtType(IntEnum):
    """MPTCPsec options carried in the MP_EXPERIMENTAL subtype (low nibble of byte 2)."""

    SUBFLOW = 0x0
    WINDOW = 0x1


class PoisonReason(IntEnum):
    """Why a subflow was poisoned; carried in :class:`MpsSubflow` next to an MP_TCPRST."""

    NONE = 0
    AUTHENTICATION = 1  #: a record tag did not verify
    MALFORMED_RECORD = 2  #: bad version, unknown type or flags, option rules broken
    RECORD_TOO_LARGE = 3  #: a length over the receiver's maximum
    UNEXPECTED_RECORD = 4  #: a record type not allowed in the subflow's state
    TRANSPORT_CLOSED = 5  #: FIN or RST without an authenticated CLOSE
    JOIN_FAILED = 6  #: a JOIN record failed its checks (token, HMAC, replay)
    KEY_EXHAUSTED = 7  #: the record counter reached its limit without a key update


def _check_uint(name: str, value: int, bits: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise OptionValueError(f"{name} must be an integer in 0..{(1 << bits) - 1}, got {value!r}")


def _check_bytes(name: str, value: bytes, length: int) -> None:
    if not isinstance(value, (bytes, bytearray)) or len(value) != length:
        raise OptionValueError(f"{name} must be {length} bytes")


def _check_len(cls: type, length: int, allowed: Iterable[int]) -> None:
    allowed = tuple(allowed)
    if length not in allowed:
        raise OptionLengthError(
            f"{cls.__name__}: length {length} is not one of {', '.join(map(str, allowed))}"
        )


@dataclass(frozen=True, slots=True)
class MptcpOption:
    """Base of every option: ``encode()`` gives kind || length || value."""

    subtype: ClassVar[int]

    def _value(self) -> bytes:  # bytes after kind and length, from the subtype byte on
        raise NotImplementedError

    def encode(self) -> bytes:
        value = self._value()
        return bytes((KIND_MPTCP, 2 + len(value))) + value

    @property
    def length(self) -> int:
        """The option's length byte (kind and length bytes included)."""
        return 2 + len(self._value())

    @classmethod
    def _from_value(cls, value: bytes) -> MptcpOption:
        raise NotImplementedError

    @classmethod
    def decode(cls: type[_O], data: bytes | bytearray | memoryview) -> _O:
        """Decode exactly one option of this class from ``data``."""
        option, end = decode_option(data, 0)
        if end != len(data):
            raise OptionLengthError(f"{len(data) - end} bytes after the option")
        if not isinstance(option, cls):
            raise UnknownOptionError(f"expected {cls.__name__}, got {type(option).__name__}")
        return option


_O = TypeVar("_O", bound=MptcpOption)


# --------------------------------------------------------------------------- MP_CAPABLE

_CAP_A, _CAP_B, _CAP_C, _CAP_H = 0x80, 0x40, 0x20, 0x01
_CAP_RESERVED_SHIFT = 1  # D..G are bits 0x10..0x02


@dataclass(frozen=True, slots=True)
class MpCapable(MptcpOption):
    """MP_CAPABLE, all RFC 8684 v1 forms; the form follows from which fields are set.

    SYN (length 4): no key. SYN/ACK (12): ``sender_key``. ACK (20): both keys. ACK with
    data (22, or 24 with ``checksum``): both keys and ``data_len``.
    """

    subtype: ClassVar[int] = Subtype.MP_CAPABLE
    version: int = 1
    checksum_required: bool = False  # A
    extensibility: bool = False  # B
    no_new_subflows: bool = False  # C: do not open subflows to the sender's address
    hmac_sha256: bool = True  # H: must be set in version 1
    reserved: int = 0  # D..G
    sender_key: int | None = None
    receiver_key: int | None = None
    data_len: int | None = None
    checksum: int | None = None

    def __post_init__(self) -> None:
        _check_uint("version", self.version, 4)
        _check_uint("reserved", self.reserved, 4)
        chain = (self.sender_key, self.receiver_key, self.data_len, self.checksum)
        for earlier, later in pairwise(chain):
            if earlier is None and later is not None:
                raise OptionValueError(
                    "MP_CAPABLE fields go in order: sender key, receiver key, data length, "
                    "checksum; a later one needs the earlier ones"
                )
        for name, bits in (("sender_key", 64), ("receiver_key", 64), ("data_len", 16),
                           ("checksum", 16)):
            if getattr(self, name) is not None:
                _check_uint(name, getattr(self, name), bits)

    @property
    def form(self) -> str:
        """``syn``, ``synack``, ``ack`` or ``ack+data``."""
        if self.sender_key is None:
            return "syn"
        if self.receiver_key is None:
            return "synack"
        return "ack" if self.data_len is None else "ack+data"

    @property
    def flags(self) -> int:
        return ((_CAP_A if self.checksum_required else 0) | (_CAP_B if self.extensibility else 0)
                | (_CAP_C if self.no_new_subflows else 0) | (_CAP_H if self.hmac_sha256 else 0)
                | (self.reserved << _CAP_RESERVED_SHIFT))

    def _value(self) -> bytes:
        out = bytes(((self.subtype << 4) | self.version, self.flags))
        if self.sender_key is not None:
            out += self.sender_key.to_bytes(8, "big")
        if self.receiver_key is not None:
            out += self.receiver_key.to_bytes(8, "big")
        if self.data_len is not None:
            out += self.data_len.to_bytes(2, "big")
        if self.checksum is not None:
            out += self.checksum.to_bytes(2, "big")
        return out

    @classmethod
    def _from_value(cls, value: bytes) -> MpCapable:
        _check_len(cls, len(value) + 2, (4, 12, 20, 22, 24))
        flags = value[1]
        n = len(value)
        return cls(
            version=value[0] & 0x0F,
            checksum_required=bool(flags & _CAP_A),
            extensibility=bool(flags & _CAP_B),
            no_new_subflows=bool(flags & _CAP_C),
            hmac_sha256=bool(flags & _CAP_H),
            reserved=(flags >> _CAP_RESERVED_SHIFT) & 0x0F,
            sender_key=int.from_bytes(value[2:10], "big") if n >= 10 else None,
            receiver_key=int.from_bytes(value[10:18], "big") if n >= 18 else None,
            data_len=int.from_bytes(value[18:20], "big") if n >= 20 else None,
            checksum=int.from_bytes(value[20:22], "big") if n >= 22 else None,
        )


# --------------------------------------------------------------------------- MP_JOIN

JOIN_SYNACK_HMAC_LEN = 8  # truncated HMAC-SHA256 (64 bits)
JOIN_ACK_HMAC_LEN = 20  # truncated HMAC-SHA256 (160 bits)


@dataclass(frozen=True, slots=True)
class MpJoinSyn(MptcpOption):
    """MP_JOIN in the first message of a join (RFC 8684 figure 5, length 12)."""

    subtype: ClassVar[int] = Subtype.MP_JOIN
    address_id: int
    token: int  # receiver's token (32 bits)
    nonce: int  # sender's random number (32 bits)
    backup: bool = False
    reserved: int = 0  # 3 bits

    def __post_init__(self) -> None:
        _check_uint("address_id", self.address_id, 8)
        _check_uint("token", self.token, 32)
        _check_uint("nonce", self.nonce, 32)
        _check_uint("reserved", self.reserved, 3)

    def _value(self) -> bytes:
        b2 = (self.subtype << 4) | (self.reserved << 1) | int(self.backup)
        return struct.pack("!BBII", b2, self.address_id, self.token, self.nonce)

    @classmethod
    def _from_value(cls, value: bytes) -> MpJoinSyn:
        b2, address_id, token, nonce = struct.unpack("!BBII", value)
        return cls(address_id=address_id, token=token, nonce=nonce, backup=bool(b2 & 1),
                   reserved=(b2 >> 1) & 0x7)


@dataclass(frozen=True, slots=True)
class MpJoinSynAck(MptcpOption):
    """MP_JOIN in the reply to a join (RFC 8684 figure 6, length 16)."""

    subtype: ClassVar[int] = Subtype.MP_JOIN
    address_id: int
    hmac: bytes  # sender's truncated HMAC (64 bits)
    nonce: int  # sender's random number (32 bits)
    backup: bool = False
    reserved: int = 0

    def __post_init__(self) -> None:
        _check_uint("address_id", self.address_id, 8)
        _check_bytes("hmac", self.hmac, JOIN_SYNACK_HMAC_LEN)
        object.__setattr__(self, "hmac", bytes(self.hmac))
        _check_uint("nonce", self.nonce, 32)
        _check_uint("reserved", self.reserved, 3)

    def _value(self) -> bytes:
        b2 = (self.subtype << 4) | (self.reserved << 1) | int(self.backup)
        return bytes((b2, self.address_id)) + self.hmac + self.nonce.to_bytes(4, "big")

    @classmethod
    def _from_value(cls, value: bytes) -> MpJoinSynAck:
        b2 = value[0]
        return cls(address_id=value[1], hmac=bytes(value[2:10]),
                   nonce=int.from_bytes(value[10:14], "big"), backup=bool(b2 & 1),
                   reserved=(b2 >> 1) & 0x7)


@dataclass(frozen=True, slots=True)
class MpJoinAck(MptcpOption):
    """MP_JOIN in the third message of a join (RFC 8684 figure 7, length 24)."""

    subtype: ClassVar[int] = Subtype.MP_JOIN
    hmac: bytes  # sender's HMAC (160 bits)
    reserved: int = 0  # 12 bits

    def __post_init__(self) -> None:
        _check_bytes("hmac", self.hmac, JOIN_ACK_HMAC_LEN)
        object.__setattr__(self, "hmac", bytes(self.hmac))
        _check_uint("reserved", self.reserved, 12)

    def _value(self) -> bytes:
        return ((self.subtype << 12) | self.reserved).to_bytes(2, "big") + self.hmac

    @classmethod
    def _from_value(cls, value: bytes) -> MpJoinAck:
        return cls(hmac=bytes(value[2:22]), reserved=int.from_bytes(value[0:2], "big") & 0xFFF)


def _decode_join(value: bytes) -> MptcpOption:
    length = len(value) + 2
    if length == 12:
        return MpJoinSyn._from_value(value)
    if length == 16:
        return MpJoinSynAck._from_value(value)
    if length == 24:
        return MpJoinAck._from_value(value)
    raise OptionLengthError(f"MP_JOIN: length {length} is not one of 12, 16, 24")


# --------------------------------------------------------------------------- DSS

DSS_FLAG_A = 0x01  # DATA_ACK present
DSS_FLAG_a = 0x02  # DATA_ACK is 8 octets
DSS_FLAG_M = 0x04  # mapping (DSN, SSN, data-level length, checksum) present
DSS_FLAG_m = 0x08  # DSN is 8 octets
DSS_FLAG_F = 0x10  # DATA_FIN


@dataclass(frozen=True, slots=True)
class Dss(MptcpOption):
    """Data Sequence Signal (RFC 8684 figure 9): DATA_ACK and/or a DSN mapping.

    ``data_ack=None`` omits the DATA_ACK, ``dsn=None`` omits the mapping (then ``ssn``,
    ``data_len`` and ``checksum`` must keep their defaults and ``data_fin`` is refused,
    since a DATA_FIN occupies a DSN). ``*_wide`` selects 8-byte fields; it is cleared
    when its field is absent, so equal options have equal encodings.
    """

    subtype: ClassVar[int] = Subtype.DSS
    data_ack: int | None = None
    dsn: int | None = None
    ssn: int = 0
    data_len: int = 0
    checksum: int | None = None
    data_fin: bool = False
    data_ack_wide: bool = True
    dsn_wide: bool = True
    reserved: int = 0  # 7 bits: low nibble of byte 2, top 3 bits of byte 3

    def __post_init__(self) -> None:
        if self.data_ack is None:
            object.__setattr__(self, "data_ack_wide", False)
        else:
            _check_uint("data_ack", self.data_ack, 64 if self.data_ack_wide else 32)
        if self.dsn is None:
            object.__setattr__(self, "dsn_wide", False)
            if self.data_fin:
                raise OptionFlagsError("DSS: DATA_FIN needs a mapping (it occupies a DSN)")
            if self.ssn or self.data_len or self.checksum is not None:
                raise OptionValueError("DSS: ssn, data_len and checksum need a mapping (dsn)")
        else:
            _check_uint("dsn", self.dsn, 64 if self.dsn_wide else 32)
            _check_uint("ssn", self.ssn, 32)
            _check_uint("data_len", self.data_len, 16)
            if self.checksum is not None:
                _check_uint("checksum", self.checksum, 16)
        _check_uint("reserved", self.reserved, 7)

    @property
    def flags(self) -> int:
        f = 0
        if self.data_ack is not None:
            f |= DSS_FLAG_A | (DSS_FLAG_a if self.data_ack_wide else 0)
        if self.dsn is not None:
            f |= DSS_FLAG_M | (DSS_FLAG_m if self.dsn_wide else 0)
        if self.data_fin:
            f |= DSS_FLAG_F
        return f

    @property
    def has_mapping(self) -> bool:
        return self.dsn is not None

    def _value(self) -> bytes:
        b2 = (self.subtype << 4) | (self.reserved >> 3)
        b3 = ((self.reserved & 0x7) << 5) | self.flags
        out = bytearray((b2, b3))
        if self.data_ack is not None:
            out += self.data_ack.to_bytes(8 if self.data_ack_wide else 4, "big")
        if self.dsn is not None:
            out += self.dsn.to_bytes(8 if self.dsn_wide else 4, "big")
            out += struct.pack("!IH", self.ssn, self.data_len)
            if self.checksum is not None:
                out += self.checksum.to_bytes(2, "big")
        return bytes(out)

    @staticmethod
    def expected_lengths(flags: int) -> tuple[int, ...]:
        """The option lengths a DSS with these flags may have (without/with checksum)."""
        base = 4
        if flags & DSS_FLAG_A:
            base += 8 if flags & DSS_FLAG_a else 4
        if flags & DSS_FLAG_M:
            base += (8 if flags & DSS_FLAG_m else 4) + 4 + 2
            return (base, base + 2)
        return (base,)

    @classmethod
    def _from_value(cls, value: bytes) -> Dss:
        if len(value) < 2:
            raise OptionLengthError("DSS: length 3 has no flags byte (minimum 4)")
        flags = value[1] & 0x1F
        reserved = ((value[0] & 0x0F) << 3) | (value[1] >> 5)
        if flags & DSS_FLAG_a and not flags & DSS_FLAG_A:
            raise OptionFlagsError("DSS: flag a (8-byte DATA_ACK) without A (DATA_ACK)")
        if flags & DSS_FLAG_m and not flags & DSS_FLAG_M:
            raise OptionFlagsError("DSS: flag m (8-byte DSN) without M (mapping)")
        if flags & DSS_FLAG_F and not flags & DSS_FLAG_M:
            raise OptionFlagsError("DSS: flag F (DATA_FIN) without M (mapping)")
        _check_len(cls, len(value) + 2, cls.expected_lengths(flags))
        pos = 2
        data_ack = None
        if flags & DSS_FLAG_A:
            n = 8 if flags & DSS_FLAG_a else 4
            data_ack = int.from_bytes(value[pos:pos + n], "big")
            pos += n
        if not flags & DSS_FLAG_M:
            return cls(data_ack=data_ack, data_ack_wide=bool(flags & DSS_FLAG_a),
                       reserved=reserved)
        n = 8 if flags & DSS_FLAG_m else 4
        dsn = int.from_bytes(value[pos:pos + n], "big")
        pos += n
        ssn, data_len = struct.unpack_from("!IH", value, pos)
        pos += 6
        checksum = int.from_bytes(value[pos:pos + 2], "big") if len(value) > pos else None
        return cls(data_ack=data_ack, dsn=dsn, ssn=ssn, data_len=data_len, checksum=checksum,
                   data_fin=bool(flags & DSS_FLAG_F), data_ack_wide=bool(flags & DSS_FLAG_a),
                   dsn_wide=bool(flags & DSS_FLAG_m), reserved=reserved)


# --------------------------------------------------------------------------- ADD_ADDR

ADD_ADDR_HMAC_LEN = 8


@dataclass(frozen=True, slots=True)
class AddAddr(MptcpOption):
    """ADD_ADDR (RFC 8684 figure 12): IPv4 or IPv6, optional port, HMAC unless echo.

    The address family follows from the option length. A non-echo ADD_ADDR carries the
    8-byte truncated HMAC; the echo (E=1) form never does.
    """

    subtype: ClassVar[int] = Subtype.ADD_ADDR
    address_id: int
    address: IPv4Address | IPv6Address
    port: int | None = None
    hmac: bytes | None = None
    echo: bool = False
    reserved: int = 0  # 3 bits

    def __post_init__(self) -> None:
        _check_uint("address_id", self.address_id, 8)
        given: object = self.address  # callers may pass text; stored as an address object
        if not isinstance(given, (IPv4Address, IPv6Address)):
            try:
                object.__setattr__(self, "address", ip_address(cast("str | int", given)))
            except ValueError as exc:
                raise OptionValueError(f"ADD_ADDR: bad address {given!r}") from exc
        if self.port is not None:
            _check_uint("port", self.port, 16)
        if self.echo:
            if self.hmac is not None:
                raise OptionFlagsError("ADD_ADDR: the echo form (E=1) carries no HMAC")
        else:
            if self.hmac is None:
                raise OptionFlagsError("ADD_ADDR: a non-echo ADD_ADDR (E=0) needs an HMAC")
            _check_bytes("hmac", self.hmac, ADD_ADDR_HMAC_LEN)
            object.__setattr__(self, "hmac", bytes(self.hmac))
        _check_uint("reserved", self.reserved, 3)

    def _value(self) -> bytes:
        b2 = (self.subtype << 4) | (self.reserved << 1) | int(self.echo)
        out = bytes((b2, self.address_id)) + self.address.packed
        if self.port is not None:
            out += self.port.to_bytes(2, "big")
        if self.hmac is not None:
            out += self.hmac
        return out

    @classmethod
    def _from_value(cls, value: bytes) -> AddAddr:
        length = len(value) + 2
        # length -> (address bytes, port present, HMAC present)
        forms = {8: (4, False, False), 10: (4, True, False), 16: (4, False, True),
                 18: (4, True, True), 20: (16, False, False), 22: (16, True, False),
                 28: (16, False, True), 30: (16, True, True)}
        if length not in forms:
            raise OptionLengthError(f"ADD_ADDR: length {length} is not one of "
                                    f"{', '.join(map(str, forms))}")
        alen, has_port, has_hmac = forms[length]
        echo = bool(value[0] & 1)
        if echo and has_hmac:
            raise OptionFlagsError(f"ADD_ADDR: echo flag set but length {length} has an HMAC")
        if not echo and not has_hmac:
            raise OptionFlagsError(f"ADD_ADDR: echo flag clear but length {length} has no HMAC")
        addr_bytes = bytes(value[2:2 + alen])
        address: IPv4Address | IPv6Address = (IPv4Address(addr_bytes) if alen == 4
                                              else IPv6Address(addr_bytes))
        pos = 2 + alen
        port = None
        if has_port:
            port = int.from_bytes(value[pos:pos + 2], "big")
            pos += 2
        hmac = bytes(value[pos:pos + ADD_ADDR_HMAC_LEN]) if has_hmac else None
        return cls(address_id=value[1], address=address, port=port, hmac=hmac, echo=echo,
                   reserved=(value[0] >> 1) & 0x7)


# --------------------------------------------------------------------------- REMOVE_ADDR

@dataclass(frozen=True, slots=True)
class RemoveAddr(MptcpOption):
    """REMOVE_ADDR (RFC 8684 figure 13): one or more address IDs, length 3 + n."""

    subtype: ClassVar[int] = Subtype.REMOVE_ADDR
    address_ids: tuple[int, ...]
    reserved: int = 0  # 4 bits

    def __post_init__(self) -> None:
        ids = tuple(self.address_ids)
        object.__setattr__(self, "address_ids", ids)
        if not 1 <= len(ids) <= MAX_OPTION_LEN - 3:
            raise OptionValueError(f"REMOVE_ADDR: 1..{MAX_OPTION_LEN - 3} address IDs")
        for i in ids:
            _check_uint("address id", i, 8)
        _check_uint("reserved", self.reserved, 4)

    def _value(self) -> bytes:
        return bytes(((self.subtype << 4) | self.reserved, *self.address_ids))

    @classmethod
    def _from_value(cls, value: bytes) -> RemoveAddr:
        if len(value) < 2:
            raise OptionLengthError("REMOVE_ADDR: length 3 carries no address ID (minimum 4)")
        return cls(address_ids=tuple(value[1:]), reserved=value[0] & 0x0F)


# --------------------------------------------------------------------------- MP_PRIO

@dataclass(frozen=True, slots=True)
class MpPrio(MptcpOption):
    """MP_PRIO (RFC 8684 figure 11, length 3): the sender's subflow becomes (non-)backup."""

    subtype: ClassVar[int] = Subtype.MP_PRIO
    backup: bool = False
    reserved: int = 0  # 3 bits

    def __post_init__(self) -> None:
        _check_uint("reserved", self.reserved, 3)

    def _value(self) -> bytes:
        return bytes(((self.subtype << 4) | (self.reserved << 1) | int(self.backup),))

    @classmethod
    def _from_value(cls, value: bytes) -> MpPrio:
        _check_len(cls, len(value) + 2, (3,))
        return cls(backup=bool(value[0] & 1), reserved=(value[0] >> 1) & 0x7)


# ------------------------------------------------------------ MP_FAIL / MP_FASTCLOSE

@dataclass(frozen=True, slots=True)
class MpFail(MptcpOption):
    """MP_FAIL (RFC 8684 figure 16, length 12): a 64-bit DSN."""

    subtype: ClassVar[int] = Subtype.MP_FAIL
    dsn: int
    reserved: int = 0  # 12 bits

    def __post_init__(self) -> None:
        _check_uint("dsn", self.dsn, 64)
        _check_uint("reserved", self.reserved, 12)

    def _value(self) -> bytes:
        return struct.pack("!HQ", (self.subtype << 12) | self.reserved, self.dsn)

    @classmethod
    def _from_value(cls, value: bytes) -> MpFail:
        _check_len(cls, len(value) + 2, (12,))
        head, dsn = struct.unpack("!HQ", value)
        return cls(dsn=dsn, reserved=head & 0xFFF)


@dataclass(frozen=True, slots=True)
class MpFastclose(MptcpOption):
    """MP_FASTCLOSE (RFC 8684 figure 14, length 12): the option receiver's key."""

    subtype: ClassVar[int] = Subtype.MP_FASTCLOSE
    receiver_key: int
    reserved: int = 0  # 12 bits

    def __post_init__(self) -> None:
        _check_uint("receiver_key", self.receiver_key, 64)
        _check_uint("reserved", self.reserved, 12)

    def _value(self) -> bytes:
        return struct.pack("!HQ", (self.subtype << 12) | self.reserved, self.receiver_key)

    @classmethod
    def _from_value(cls, value: bytes) -> MpFastclose:
        _check_len(cls, len(value) + 2, (12,))
        head, key = struct.unpack("!HQ", value)
        return cls(receiver_key=key, reserved=head & 0xFFF)


# --------------------------------------------------------------------------- MP_TCPRST

@dataclass(frozen=True, slots=True)
class MpTcpRst(MptcpOption):
    """MP_TCPRST (RFC 8684 figure 15, length 4): reason for resetting a subflow.

    ``transient`` is the T flag (the condition may pass; the peer may re-join later);
    ``reserved`` holds the unassigned U, V, W flags.
    """

    subtype: ClassVar[int] = Subtype.MP_TCPRST
    reason: int = TcpRstReason.UNSPECIFIED
    transient: bool = False
    reserved: int = 0  # 3 bits: U, V, W

    def __post_init__(self) -> None:
        _check_uint("reason", self.reason, 8)
        _check_uint("reserved", self.reserved, 3)

    def _value(self) -> bytes:
        return bytes(((self.subtype << 4) | (self.reserved << 1) | int(self.transient),
                      self.reason))

    @classmethod
    def _from_value(cls, value: bytes) -> MpTcpRst:
        _check_len(cls, len(value) + 2, (4,))
        return cls(reason=value[1], transient=bool(value[0] & 1),
                   reserved=(value[0] >> 1) & 0x7)


# ------------------------------------------------------------ MPTCPsec (MP_EXPERIMENTAL)

@dataclass(frozen=True, slots=True)
class MpsSubflow(MptcpOption):
    """MPTCPsec SUBFLOW option in the MP_EXPERIMENTAL subtype (length 8).

    Names a subflow of the connection by its 32-bit subflow ID (papers/SPEC.md): in a
    JOIN record the ID of the subflow being opened, next to an MP_TCPRST the subflow
    being reported, with ``reason`` (a :class:`PoisonReason`) saying why.
    """

    subtype: ClassVar[int] = Subtype.MP_EXPERIMENTAL
    subflow_id: int
    reason: int = PoisonReason.NONE

    def __post_init__(self) -> None:
        _check_uint("subflow_id", self.subflow_id, 32)
        _check_uint("reason", self.reason, 8)

    def _value(self) -> bytes:
        return struct.pack("!BBI", (self.subtype << 4) | MpsExtType.SUBFLOW, self.reason,
                           self.subflow_id)

    @classmethod
    def _from_value(cls, value: bytes) -> MpsSubflow:
        _check_len(cls, len(value) + 2, (8,))
        _, reason, subflow_id = struct.unpack("!BBI", value)
        return cls(subflow_id=subflow_id, reason=reason)


@dataclass(frozen=True, slots=True)
class MpsWindow(MptcpOption):
    """MPTCPsec WINDOW option in the MP_EXPERIMENTAL subtype (length 12).

    The connection-level receive window as its right edge: the sender of the option
    accepts data up to (not including) data sequence number ``edge``. TCP's own window
    is per subflow; this one bounds what the receiver buffers for the application.
    """

    subtype: ClassVar[int] = Subtype.MP_EXPERIMENTAL
    edge: int
    reserved: int = 0  # 8 bits

    def __post_init__(self) -> None:
        _check_uint("edge", self.edge, 64)
        _check_uint("reserved", self.reserved, 8)

    def _value(self) -> bytes:
        return struct.pack("!BBQ", (self.subtype << 4) | MpsExtType.WINDOW, self.reserved,
                           self.edge)

    @classmethod
    def _from_value(cls, value: bytes) -> MpsWindow:
        _check_len(cls, len(value) + 2, (12,))
        _, reserved, edge = struct.unpack("!BBQ", value)
        return cls(edge=edge, reserved=reserved)


def _decode_experimental(value: bytes) -> MptcpOption:
    ext = value[0] & 0x0F
    if ext == MpsExtType.SUBFLOW:
        return MpsSubflow._from_value(value)
    if ext == MpsExtType.WINDOW:
        return MpsWindow._from_value(value)
    raise UnknownOptionError(f"MP_EXPERIMENTAL: unknown MPTCPsec option type {ext}")


#: Keyed by the 4-bit subtype as read from the wire (Subtype is an IntEnum).
_DECODERS: dict[int, Callable[[bytes], MptcpOption]] = {
    Subtype.MP_CAPABLE: MpCapable._from_value,
    Subtype.MP_JOIN: _decode_join,
    Subtype.DSS: Dss._from_value,
    Subtype.ADD_ADDR: AddAddr._from_value,
    Subtype.REMOVE_ADDR: RemoveAddr._from_value,
    Subtype.MP_PRIO: MpPrio._from_value,
    Subtype.MP_FAIL: MpFail._from_value,
    Subtype.MP_FASTCLOSE: MpFastclose._from_value,
    Subtype.MP_TCPRST: MpTcpRst._from_value,
    Subtype.MP_EXPERIMENTAL: _decode_experimental,
}

#: Every option class, for tools and tests that enumerate them.
OPTION_CLASSES: tuple[type[MptcpOption], ...] = (
    MpCapable, MpJoinSyn, MpJoinSynAck, MpJoinAck, Dss, AddAddr, RemoveAddr, MpPrio, MpFail,
    MpFastclose, MpTcpRst, MpsSubflow, MpsWindow,
)


def decode_option(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[MptcpOption, int]:
    """Decode the option at ``data[offset:]``; return it and the offset just after it."""
    remaining = len(data) - offset
    if remaining >= 1 and data[offset] != KIND_MPTCP:
        raise UnknownOptionError(f"TCP option kind {data[offset]} is not MPTCP ({KIND_MPTCP})")
    if remaining < 2:
        raise OptionTruncatedError(f"option needs kind and length bytes, {remaining} left")
    length = data[offset + 1]
    if length < 3:
        raise OptionLengthError(f"MPTCP option length {length} is under the minimum of 3")
    if length > remaining:
        raise OptionTruncatedError(f"MPTCP option of length {length}, only {remaining} bytes")
    value = bytes(data[offset + 2:offset + length])
    subtype = value[0] >> 4
    decoder = _DECODERS.get(subtype)
    if decoder is None:
        raise UnknownOptionError(f"unknown MPTCP option subtype {subtype:#x}")
    return decoder(value), offset + length


def decode_options(data: bytes | bytearray | memoryview) -> list[MptcpOption]:
    """Decode a concatenation of MPTCP options (a record's option area), all of it."""
    out: list[MptcpOption] = []
    pos = 0
    while pos < len(data):
        option, pos = decode_option(data, pos)
        out.append(option)
    return out


def encode_options(options: Iterable[MptcpOption]) -> bytes:
    """Concatenate encoded options; refuse more than a record's 255-byte option area."""
    out = b"".join(o.encode() for o in options)
    if len(out) > MAX_OPTIONS_LEN:
        raise OptionsTooLongError(f"{len(out)} bytes of options, at most {MAX_OPTIONS_LEN}")
    return out


def option_offsets(options: Sequence[MptcpOption]) -> list[int]:
    """Byte offset of each option in ``encode_options(options)``."""
    offsets, pos = [], 0
    for o in options:
        offsets.append(pos)
        pos += o.length
    return offsets


def describe(option: MptcpOption) -> str:
    """A one-line human summary, e.g. for ``mptcpsec pcap --summary`` and logs."""
    parts = []
    for f in fields(option):
        value = getattr(option, f.name)
        if value is None or (f.default is not MISSING and value == f.default):
            continue
        if f.name.endswith("_wide") and getattr(option, f.name[:-5]) is None:
            continue
        if isinstance(value, bytes):
            value = value.hex()
        parts.append(f"{f.name}={value}")
    name = type(option).__name__
    return f"{name}({', '.join(parts)})"


__all__ = [
    "ADD_ADDR_HMAC_LEN",
    "DSS_FLAG_A",
    "DSS_FLAG_F",
    "DSS_FLAG_M",
    "JOIN_ACK_HMAC_LEN",
    "JOIN_SYNACK_HMAC_LEN",
    "KIND_MPTCP",
    "MAX_OPTIONS_LEN",
    "OPTION_CLASSES",
    "AddAddr",
    "DSS_FLAG_a",
    "DSS_FLAG_m",
    "Dss",
    "MpCapable",
    "MpFail",
    "MpFastclose",
    "MpJoinAck",
    "MpJoinSyn",
    "MpJoinSynAck",
    "MpPrio",
    "MpTcpRst",
    "MpsExtType",
    "MpsSubflow",
    "MptcpOption",
    "OptionError",
    "PoisonReason",
    "RemoveAddr",
    "Subtype",
    "TcpRstReason",
    "decode_option",
    "decode_options",
    "describe",
    "encode_options",
    "option_offsets",
]

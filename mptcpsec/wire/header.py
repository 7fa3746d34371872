"""The fixed record header shared by the C core and the Python record layer.

Layout (papers/SPEC.md, "Record header"): version (u8) | type (u8) | flags (u8) |
opt_len (u8) | body_len (u16, big-endian); then opt_len bytes of MPTCP options and
body_len bytes of body. For protected records the body is ciphertext || 16-byte tag
and the associated data is header || options.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from ..errors import RecordError, RecordTooLargeError, TruncatedError

VERSION = 1
HEADER_LEN = 6
TAG_LEN = 16
IV_LEN = 12
MAX_OPT_LEN = 255
MAX_BODY_LEN = 65535
MAX_PLAINTEXT = MAX_BODY_LEN - TAG_LEN
#: Default largest plaintext per record (like TLS); configurable up to MAX_PLAINTEXT.
DEFAULT_MAX_PLAINTEXT = 16384

_HEADER = struct.Struct("!BBBBH")


class RecordType(IntEnum):
    DATA = 1
    CONTROL = 2
    HANDSHAKE = 3
    KEY_UPDATE = 4
    CLOSE = 5
    JOIN = 6


def type_mask(types: Iterable[int]) -> int:
    """The allowed-types bit mask the C batch opener takes (bit t set for type t)."""
    mask = 0
    for t in types:
        mask |= 1 << int(t)
    return mask


#: Types the opener accepts on an established subflow.
PROTECTED_TYPES = (RecordType.DATA, RecordType.CONTROL, RecordType.KEY_UPDATE, RecordType.CLOSE,
                   RecordType.HANDSHAKE)


@dataclass(frozen=True, slots=True)
class RecordHeader:
    type: int
    flags: int
    opt_len: int
    body_len: int
    version: int = VERSION

    def pack(self) -> bytes:
        if not 0 <= self.opt_len <= MAX_OPT_LEN:
            raise RecordTooLargeError(f"option length {self.opt_len} not in 0..{MAX_OPT_LEN}")
        if not 0 <= self.body_len <= MAX_BODY_LEN:
            raise RecordTooLargeError(f"body length {self.body_len} not in 0..{MAX_BODY_LEN}")
        if not (0 <= self.type <= 255 and 0 <= self.flags <= 255 and 0 <= self.version <= 255):
            raise RecordError("type, flags and version are single bytes")
        return _HEADER.pack(self.version, self.type, self.flags, self.opt_len, self.body_len)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> RecordHeader:
        if len(data) < HEADER_LEN:
            raise TruncatedError(f"record header needs {HEADER_LEN} bytes, got {len(data)}")
        version, rtype, flags, opt_len, body_len = _HEADER.unpack_from(data)
        if version != VERSION:
            raise RecordError(f"unknown record version {version}")
        return cls(type=rtype, flags=flags, opt_len=opt_len, body_len=body_len, version=version)

    @property
    def record_len(self) -> int:
        return HEADER_LEN + self.opt_len + self.body_len

"""Record-aware attacks for the relay: what an on-path attacker can do to one subflow.

Each attack waits for its trigger (``after_bytes`` of record stream, or ``after_records``
records, in its direction on a flow), then strikes once at the first eligible record:

===============  ==========================================================================
bitflip-data     flip one bit in the body of a DATA record (ciphertext, or plaintext in
                 ``plain`` mode)
bitflip-option   change one field of one MPTCP option (``option``, ``field``: e.g. the DSS
                 data sequence number) and re-encode it in place
replay           send a copy of the previous DATA record again after the current one
drop             delete one DATA record
reorder          hold one DATA record back and deliver it after the next one
inject           insert a forged DATA record (the current one's header and options, the
                 attacker's bytes as body) in front of the current one
truncate         cut the end off a DATA record's body and fix up the length in its header
rst              reset the subflow (both ends), a transport attack rather than a forgery
===============  ==========================================================================

What each one does to a ``mptcpsec`` connection: the record tags fail (the implicit record
counter makes drop, replay, reorder and inject fail too), so the receiving end poisons the
subflow with reason ``authentication``; ``rst`` is a path failure, not tampering.

To add an attack: write ``def _my_attack(self, record, ctx) -> bytes`` on ``Attack``
(return the bytes to forward in place of ``record``), add it to ``_STRIKES`` and
``ATTACKS``, and say in ``EXPECTED_REASON`` how ``mptcpsec`` should react.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import AttackError as AttackError
from ..wire.header import HEADER_LEN, RecordHeader, RecordType
from ..wire.options import OPTION_CLASSES, MptcpOption, decode_options
from .relay import Direction, HookContext, RecordHook

ATTACKS = ("bitflip-data", "bitflip-option", "replay", "drop", "reorder", "inject",
           "truncate", "rst")

#: How a ``mptcpsec`` connection reports each attack: the SubflowPoisoned reason, or
#: None where the subflow fails as a path (SubflowClosed, not poisoned).
EXPECTED_REASON: dict[str, str | None] = {
    "bitflip-data": "authentication", "bitflip-option": "authentication",
    "replay": "authentication", "drop": "authentication", "reorder": "authentication",
    "inject": "authentication", "truncate": "authentication", "rst": None,
}


def option_name(cls: type[MptcpOption]) -> str:
    """``Dss`` -> ``dss``, ``AddAddr`` -> ``add-addr``, ``MpTcpRst`` -> ``mp-tcprst``."""
    if cls.__name__ == "MpTcpRst":
        return "mp-tcprst"
    out = []
    for i, ch in enumerate(cls.__name__):
        if ch.isupper() and i:
            out.append("-")
        out.append(ch.lower())
    return "".join(out)


#: Option names for ``--option`` (MP_JOIN variants share the name ``mp-join``).
OPTION_NAMES: dict[str, tuple[type[MptcpOption], ...]] = {}
for _cls in OPTION_CLASSES:
    _name = "mp-join" if _cls.__name__.startswith("MpJoin") else option_name(_cls)
    OPTION_NAMES[_name] = (*OPTION_NAMES.get(_name, ()), _cls)


def option_fields(name: str) -> list[str]:
    """The fields ``--field`` accepts for option ``name``."""
    seen: dict[str, None] = {}
    for cls in OPTION_NAMES[name]:
        for f in dataclasses.fields(cls):
            seen[f.name] = None
    return list(seen)


@dataclass(frozen=True)
class AttackSpec:
    """Which attack, when, in which direction, and (for options) on which field."""

    kind: str
    after_bytes: int = 0
    after_records: int | None = None
    direction: str = "c2s"
    option: str = "dss"
    field: str = "dsn"
    #: bit to flip in a DATA body (bitflip-data), counted from the body's end; default
    #: lands in the ciphertext just before the tag (or in the plaintext in plain mode).
    bit: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ATTACKS:
            raise AttackError(f"unknown attack {self.kind!r}: choose one of {', '.join(ATTACKS)}")
        if self.direction not in ("c2s", "s2c"):
            raise AttackError("direction must be c2s (client to server) or s2c")
        if self.after_bytes < 0 or (self.after_records is not None and self.after_records < 0):
            raise AttackError("after_bytes and after_records must be >= 0")
        if self.kind == "bitflip-option":
            if self.option not in OPTION_NAMES:
                raise AttackError(f"unknown option {self.option!r}: choose one of "
                                  f"{', '.join(OPTION_NAMES)}")
            if self.field not in option_fields(self.option):
                raise AttackError(f"option {self.option} has no field {self.field!r}: choose "
                                  f"one of {', '.join(option_fields(self.option))}")

    def describe(self) -> str:
        what = self.kind if self.kind != "bitflip-option" else \
            f"bitflip-option {self.option}.{self.field}"
        when = (f"after {self.after_records} records" if self.after_records is not None
                else f"after {self.after_bytes:,} bytes")
        return f"{what} {self.direction} {when}"


@dataclass
class Strike:
    """One time the attack fired: where, when, and what it did."""

    flow: int
    direction: str
    record_index: int
    stream_offset: int
    record_type: str
    detail: str
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass
class _FlowState:
    records: int = 0
    nbytes: int = 0
    previous_data: bytes | None = None
    held: bytes | None = None


class Attack:
    """A stateful attack on one relay; ``hook()`` is the record hook to install.

    ``strikes`` lists every time it fired; ``on_strike`` is called with each as it happens
    (the demo uses it to mark the moment on its timeline).
    """

    def __init__(self, spec: AttackSpec, *, times: int = 1,
                 on_strike: Callable[[Strike], None] | None = None) -> None:
        self.spec = spec
        self.times = times
        self.on_strike = on_strike
        self.strikes: list[Strike] = []
        self._flows: dict[int, _FlowState] = {}
        self._record_hook = RecordHook(self._on_record)

    @property
    def direction(self) -> Direction:
        return Direction(self.spec.direction)

    @property
    def fired(self) -> bool:
        return bool(self.strikes)

    def hook(self) -> RecordHook:
        return self._record_hook

    def hooks(self) -> dict[str, RecordHook]:
        """``{"c2s": hook}`` or ``{"s2c": hook}``, for ``Relay(**attack.hooks())``."""
        return {self.spec.direction: self._record_hook}

    # ----------------------------------------------------------------- per record

    def _on_record(self, record: bytes, ctx: HookContext) -> bytes:
        if ctx.direction is not self.direction:
            return record
        st = self._flows.setdefault(ctx.flow.index, _FlowState())
        index, offset = st.records, st.nbytes
        st.records += 1
        st.nbytes += len(record)
        if st.held is not None:  # reorder: the held record goes after this one
            held, st.held = st.held, None
            return record + held
        rtype = record[1]
        out = record
        if len(self.strikes) < self.times and self._triggered(index, offset) \
                and self._eligible(record):
            out, detail = _STRIKES[self.spec.kind](self, record, ctx, st)
            strike = Strike(ctx.flow.index, ctx.direction.value, index, offset,
                            _type_name(rtype), detail)
            self.strikes.append(strike)
            if self.on_strike is not None:
                self.on_strike(strike)
        if rtype == RecordType.DATA:
            st.previous_data = record
        return out

    def _triggered(self, index: int, offset: int) -> bool:
        if self.spec.after_records is not None:
            return index >= self.spec.after_records
        return offset >= self.spec.after_bytes

    def _eligible(self, record: bytes) -> bool:
        header = RecordHeader.unpack(record)
        kind = self.spec.kind
        if kind == "bitflip-option":
            return self._find_option(record) is not None
        if kind == "rst":
            return True
        return header.type == RecordType.DATA and header.body_len > 0

    # ----------------------------------------------------------------- the attacks

    def _bitflip_data(self, record: bytes, ctx: HookContext,
                      st: _FlowState) -> tuple[bytes, str]:
        header = RecordHeader.unpack(record)
        body_start = HEADER_LEN + header.opt_len
        bit = self.spec.bit if self.spec.bit is not None else 20 * 8
        bit = min(bit, header.body_len * 8 - 1)
        pos = header.record_len - 1 - bit // 8
        b = bytearray(record)
        b[pos] ^= 1 << (bit % 8)
        return bytes(b), f"flipped bit {bit % 8} of body byte {pos - body_start}"

    def _find_option(self, record: bytes) -> tuple[int, int, MptcpOption] | None:
        header = RecordHeader.unpack(record)
        area = record[HEADER_LEN:HEADER_LEN + header.opt_len]
        try:
            options = decode_options(area)
        except Exception:
            return None
        classes = OPTION_NAMES[self.spec.option]
        pos = 0
        for opt in options:
            if isinstance(opt, classes) and hasattr(opt, self.spec.field) \
                    and getattr(opt, self.spec.field) is not None:
                return HEADER_LEN + pos, opt.length, opt
            pos += opt.length
        return None

    def _bitflip_option(self, record: bytes, ctx: HookContext,
                        st: _FlowState) -> tuple[bytes, str]:
        found = self._find_option(record)
        assert found is not None
        start, length, opt = found
        name = self.spec.field
        old = getattr(opt, name)
        encoded = b""
        new: object = old
        with contextlib.suppress(Exception):
            new = _flip_value(old)
            encoded = dataclasses.replace(opt, **{name: new}).encode()
        b = bytearray(record)
        if len(encoded) == length:
            b[start:start + length] = encoded
            detail = f"{self.spec.option}.{name}: {_show(old)} -> {_show(new)}"
        else:  # a value that cannot be re-encoded: flip the option's last byte instead
            b[start + length - 1] ^= 0x01
            detail = f"{self.spec.option}: flipped a bit of its last byte"
        return bytes(b), detail

    def _replay(self, record: bytes, ctx: HookContext, st: _FlowState) -> tuple[bytes, str]:
        previous = st.previous_data
        if previous is None:  # first DATA record of this flow: replay it right away
            previous = record
        return record + previous, f"replayed a {len(previous)}-byte DATA record"

    def _drop(self, record: bytes, ctx: HookContext, st: _FlowState) -> tuple[bytes, str]:
        return b"", f"dropped a {len(record)}-byte DATA record"

    def _reorder(self, record: bytes, ctx: HookContext, st: _FlowState) -> tuple[bytes, str]:
        st.held = record
        return b"", "held a DATA record back to send it after the next record"

    def _inject(self, record: bytes, ctx: HookContext, st: _FlowState) -> tuple[bytes, str]:
        header = RecordHeader.unpack(record)
        body_start = HEADER_LEN + header.opt_len
        forged = record[:body_start] + _forged_body(header.body_len)
        return forged + record, f"injected a forged {len(forged)}-byte DATA record"

    def _truncate(self, record: bytes, ctx: HookContext, st: _FlowState) -> tuple[bytes, str]:
        header = RecordHeader.unpack(record)
        cut = max(1, header.body_len // 2)
        short = dataclasses.replace(header, body_len=header.body_len - cut)
        return short.pack() + record[HEADER_LEN:header.record_len - cut], \
            f"cut {cut} bytes off a DATA record body"

    def _rst(self, record: bytes, ctx: HookContext, st: _FlowState) -> tuple[bytes, str]:
        for w in (ctx.flow.client_writer, ctx.flow.server_writer):
            with contextlib.suppress(Exception):
                w.transport.abort()
        return b"", "reset both ends of the subflow"


_STRIKES: dict[str, Callable[[Attack, bytes, HookContext, _FlowState], tuple[bytes, str]]] = {
    "bitflip-data": Attack._bitflip_data, "bitflip-option": Attack._bitflip_option,
    "replay": Attack._replay, "drop": Attack._drop, "reorder": Attack._reorder,
    "inject": Attack._inject, "truncate": Attack._truncate, "rst": Attack._rst,
}


def _forged_body(n: int) -> bytes:
    """Attacker bytes: readable in plain mode, so a forged delivery is easy to spot."""
    text = b"FORGED BY THE ATTACKER "
    return (text * (n // len(text) + 1))[:n]


def _flip_value(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value ^ 1
    if isinstance(value, bytes):
        return value[:-1] + bytes([value[-1] ^ 1]) if value else value
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value + 1 if int(value) & 1 == 0 else value - 1
    if isinstance(value, tuple):
        return tuple(_flip_value(v) for v in value)
    raise TypeError(f"cannot flip a {type(value).__name__}")


def _show(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


def _type_name(rtype: int) -> str:
    try:
        return RecordType(rtype).name
    except ValueError:
        return str(rtype)

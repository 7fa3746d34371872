"""Where each field of a record sits: every header byte, every field of every option, body.

The tamper matrix changes one field at a time. Options are located by walking the option
area (kind, length) and each RFC 8684 / MPTCPsec form is split into its fields, so a new
option form only needs a row here.
"""

from __future__ import annotations

from dataclasses import dataclass

from mptcpsec.wire.header import HEADER_LEN, TAG_LEN, RecordType
from mptcpsec.wire.records import is_protected

_SUBTYPES = {0x0: "mp_capable", 0x1: "mp_join", 0x2: "dss", 0x3: "add_addr", 0x4: "remove_addr",
             0x5: "mp_prio", 0x6: "mp_fail", 0x7: "mp_fastclose", 0x8: "mp_tcprst",
             0xF: "experimental"}


@dataclass(frozen=True)
class Field:
    """`length` bytes at `offset` of the record; `flip` is XORed into its last byte."""

    name: str
    offset: int
    length: int
    flip: int = 0x01

    def apply(self, record: bytes) -> bytes:
        b = bytearray(record)
        b[self.offset + self.length - 1] ^= self.flip
        return bytes(b)


def option_name(opt: bytes) -> str:
    sub = opt[2] >> 4 if len(opt) > 2 else -1
    name = _SUBTYPES.get(sub, f"subtype{sub}")
    if name == "experimental":
        return {0: "subflow", 1: "window"}.get(opt[2] & 0x0F, "experimental")
    if name == "mp_join":
        return {12: "mp_join_syn", 16: "mp_join_synack", 24: "mp_join_ack"}.get(opt[1], name)
    return name


def options_of(record: bytes) -> list[tuple[int, bytes]]:
    """(offset in the record, option bytes) of every option of the record."""
    out = []
    opt_len = record[3]
    pos = HEADER_LEN
    end = HEADER_LEN + opt_len
    while pos + 2 <= end:
        n = record[pos + 1]
        if n < 2:
            break
        out.append((pos, record[pos:pos + n]))
        pos += n
    return out


def _option_fields(name: str, o: int, opt: bytes) -> list[Field]:
    f = [Field(f"{name}.kind", o, 1), Field(f"{name}.length", o + 1, 1),
         Field(f"{name}.subtype", o + 2, 1, flip=0x10), Field(f"{name}.flags", o + 2, 1)]
    n = len(opt)
    if name == "dss":
        flags = opt[3]
        f.append(Field("dss.flags2", o + 3, 1))
        pos = o + 4
        if flags & 0x01:
            w = 8 if flags & 0x02 else 4
            f.append(Field("dss.data_ack", pos, w))
            pos += w
        if flags & 0x04:
            w = 8 if flags & 0x08 else 4
            f += [Field("dss.dsn", pos, w), Field("dss.ssn", pos + w, 4),
                  Field("dss.data_len", pos + w + 4, 2)]
    elif name == "window":
        f += [Field("window.reserved", o + 3, 1), Field("window.edge", o + 4, 8)]
    elif name == "subflow":
        f += [Field("subflow.reason", o + 3, 1), Field("subflow.id", o + 4, 4)]
    elif name == "add_addr":
        f.append(Field("add_addr.address_id", o + 3, 1))
        f.append(Field("add_addr.address", o + 4, 4))
        if n in (10, 18):
            f.append(Field("add_addr.port", o + 8, 2))
        if n in (16, 18):
            f.append(Field("add_addr.hmac", o + n - 8, 8))
    elif name == "remove_addr":
        f.append(Field("remove_addr.ids", o + 3, n - 3))
    elif name == "mp_tcprst":
        f.append(Field("mp_tcprst.reason", o + 3, 1))
    elif name == "mp_fastclose":
        f += [Field("mp_fastclose.reserved", o + 3, 1), Field("mp_fastclose.key", o + 4, 8)]
    elif name == "mp_capable":
        f.append(Field("mp_capable.flags2", o + 3, 1))
        if n >= 12:
            f.append(Field("mp_capable.key", o + 4, 8))
    elif name == "mp_join_syn":
        f += [Field("mp_join_syn.address_id", o + 3, 1), Field("mp_join_syn.token", o + 4, 4),
              Field("mp_join_syn.nonce", o + 8, 4)]
    elif name == "mp_join_synack":
        f += [Field("mp_join_synack.address_id", o + 3, 1),
              Field("mp_join_synack.hmac", o + 4, 8), Field("mp_join_synack.nonce", o + 12, 4)]
    elif name == "mp_join_ack":
        f += [Field("mp_join_ack.reserved", o + 3, 1), Field("mp_join_ack.hmac", o + 4, 20)]
    return f


def fields_of(record: bytes, protected_mode: bool = True) -> list[Field]:
    """Every field of `record`, in wire order, with a unique name."""
    out = [Field("hdr.version", 0, 1), Field("hdr.type", 1, 1), Field("hdr.flags", 2, 1),
           Field("hdr.opt_len", 3, 1), Field("hdr.body_len_hi", 4, 1),
           Field("hdr.body_len_lo", 5, 1)]
    seen: dict[str, int] = {}
    for o, opt in options_of(record):
        name = option_name(opt)
        k = seen.get(name, 0)
        seen[name] = k + 1
        for fld in _option_fields(name, o, opt):
            label = fld.name if k == 0 else fld.name.replace(name, f"{name}#{k + 1}", 1)
            out.append(Field(label, fld.offset, fld.length, fld.flip))
    body = HEADER_LEN + record[3]
    if is_protected(record[1], record[2], protected_mode):
        if len(record) - body > TAG_LEN:
            out.append(Field("ciphertext", body, 1))
        out.append(Field("tag", len(record) - 1, 1))
    elif len(record) > body:
        out.append(Field("body", body, 1))
    return out


def label(record: bytes) -> str:
    """A record's class: its type and the options it carries, e.g. "DATA[dss,window]"."""
    try:
        name = RecordType(record[1]).name
    except ValueError:
        name = f"TYPE{record[1]}"
    opts = [option_name(opt) for _, opt in options_of(record)]
    if name == "DATA" and opts and opts[0] == "dss" and len(record) > HEADER_LEN + 3 \
            and record[HEADER_LEN + 3] & 0x10:
        name = "DATA_FIN"
    return f"{name}[{','.join(opts)}]" if opts else name

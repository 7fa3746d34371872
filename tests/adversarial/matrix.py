"""The tamper matrix: record class x field (or stream attack) x position x direction.

Cells are generated from a clean run of each scenario: for every class of record seen on
the attacked path (type and options, e.g. ``CONTROL[add_addr]``), its first, middle and last
occurrence in each direction, every field of it (`fields.fields_of`) and every stream
attack (replay, drop, reorder, inject, truncate, RST, FIN). A cell's outcome is what the
receiving end did about the attacked subflow; `expected()` says what it must be.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from mptcpsec.wire.header import HEADER_LEN

from .fields import Field, fields_of, label
from .tamperbench import C2S, FIN, RST, SCENARIOS, RunResult, Verdict

STREAM_ATTACKS = ("replay", "drop", "reorder", "inject", "truncate", "rst", "fin")


@dataclass(frozen=True)
class Cell:
    scenario: str
    direction: str
    cls: str  # record class, see fields.label
    position: str  # first / middle / last (or only)
    index: int  # the record's index on the attacked path in this direction
    attack: str  # "field:<name>" or one of STREAM_ATTACKS

    @property
    def id(self) -> str:
        return f"{self.scenario}:{self.direction}:{self.cls}:{self.position}:{self.attack}"


@functools.cache
def clean_records(scenario: str) -> dict[str, list[bytes]]:
    """The records a clean run of `scenario` carries on its attacked path, per direction."""
    bench = SCENARIOS[scenario].make(None)
    result = bench.run()
    assert result.intact and not result.stuck, f"clean {scenario} run failed"
    return {d: result.records.get((bench.attacked, d), []) for d in (C2S, "s2c")}


def positions(indices: list[int]) -> list[tuple[str, int]]:
    if len(indices) == 1:
        return [("only", indices[0])]
    out = [("first", indices[0]), ("last", indices[-1])]
    if len(indices) > 2:
        out.insert(1, ("middle", indices[len(indices) // 2]))
    return out


def all_cells() -> list[Cell]:
    cells = []
    for scenario in SCENARIOS:
        for direction, records in clean_records(scenario).items():
            by_class: dict[str, list[int]] = {}
            for i, rec in enumerate(records):
                by_class.setdefault(label(rec), []).append(i)
            for cls, idxs in by_class.items():
                for pos, i in positions(idxs):
                    names = [f"field:{f.name}" for f in fields_of(records[i])]
                    for attack in (*names, *STREAM_ATTACKS):
                        cells.append(Cell(scenario, direction, cls, pos, i, attack))
    # A class seen in several scenarios is kept once (the first scenario that has it).
    seen: set[tuple[str, str, str, str]] = set()
    out = []
    for c in cells:
        key = (c.direction, c.cls, c.position, c.attack)
        if key in seen:
            continue
        seen.add(key)
        out.append(c)
    return out


def make_attack(cell: Cell) -> Callable[[str, int, bytes], Verdict]:
    """The attacker's per-record function for one cell."""
    held: list[bytes] = []
    state = {"fired": False}

    def fn(direction: str, idx: int, rec: bytes) -> Verdict:
        if direction != cell.direction:
            return rec
        if held:  # reorder: the held record goes after the one following it
            return [rec, held.pop()]
        if idx != cell.index or state["fired"]:
            return rec
        state["fired"] = True
        assert label(rec) == cell.cls, f"run diverged: record {idx} is {label(rec)}"
        a = cell.attack
        if a.startswith("field:"):
            fld = _field(rec, a[6:])
            return fld.apply(rec)
        if a == "replay":
            return [rec, rec]
        if a == "drop":
            return b""
        if a == "reorder":
            held.append(rec)
            return b""
        if a == "inject":
            forged = bytearray(rec)
            body = HEADER_LEN + rec[3]
            for i in range(body, len(forged)):
                forged[i] ^= 0x5A
            return [bytes(forged), rec]
        if a == "truncate":
            return [rec[:max(1, len(rec) // 2)], FIN]
        if a == "rst":
            return [RST]
        if a == "fin":
            return [FIN]
        raise ValueError(a)

    return fn


def _field(rec: bytes, name: str) -> Field:
    for f in fields_of(rec):
        if f.name == name:
            return f
    raise KeyError(name)


# ---------------------------------------------------------------------- outcomes

@dataclass(frozen=True)
class Outcome:
    """What happened to the attacked subflow, seen from the end that received the attack."""

    kind: str  # poisoned / path-failure / join-refused / handshake-failed / unaffected
    reason: str  # the poison reason, or a short form of the failure
    told_peer: bool  # the other end learnt it (report over a clean subflow, or a reset)
    result: RunResult

    def __str__(self) -> str:
        return f"{self.kind}:{self.reason}"


def outcome(cell: Cell, r: RunResult) -> Outcome:
    path = SCENARIOS_ATTACKED[cell.scenario]
    csid, ssid = r.sids.get(path, (None, None))
    receiver, sender = ("server", "client") if cell.direction == C2S else ("client", "server")
    rsid = ssid if receiver == "server" else csid
    xsid = csid if receiver == "server" else ssid
    for events, error in ((r.client_events, r.client_error), (r.server_events, r.server_error)):
        if error and not any(e.kind == "handshake_completed" for e in events):
            return Outcome("handshake-failed", _short(error), True, r)
    if receiver == "server" and ssid is None:
        if r.rejected:
            return Outcome("join-refused", _short(r.rejected[0]), True, r)
        # The server never saw the subflow: the client's view is the only one.
        gone = [e for e in r.closed("client") if e.subflow_id == csid and not e.clean]
        if gone:
            return Outcome("path-failure", _short(gone[0].reason), True, r)
    mine = [e for e in r.poisoned(receiver) if e.subflow_id == rsid and not e.reported_by_peer]
    theirs_p = [e for e in r.poisoned(sender) if e.subflow_id == xsid]
    theirs_c = [e for e in r.closed(sender) if e.subflow_id == xsid]
    told = bool(theirs_p or theirs_c)
    if mine:
        return Outcome("poisoned", mine[0].reason, told, r)
    closed = [e for e in r.closed(receiver) if e.subflow_id == rsid and not e.clean]
    if closed:
        return Outcome("path-failure", _short(closed[0].reason), told, r)
    if theirs_p and not theirs_p[0].reported_by_peer:
        # The tampered record made the *sender* side's answer fail (e.g. a join).
        return Outcome("poisoned-at-sender", theirs_p[0].reason, True, r)
    return Outcome("unaffected", "", told, r)


def _short(text: str) -> str:
    return text.split(":")[0].strip() if text else ""


SCENARIOS_ATTACKED = {name: 1 for name in SCENARIOS}


# ---------------------------------------------------------------------- expectations

AUTH = "poisoned:authentication"
#: Header bytes whose change moves the record boundary: the tag fails, the length is over
#: the maximum, or the receiver waits for bytes that never come and the path fails.
LENGTH_OUTCOMES = {AUTH, "poisoned:record-too-large", "poisoned:malformed-record",
                   "path-failure:path failure"}

#: Fields of unprotected JOIN records that nothing checks, and why that is acceptable.
UNCHECKED_JOIN_FIELDS = {
    "field:mp_join_synack.address_id": "ignored by the joining end (RFC 8684 gives it no use)",
    "field:mp_join_synack.flags": "the B bit of the answer is ignored by the joining end",
}

#: JOIN SYN fields both join MACs bind (SPEC 6.3): a change fails the join at the joining
#: end (the server's MAC does not verify) or is refused by the server's option rules.
MAC_BOUND_JOIN_FIELDS = {"field:mp_join_syn.address_id", "field:mp_join_syn.flags"}


def expected(cell: Cell) -> set[str]:
    """The outcomes a cell may have (prefix match on "kind:reason")."""
    a, cls = cell.attack, cell.cls
    if cls.startswith("HANDSHAKE"):
        if a == "replay":  # a copy arriving once keys exist is out of place there
            return {"handshake-failed", "poisoned:unexpected-record"}
        return {"handshake-failed"}  # split-path: either path alone cannot be altered
    if cls.startswith("JOIN[mp_join_syn,"):
        if a in UNCHECKED_JOIN_FIELDS:
            return {"unaffected"}
        if a in MAC_BOUND_JOIN_FIELDS:
            return {"poisoned-at-sender:join-failed", "join-refused"}
        if a == "replay":
            return {"poisoned:unexpected-record"}
        if a in ("truncate", "rst", "fin"):
            return {"path-failure", "join-refused"}
        return {"join-refused"}
    if cls.startswith("JOIN[mp_join_synack"):
        if a in UNCHECKED_JOIN_FIELDS:
            return {"unaffected"}
        if a in ("drop", "reorder", "field:hdr.opt_len", "field:hdr.body_len_hi",
                 "field:hdr.body_len_lo"):
            # The join never completes: its timeout, or the progress timeout of 0-RTT data.
            return {"path-failure"}
        if a in ("truncate", "rst", "fin"):
            return {"path-failure"}
        if a == "replay":
            return {"poisoned:unexpected-record"}
        return {"poisoned:malformed-record", "poisoned:join-failed",
                "poisoned:unexpected-record"}
    if cls.startswith("JOIN"):  # the joining end's ACK
        if a in ("truncate", "rst", "fin"):
            return {"path-failure"}
        return {"poisoned:malformed-record", "poisoned:join-failed",
                "poisoned:unexpected-record", AUTH}
    # Protected records (DATA, DATA_FIN, CONTROL, KEY_UPDATE, CLOSE).
    last_on_path = cls.startswith(("CLOSE", "DATA_FIN"))
    if a == "field:hdr.version":
        return {"poisoned:malformed-record"}
    if a == "field:hdr.type":
        return {"poisoned:unexpected-record", AUTH}
    if a in ("field:hdr.opt_len", "field:hdr.body_len_hi", "field:hdr.body_len_lo"):
        return LENGTH_OUTCOMES
    if a in ("truncate", "rst", "fin"):
        return {"path-failure"}
    if a in ("drop", "reorder"):
        # Nothing follows a CLOSE (or, on its path, a DATA_FIN): the missing record shows
        # as a path that ended without CLOSE, or as a DATA_FIN never acknowledged.
        return {AUTH, "path-failure"} if last_on_path else {AUTH}
    if a == "replay" and cls.startswith("CLOSE"):
        return {"unaffected"}  # after an authenticated CLOSE nothing more is read
    return {AUTH}


def matches(o: Outcome, allowed: set[str]) -> bool:
    return any(str(o).startswith(x) for x in allowed)

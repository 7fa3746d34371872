"""The tamper matrix's attacks as relay hooks: the same cells, on real TCP sockets.

A `WireCell` names a direction, a record class (`fields.label`), a position and an attack
(a field, or replay / drop / reorder / inject / truncate / rst / fin). `wire_hook` turns
it into a RecordHook for `mptcpsec.lab.relay.Relay`; `wire_outcome` reads what the two
real ends reported, with the same vocabulary as the sans-I/O matrix.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from mptcpsec.lab.relay import HookContext, RecordHook
from mptcpsec.protocol.events import Event, SubflowClosed, SubflowPoisoned
from mptcpsec.wire.header import HEADER_LEN

from .fields import fields_of, label

T = TypeVar("T")


def run_retrying(make: Callable[[], Awaitable[T]], timeout: float = 60, tries: int = 3) -> T:
    """asyncio.run(make()), again when a port picked as free was taken meanwhile (the lab
    binds one port number on several loopback addresses)."""
    for attempt in range(tries):
        try:
            return asyncio.run(asyncio.wait_for(make(), timeout))  # type: ignore[arg-type]
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class WireCell:
    direction: str  # "c2s" or "s2c"
    cls: str  # record class, e.g. "DATA[dss,window]"
    position: str  # "first", "middle" (after `after` bytes in that direction) or "only"
    attack: str  # "field:<name>" or a stream attack
    after: int = 1_000_000

    @property
    def id(self) -> str:
        return f"{self.direction}:{self.cls}:{self.position}:{self.attack}"


@dataclass
class HookState:
    seen: dict[str, int] = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    fired: bool = False
    held: list[bytes] = field(default_factory=list)


def _abort(ctx: HookContext) -> None:
    for w in (ctx.flow.client_writer, ctx.flow.server_writer):
        with contextlib.suppress(Exception):
            w.transport.abort()


def wire_hook(cell: WireCell, state: HookState) -> RecordHook:
    """A RecordHook striking once at the cell's record (give it to both directions)."""

    def fn(rec: bytes, ctx: HookContext) -> bytes:
        d = ctx.direction.value
        state.seen[d] += len(rec)
        if d != cell.direction:
            return rec
        if state.held:
            return rec + state.held.pop()
        if state.fired or label(rec) != cell.cls:
            return rec
        if cell.position == "middle" and state.seen[d] < cell.after:
            return rec
        state.fired = True
        a = cell.attack
        if a.startswith("field:"):
            fld = next(f for f in fields_of(rec) if f.name == a[6:])
            return fld.apply(rec)
        if a == "replay":
            return rec + rec
        if a == "drop":
            return b""
        if a == "reorder":
            state.held.append(rec)
            return b""
        if a == "inject":
            body = HEADER_LEN + rec[3]
            return rec[:body] + bytes(b ^ 0x5A for b in rec[body:]) + rec
        if a == "truncate":
            ctx.inject(ctx.direction, rec[:len(rec) // 2])
            ctx.flow.close()  # FIN both ways once the half record is written
            return b""
        if a == "rst":
            _abort(ctx)
            return b""
        if a == "fin":
            ctx.flow.close()
            return b""
        raise ValueError(a)

    return RecordHook(fn)


@dataclass(frozen=True)
class WireOutcome:
    kind: str
    reason: str
    told_peer: bool

    def __str__(self) -> str:
        return f"{self.kind}:{self.reason}"


def wire_outcome(cell: WireCell, client_events: list[Event], server_events: list[Event],
                 sid: int = 1) -> WireOutcome:
    """What the receiving end did about subflow `sid` (the relayed path)."""
    recv, send = ((server_events, client_events) if cell.direction == "c2s"
                  else (client_events, server_events))
    mine = [e for e in recv if isinstance(e, SubflowPoisoned) and e.subflow_id == sid
            and not e.reported_by_peer]
    told = any(isinstance(e, (SubflowPoisoned, SubflowClosed)) and e.subflow_id == sid
               for e in send)
    if mine:
        return WireOutcome("poisoned", mine[0].reason, told)
    gone = [e for e in recv if isinstance(e, SubflowClosed) and e.subflow_id == sid
            and not e.clean]
    if gone:
        return WireOutcome("path-failure", gone[0].reason.split(":")[0], told)
    back = [e for e in send if isinstance(e, SubflowPoisoned) and e.subflow_id == sid
            and not e.reported_by_peer]
    if back:
        return WireOutcome("poisoned-at-sender", back[0].reason, True)
    return WireOutcome("unaffected", "", told)

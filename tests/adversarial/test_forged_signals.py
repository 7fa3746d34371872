"""Forged multipath signals from an attacker on one path: what they do to `plain`, and that
they fail against `mptcpsec`.

The attacker is passive on path 0 (in `plain` it reads both 64-bit keys from the
MP_CAPABLE options there, as RFC 8684 sends them in clear) and active on path 1, where it
inserts one forged CONTROL record between two real ones. In `plain` the record is
accepted and acted on; in `mptcpsec` it has no valid tag (the attacker has no key), so
path 1 is poisoned and the echo completes intact over path 0.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from mptcpsec.crypto.rfc8684 import add_addr_hmac
from mptcpsec.lab.relay import HookContext, RecordHook
from mptcpsec.protocol.config import ConnectionConfig
from mptcpsec.protocol.events import AddressAnnounced, SubflowPoisoned
from mptcpsec.wire.header import HEADER_LEN, TAG_LEN, RecordType
from mptcpsec.wire.options import (
    AddAddr,
    MpCapable,
    MpFastclose,
    MpPrio,
    MpsSubflow,
    MptcpOption,
    MpTcpRst,
    PoisonReason,
    RemoveAddr,
    decode_options,
)
from mptcpsec.wire.records import build_record

from ..e2e.harness import HOSTS, Lab, Outcome, echo_transfer, free_port
from .wire_attacks import run_retrying

ATTACKER = HOSTS[2]  # where a forged ADD_ADDR points


@dataclass
class Keys:
    """What the passive attacker learnt on path 0 (plain: both RFC 8684 keys)."""

    client: int | None = None
    server: int | None = None


def key_sniffer(keys: Keys) -> RecordHook:
    def fn(rec: bytes, ctx: HookContext) -> bytes:
        if rec[1] == RecordType.HANDSHAKE and rec[3]:
            for o in decode_options(rec[HEADER_LEN:HEADER_LEN + rec[3]]):
                if isinstance(o, MpCapable) and o.sender_key is not None:
                    if ctx.direction.value == "c2s":
                        keys.client = o.sender_key
                    else:
                        keys.server = o.sender_key
        return rec

    return RecordHook(fn)


def injector(direction: str, forge: Callable[[], list[MptcpOption]], protected: bool,
             fired: list[bool], after: int = 150_000) -> RecordHook:
    """Insert one forged CONTROL record after `after` bytes in `direction`."""
    seen = {"c2s": 0, "s2c": 0}

    def fn(rec: bytes, ctx: HookContext) -> bytes:
        d = ctx.direction.value
        seen[d] += len(rec)
        if d != direction or fired or seen[d] < after:
            return rec
        fired.append(True)
        if protected:  # the attacker cannot compute the tag: it sends its best guess
            forged = build_record(RecordType.CONTROL, 0, forge(), os.urandom(TAG_LEN))
        else:
            forged = build_record(RecordType.CONTROL, 0, forge())
        return forged + rec

    return RecordHook(fn)


@dataclass(frozen=True)
class Signal:
    name: str
    direction: str  # towards the server (c2s) or the client (s2c)
    forge: Callable[[Keys, int], list[MptcpOption]]  # (keys, attacker port) -> options
    plain_effect: Callable[[Outcome, list[int]], None]  # asserts what it achieved


def _add_addr(keys: Keys, port: int) -> list[MptcpOption]:
    mac = add_addr_hmac(keys.server or 0, keys.client or 0, 9, ATTACKER, port)
    return [AddAddr(9, ipaddress.ip_address(ATTACKER), port, hmac=mac)]


def _add_addr_effect(out: Outcome, attacker_hits: list[int]) -> None:
    ann = [e for e in out.client_events if isinstance(e, AddressAnnounced) and not e.removed]
    assert ann and ann[0].address == ATTACKER  # the client believed the server moved
    assert attacker_hits, "the client never opened a subflow to the attacker's address"


def _remove_addr_effect(out: Outcome, _: list[int]) -> None:
    gone = [e for e in out.client_events if isinstance(e, AddressAnnounced) and e.removed]
    assert gone and gone[0].address_id == 0
    closed = [e for e in out.client_events if e.kind == "subflow_closed" and e.subflow_id == 0]
    ended = [e for e in out.client_events if e.kind == "stream_ended"]
    assert closed and ended and closed[0].time < ended[0].time  # path 0 shut down early


def _prio_effect(out: Outcome, _: list[int]) -> None:
    stats = {s["id"]: s for s in out.client_stats}
    assert stats[1]["backup"] is True  # the client now keeps path 1 as a backup only


def _fastclose_effect(out: Outcome, _: list[int]) -> None:
    assert out.client_error is not None and "MP_FASTCLOSE" in out.client_error
    assert not out.intact  # the whole connection was killed from one path


def _tcprst_effect(out: Outcome, _: list[int]) -> None:
    hits = [e for e in out.client_events if isinstance(e, SubflowPoisoned)
            and e.subflow_id == 0 and e.reported_by_peer]
    assert hits  # path 0, where the attacker is not active, was torn down


SIGNALS = [
    Signal("ADD_ADDR", "s2c", _add_addr, _add_addr_effect),
    Signal("REMOVE_ADDR", "s2c", lambda k, p: [RemoveAddr((0,))], _remove_addr_effect),
    Signal("MP_PRIO", "s2c", lambda k, p: [MpPrio(backup=True)], _prio_effect),
    Signal("MP_FASTCLOSE", "s2c", lambda k, p: [MpFastclose(receiver_key=k.client or 0)],
           _fastclose_effect),
    Signal("MP_TCPRST", "s2c",
           lambda k, p: [MpTcpRst(reason=1), MpsSubflow(0, PoisonReason.AUTHENTICATION)],
           _tcprst_effect),
]


async def _attacker_listener(hits: list[int]) -> tuple[asyncio.base_events.Server, int]:
    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(1)
        await reader.read(4096)  # the client's JOIN: the attacker now holds a subflow
        writer.close()

    port = free_port()
    return await asyncio.start_server(on_conn, ATTACKER, port), port


def run_signal(sig: Signal, mode: str) -> tuple[Outcome, list[int], list[bool]]:
    keys, fired, hits = Keys(), [], []

    async def main():
        nonlocal keys, fired, hits
        keys, fired, hits = Keys(), [], []
        listener, port = await _attacker_listener(hits)
        cfg = ConnectionConfig(mode=mode, key_exchange="split-path", scheduler="round-robin",
                               subflow_timeout=3.0)
        inject = injector(sig.direction, lambda: sig.forge(keys, port), mode == "mptcpsec",
                          fired)
        relays = {0: {"c2s": key_sniffer(keys), "s2c": key_sniffer(keys)},
                  1: {"c2s": inject, "s2c": inject}}
        try:
            async with Lab(cfg, npaths=2, relays=relays) as lab:
                out = await echo_transfer(lab, 3_000_000)
                await asyncio.sleep(0.2)  # let a hijacked join reach the attacker
                return out
        finally:
            listener.close()

    out = run_retrying(main)
    return out, hits, fired


@pytest.mark.network
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_forged_signal_works_against_plain(sig: Signal) -> None:
    out, hits, fired = run_signal(sig, "plain")
    assert fired
    sig.plain_effect(out, hits)


@pytest.mark.network
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_forged_signal_fails_against_mptcpsec(sig: Signal) -> None:
    out, hits, fired = run_signal(sig, "mptcpsec")
    assert fired
    assert out.client_error is None and out.intact
    receiver = out.server_events if sig.direction == "c2s" else out.client_events
    poisoned = [e for e in receiver if isinstance(e, SubflowPoisoned) and not e.reported_by_peer]
    assert [(e.subflow_id, e.reason) for e in poisoned] == [(1, "authentication")]
    assert not hits  # nobody was sent to the attacker's address
    assert not [e for e in out.client_events + out.server_events
                if isinstance(e, AddressAnnounced)]
    assert not [e for e in out.client_events + out.server_events
                if isinstance(e, SubflowPoisoned) and e.subflow_id == 0]

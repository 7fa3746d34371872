"""The tamper matrix on real sockets: an attacker relay on path 1 of a psk connection.

The same cells and expectations as the sans-I/O matrix (test_tamper_matrix.py), on the
wire: a real relay reassembles records and changes one of them; the echo must come back
intact over path 0, the receiving end must drop path 1 with the right reason, and the
other end must learn of it. A representative subset runs by default; with
MPTCPSEC_TAMPER_FULL=1 (`make tamper-full`) every field of every record class seen on the
relayed path runs, at two positions and in both directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from mptcpsec.aio.api import connect
from mptcpsec.crypto.keyschedule import Role, Secret
from mptcpsec.crypto.psk import PskConfig
from mptcpsec.errors import MptcpsecError
from mptcpsec.protocol.config import ConnectionConfig

from ..e2e.harness import Lab, Outcome
from .fields import fields_of, label
from .matrix import STREAM_ATTACKS, Cell, clean_records, expected
from .wire_attacks import HookState, WireCell, run_retrying, wire_hook, wire_outcome

FULL = os.environ.get("MPTCPSEC_TAMPER_FULL") == "1"
DATA, ACK, CLOSE = "DATA[dss,window]", "CONTROL[dss,window]", "CLOSE[dss]"
SYNACK, JACK = "JOIN[mp_join_synack]", "JOIN[mp_join_ack]"

SUBSET = [
    WireCell("c2s", DATA, "first", "field:tag"),
    WireCell("c2s", DATA, "middle", "field:dss.dsn"),
    WireCell("c2s", DATA, "middle", "field:hdr.type"),
    WireCell("s2c", DATA, "middle", "field:ciphertext"),
    WireCell("s2c", DATA, "first", "field:window.edge"),
    WireCell("s2c", DATA, "middle", "field:hdr.body_len_hi"),
    WireCell("c2s", DATA, "middle", "replay"),
    WireCell("s2c", DATA, "middle", "reorder"),
    WireCell("c2s", DATA, "middle", "inject"),
    WireCell("s2c", DATA, "middle", "drop"),
    WireCell("c2s", DATA, "middle", "truncate"),
    WireCell("s2c", DATA, "middle", "rst"),
    WireCell("c2s", DATA, "middle", "fin"),
    WireCell("s2c", SYNACK, "only", "field:mp_join_synack.hmac"),
    WireCell("c2s", JACK, "only", "field:body"),
    WireCell("c2s", CLOSE, "only", "field:tag"),
]


def full_cells() -> list[WireCell]:
    """Every field of every class the relayed path carries, first and middle, both ways."""
    out = []
    for direction, records in clean_records("psk-join").items():
        samples: dict[str, bytes] = {}
        for rec in records:
            samples.setdefault(label(rec), rec)
        for cls, rec in samples.items():
            if cls.startswith(("JOIN[mp_join_syn,", "DATA_FIN", "KEY_UPDATE")):
                continue  # sent before the relay sees a flow, or not on a fixed path
            attacks = [f"field:{f.name}" for f in fields_of(rec)] + list(STREAM_ATTACKS)
            spots = ["only"] if cls.startswith(("JOIN", "CLOSE")) else ["first", "middle"]
            out += [WireCell(direction, cls, p, a) for p in spots for a in attacks]
    return out


CELLS = full_cells() if FULL else SUBSET


def psk() -> ConnectionConfig:
    return ConnectionConfig(key_exchange="psk", scheduler="round-robin",
                            psk=PskConfig(Role.CLIENT, Secret(b"\x42" * 32)),
                            subflow_timeout=3.0)


async def joined_echo(lab: Lab, nbytes: int) -> Outcome:
    """Echo `nbytes` once the joined path 1 is up (so both ends send records on it)."""
    payload = os.urandom(nbytes)
    stream = await connect(lab.paths(), lab.config)
    for _ in range(500):
        if any(s["id"] == 1 and s["state"] != "joining" for s in stream.subflow_stats()):
            break
        await asyncio.sleep(0.01)
    received = bytearray()
    error: str | None = None

    async def writer() -> None:
        for i in range(0, nbytes, 1 << 16):
            stream.write(payload[i:i + (1 << 16)])
            await stream.drain()
        stream.close()

    wt = asyncio.create_task(writer())
    try:
        while data := await stream.read(1 << 16):
            received += data
    except MptcpsecError as exc:
        error = str(exc)
    with contextlib.suppress(MptcpsecError):
        await wt
    with contextlib.suppress(MptcpsecError, asyncio.TimeoutError):
        await stream.wait_closed(5)
    await asyncio.sleep(0.05)
    assert lab.server is not None
    server_events = [e for s in lab.server.finished for e in s.events]
    server_events += [e for d in lab.server.drivers.values() for e in d.events]
    return Outcome(payload, bytes(received), error or stream.error, stream.events,
                   server_events, stream.subflow_stats())


@pytest.mark.network
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.id)
def test_wire_cell(cell: WireCell) -> None:
    cell = WireCell(cell.direction, cell.cls, cell.position, cell.attack, after=300_000)
    state = HookState()

    async def main():
        nonlocal state
        state = HookState()
        hook = wire_hook(cell, state)
        async with Lab(psk(), npaths=2, relays={1: {"c2s": hook, "s2c": hook}}) as lab:
            return await joined_echo(lab, 1_500_000)

    out = run_retrying(main)
    assert state.fired, f"{cell.id}: the relay never saw that record"
    assert out.prefix_ok, "a forged byte reached the application"
    o = wire_outcome(cell, out.client_events, out.server_events)
    want = expected(Cell("wire", cell.direction, cell.cls, cell.position, 0, cell.attack))
    assert any(str(o).startswith(w) for w in want), f"{cell.id}: got {o}, expected {want}"
    assert out.client_error is None and out.intact, f"{cell.id}: {out.client_error}"
    if o.kind != "unaffected":
        assert o.told_peer, f"{cell.id}: the other end never learnt ({o})"

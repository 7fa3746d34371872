"""A relay that tampers with one path: mptcpsec survives, the baselines do not."""

from __future__ import annotations

import asyncio

from mptcpsec.protocol.config import ConnectionConfig
from mptcpsec.protocol.events import SubflowPoisoned

from .harness import Lab, bitflip_after, echo_transfer

MB = 1_000_000


def run(coro, timeout: float = 90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def attack(mode: str, nbytes: int = 8 * MB, **cfg_args):
    fired: list[int] = []

    async def main():
        cfg = ConnectionConfig(mode=mode, key_exchange="split-path", scheduler="round-robin",
                               **cfg_args)
        async with Lab(cfg, npaths=2, relays={1: {"c2s": bitflip_after(1 * MB, fired=fired)}}) \
                as lab:
            return await echo_transfer(lab, nbytes)

    out = run(main())
    assert fired, "the relay never saw 1 MB of data records on path 2"
    return out


def test_bitflip_on_one_path_poisons_it_and_the_transfer_completes() -> None:
    out = attack("mptcpsec")
    assert out.client_error is None
    assert out.intact
    server = [e for e in out.server_events if isinstance(e, SubflowPoisoned)]
    client = [e for e in out.client_events if isinstance(e, SubflowPoisoned)]
    assert len(server) == 1 and server[0].subflow_id == 1
    assert server[0].reason == "authentication" and not server[0].reported_by_peer
    assert len(client) == 1 and client[0].subflow_id == 1 and client[0].reported_by_peer
    assert client[0].reason == "authentication"
    stats = {s["id"]: s for s in out.client_stats}
    assert stats[1]["state"] == "poisoned" and stats[0]["state"] == "closed"
    assert "data_reinjected" in out.kinds()


def test_same_attack_against_plain_delivers_corrupted_bytes() -> None:
    out = attack("plain")
    assert out.client_error is None
    assert len(out.received) == len(out.sent)
    assert not out.intact  # corrupted, and nobody noticed
    diff = [i for i, (a, b) in enumerate(zip(out.sent, out.received, strict=True)) if a != b]
    assert len(diff) == 1
    assert "subflow_poisoned" not in out.kinds() + out.kinds("server")


def test_same_attack_against_tls_over_plain_kills_the_connection() -> None:
    out = attack("tls-over-plain")
    assert out.client_error is not None
    assert out.prefix_ok and not out.intact  # nothing forged, but the transfer died
    assert len(out.received) < len(out.sent)


def test_every_path_poisoned_fails_cleanly_on_both_ends() -> None:
    fired0: list[int] = []
    fired1: list[int] = []

    async def main():
        cfg = ConnectionConfig(key_exchange="split-path", scheduler="round-robin")
        relays = {0: {"c2s": bitflip_after(1 * MB, fired=fired0)},
                  1: {"c2s": bitflip_after(1 * MB, fired=fired1)}}
        async with Lab(cfg, npaths=2, relays=relays) as lab:
            out = await echo_transfer(lab, 8 * MB)
            await asyncio.sleep(0.2)
            return out

    out = run(main())
    assert fired0 and fired1
    assert out.client_error is not None and "no clean subflow left" in out.client_error
    assert out.prefix_ok  # nothing corrupted was ever delivered
    server_terms = [e for e in out.server_events if e.kind == "connection_terminated"]
    assert server_terms and server_terms[0].error is not None
    assert "no clean subflow left" in server_terms[0].error


def test_key_update_mid_transfer_is_invisible() -> None:
    async def main():
        cfg = ConnectionConfig(key_exchange="split-path", scheduler="round-robin",
                               key_update_records=40)
        async with Lab(cfg, npaths=2) as lab:
            return await echo_transfer(lab, 6 * MB)

    out = run(main())
    assert out.client_error is None and out.intact
    sends = [e for e in out.client_events if e.kind == "key_updated" and e.direction == "send"]
    recvs = [e for e in out.client_events if e.kind == "key_updated"
             and e.direction == "receive"]
    assert len(sends) >= 4 and len(recvs) >= 4
    assert max(e.generation for e in sends) >= 2

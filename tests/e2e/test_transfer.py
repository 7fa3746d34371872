"""Echo transfers over real sockets on 127.0.0.1-4: intact, with failures and backups."""

from __future__ import annotations

import asyncio

import pytest

from mptcpsec.protocol.config import ConnectionConfig

from .harness import Lab, echo_transfer, reset_after

MB = 1_000_000


def run(coro, timeout: float = 90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.mark.parametrize("npaths", [2, 4])
def test_echo_50mb_intact(npaths: int) -> None:
    async def main():
        cfg = ConnectionConfig(key_exchange="split-path", scheduler="round-robin")
        async with Lab(cfg, npaths=npaths) as lab:
            return await echo_transfer(lab, 50 * MB)

    out = run(main())
    assert out.client_error is None and out.intact
    used = [s for s in out.client_stats if s["bytes_sent"]]
    assert len(used) == npaths  # every subflow carried data
    assert out.kinds().count("subflow_established") == npaths


def test_subflow_reset_mid_transfer_completes() -> None:
    fired: list[int] = []

    async def main():
        cfg = ConnectionConfig(key_exchange="split-path", scheduler="round-robin")
        async with Lab(cfg, npaths=2, relays={1: {"c2s": reset_after(2 * MB, fired)}}) as lab:
            return await echo_transfer(lab, 10 * MB)

    out = run(main())
    assert fired, "the relay never reset the path"
    assert out.client_error is None and out.intact
    failed = [s for s in out.client_stats if s["state"] == "failed"]
    assert len(failed) == 1 and "path failure" in str(failed[0]["reason"])
    assert "subflow_poisoned" not in out.kinds()  # a reset is a failure, not tampering
    assert "data_reinjected" in out.kinds() or "data_reinjected" in out.kinds("server")


def test_backup_subflow_used_only_after_primaries_are_gone() -> None:
    fired: list[int] = []
    backup_before: list[int] = []

    def progress(done: int, stream) -> None:
        if not fired:
            backup_before.append(int(stream.subflow_stats()[1]["bytes_sent"]))

    async def main():
        cfg = ConnectionConfig(key_exchange="psk", scheduler="round-robin")
        from mptcpsec.crypto.keyschedule import Role, Secret
        from mptcpsec.crypto.psk import PskConfig

        cfg.psk = PskConfig(Role.CLIENT, Secret(b"\x42" * 32))
        async with Lab(cfg, npaths=2, relays={0: {"c2s": reset_after(3 * MB, fired)}}) as lab:
            return await echo_transfer(lab, 8 * MB, backup={1}, on_progress=progress)

    out = run(main())
    assert fired and out.client_error is None and out.intact
    assert backup_before and max(backup_before) == 0  # idle while the primary lived
    stats = {s["id"]: s for s in out.client_stats}
    assert stats[1]["backup"] is True and int(stats[1]["bytes_sent"]) > 0
    assert stats[0]["state"] == "failed"

"""Emulated paths for the latency benchmarks: relays in this process with a delay line.

Built on the lab's `PathEmulator`, with one difference that matters when timing failures:
a FIN takes the one-way delay too. `PathEmulator.flush` waits until the bytes ahead of a
FIN have left the delay line and then passes the FIN on at once, so a peer that closes a
poisoned subflow would tell the other end half a round trip early and failover would look
faster than a real path allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..lab.emulator import PathEmulator, PathProfile
from ..lab.relay import Hook, HookContext, Relay

Address = tuple[str, int]


class DelayedPath(PathEmulator):
    """`PathEmulator` whose FIN also waits for the one-way delay (module docstring)."""

    async def flush(self, ctx: HookContext) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.profile.delay_ms / 1000
        await super().flush(ctx)
        if due > loop.time():
            await asyncio.sleep(due - loop.time())


@dataclass
class EmulatedPaths:
    """One relay per path, each listening on the host of its upstream address."""

    relays: list[Relay] = field(default_factory=list)
    emulators: list[DelayedPath] = field(default_factory=list)

    @property
    def addresses(self) -> list[Address]:
        return [r.address for r in self.relays]

    async def close(self) -> None:
        for e in self.emulators:
            await e.close()
        for r in self.relays:
            await r.close()


async def open_paths(upstreams: Sequence[Address], rtts_ms: Sequence[float],
                     c2s: Sequence[Hook | None] | None = None,
                     max_flows: int = 10_000) -> EmulatedPaths:
    """Relays to ``upstreams`` with the given round trips (half of it each way)."""
    paths = EmulatedPaths()
    try:
        for i, (up, rtt) in enumerate(zip(upstreams, rtts_ms, strict=True)):
            emu = DelayedPath(PathProfile(delay_ms=rtt / 2), inner=c2s[i] if c2s else None)
            relay = Relay((up[0], 0), up, c2s=emu, s2c=emu, name=f"path {i + 1}",
                          max_flows=max_flows)
            paths.emulators.append(emu)
            paths.relays.append(relay)
            await relay.start()
    except BaseException:
        await paths.close()
        raise
    return paths

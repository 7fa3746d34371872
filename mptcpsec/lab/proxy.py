"""An attacker middlebox for one path: an emulated path (delay, rate, blackhole) plus an
optional record-aware attack, on a real TCP relay.

```python
proxy = Proxy(("127.0.0.2", 0), ("127.0.0.2", 7000), delay_ms=5,
              attack=AttackSpec("bitflip-data", after_bytes=1_000_000))
async with proxy:
    ...  # connect the client's path 2 to proxy.address
assert proxy.attack.fired
```

``mptcpsec proxy`` runs one from the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .attacks import Attack, AttackSpec, Strike
from .emulator import EmulatedRelay, PathProfile

Address = tuple[str, int]


class Proxy:
    """One relayed path: ``start()``/``close()`` (or ``async with``), then ``address``."""

    def __init__(self, listen: Address, upstream: Address, *, delay_ms: float = 0.0,
                 rate_mbps: float | None = None, blackhole_after: int | None = None,
                 attack: AttackSpec | None = None, name: str = "proxy",
                 on_strike: Callable[[Strike], None] | None = None,
                 profile: PathProfile | None = None) -> None:
        self.profile = profile or PathProfile(delay_ms=delay_ms, rate_mbps=rate_mbps,
                                              blackhole_after=blackhole_after)
        self.attack: Attack | None = Attack(attack, on_strike=on_strike) if attack else None
        hooks: dict[str, Any] = self.attack.hooks() if self.attack is not None else {}
        self.name = name
        self.relay = EmulatedRelay(listen, upstream, self.profile, name=name, **hooks)

    @property
    def address(self) -> Address:
        return self.relay.address

    @property
    def upstream(self) -> Address:
        return self.relay.upstream

    @property
    def strikes(self) -> list[Strike]:
        return self.attack.strikes if self.attack is not None else []

    async def start(self) -> Address:
        return await self.relay.start()

    async def close(self) -> None:
        await self.relay.close()

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        """Flows relayed, bytes per direction, and what the attack did."""
        flows = [{"index": f.index,
                  "bytes_in": {d.value: n for d, n in f.bytes_in.items()},
                  "bytes_out": {d.value: n for d, n in f.bytes_out.items()},
                  "closed": f.closed.is_set()} for f in self.relay.flows]
        return {"name": self.name, "listen": list(self.address), "upstream": list(self.upstream),
                "delay_ms": self.profile.delay_ms, "rate_mbps": self.profile.rate_mbps,
                "blackhole_after": self.profile.blackhole_after,
                "attack": self.attack.spec.describe() if self.attack else None,
                "strikes": [s.to_dict() for s in self.strikes], "flows": flows}

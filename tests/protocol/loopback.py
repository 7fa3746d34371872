"""The protocol tests' view of the in-memory engine pair (mptcpsec.testing.EnginePair).

`open(n)` connects path n - 1 (host 127.0.0.n); every buffer the client writes is kept in
its link's `c2s` for replay attacks.
"""

from __future__ import annotations

from mptcpsec.protocol.config import ConnectionConfig
from mptcpsec.testing import EnginePair, PairLink

Link = PairLink


class Loopback(EnginePair):
    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config, record=True)

    def open(self, n: int) -> int:
        return self.open_path(n - 1)

    def deliver_raw(self, link: PairLink, data: bytes | bytearray) -> None:
        self.to_server(link, data)

"""The engine alone: a client and a server connection joined in memory, no sockets.

What the protocol code costs per byte on each side, without the kernel and the event loop:
the client engine seals N bytes of application data over its subflows, the server
endpoint routes and opens them, its application reads them, and the acknowledgements go
back. Each side's share is timed separately (CPU of this one process), in the same
pattern as over sockets: 1 MiB writes, 256 KiB reads, acknowledgement timers run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..crypto.keyschedule import Role, Secret
from ..crypto.psk import PskConfig
from ..protocol.config import ConnectionConfig
from ..protocol.connection import Connection
from ..protocol.endpoint import Routed, ServerEndpoint
from .peers import payload_block

READ = 256 * 1024  # what asyncio hands over per socket read


@dataclass(frozen=True)
class EngineResult:
    nbytes: int
    client_seconds: float
    server_seconds: float

    @property
    def client_s_per_GB(self) -> float:
        return self.client_seconds / self.nbytes * 1e9

    @property
    def server_s_per_GB(self) -> float:
        return self.server_seconds / self.nbytes * 1e9


def engine_transfer(nbytes: int, subflows: int = 2, algorithm: str = "aes-128-gcm",
                    max_record: int = 16384, write_size: int = 1 << 20) -> EngineResult:
    """One-way transfer of `nbytes` between two engines; raises if anything is lost."""
    cfg = ConnectionConfig(key_exchange="psk", algorithm=algorithm, max_record=max_record)
    cfg.psk = PskConfig(Role.CLIENT, Secret(b"\x5a" * 32))
    now = 0.0
    client = Connection(cfg, Role.CLIENT, now)
    endpoint = ServerEndpoint(cfg)
    routes: dict[int, int] = {}  # client subflow -> server subflow
    server: Connection | None = None
    for i in range(subflows):
        host = f"127.0.0.{i + 1}"
        endpoint.accept(i, (host, 7000), (host, 40000 + i), now)

    def to_server(csid: int, data: bytes) -> None:
        nonlocal server
        if csid in routes:
            assert server is not None
            server.receive(routes[csid], data, now)
            return
        r = endpoint.receive(csid, data, now)
        if isinstance(r, Routed):
            routes[csid] = r.subflow_id
            server = r.connection

    def pump() -> None:
        for _ in range(100):
            moved = False
            for sid, data in client.data_to_send(now):
                to_server(sid, data)
                moved = True
            if server is not None:
                back = {s: c for c, s in routes.items()}
                for ssid, data in server.data_to_send(now):
                    client.receive(back[ssid], data, now)
                    moved = True
            if not moved:
                return

    client.add_subflow(("127.0.0.1", 40000), ("127.0.0.1", 7000), now)
    pump()
    for i in range(1, subflows):
        host = f"127.0.0.{i + 1}"
        client.add_subflow((host, 40000 + i), (host, 7000), now)
        pump()
    if server is None or not client.established or not server.established:
        raise RuntimeError("the engines did not connect")
    block = memoryview(payload_block(max(write_size, 1 << 20)))
    tc = ts = 0.0
    sent = got = 0
    clock = time.process_time
    for _ in range(1_000_000):  # bounded: every pass moves data or advances the clock
        if got >= nbytes:
            break
        for conn in (client, server):
            for sid in conn.subflows:
                conn.update_path(sid, send_space=1 << 20)
        t0 = clock()
        while client.send_buffer_space > 0 and sent < nbytes:
            k = min(write_size, nbytes - sent)
            client.send(block[:k])
            sent += k
        out = client.data_to_send(now)
        tc += clock() - t0
        for csid, data in out:
            for i in range(0, len(data), READ):
                piece = data[i:i + READ]
                t0 = clock()
                to_server(csid, piece)
                while server.readable:
                    got += len(server.read(1 << 20))
                back = server.data_to_send(now)
                t1 = clock()
                ts += t1 - t0
                for ssid, ack in back:
                    client.receive(next(c for c, s in routes.items() if s == ssid), ack, now)
                tc += clock() - t1
        now += 0.01
        t0 = clock()
        server.handle_timer(now)
        back = server.data_to_send(now)
        t1 = clock()
        ts += t1 - t0
        for ssid, ack in back:
            client.receive(next(c for c, s in routes.items() if s == ssid), ack, now)
        tc += clock() - t1
    if got != nbytes:
        raise RuntimeError(f"the server engine delivered {got} of {nbytes} bytes")
    return EngineResult(nbytes, tc, ts)

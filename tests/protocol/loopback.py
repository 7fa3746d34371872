"""A sans-I/O test bench: a client engine and a server endpoint joined by in-memory pipes.

No sockets and no clock: `now` is whatever the test says, so timing is exact and runs are
repeatable. This is also how experiments can drive the engine over a simulated network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mptcpsec.crypto.keyschedule import Role
from mptcpsec.protocol.config import ConnectionConfig
from mptcpsec.protocol.connection import CloseSubflow, Connection, OpenSubflow
from mptcpsec.protocol.endpoint import Rejected, Routed, ServerEndpoint
from mptcpsec.protocol.events import Event


@dataclass
class Link:
    handle: object
    server_sid: int | None = None
    rejected: str | None = None
    closed: bool = False
    c2s: list[bytes] = field(default_factory=list)  # everything the client sent (for replay)


class Loopback:
    def __init__(self, config: ConnectionConfig) -> None:
        self.now = 0.0
        self.client = Connection(config, Role.CLIENT, self.now)
        self.endpoint = ServerEndpoint(config)
        self.server: Connection | None = None
        self.links: dict[int, Link] = {}
        self.client_events: list[Event] = []
        self.open_requests: list[OpenSubflow] = []  # the client's path manager asked
        self.server_events: list[Event] = []

    def open(self, n: int) -> int:
        host = f"127.0.0.{n}"
        sid = self.client.add_subflow((host, 40000 + n), (host, 7000), self.now)
        handle = object()
        assert self.endpoint.accept(handle, (host, 7000), (host, 40000 + n), self.now)
        self.links[sid] = Link(handle)
        return sid

    def deliver_raw(self, link: Link, data: bytes) -> None:
        if link.server_sid is None:
            r = self.endpoint.receive(link.handle, data, self.now)
            if isinstance(r, Rejected):
                link.rejected = r.reason
            elif isinstance(r, Routed):
                link.server_sid = r.subflow_id
                self.server = r.connection
        else:
            assert self.server is not None
            self.server.receive(link.server_sid, data, self.now)

    def pump(self, rounds: int = 100, hold: set[int] | None = None) -> None:
        """Move bytes both ways until nothing moves (subflows in `hold` are not delivered)."""
        for _ in range(rounds):
            moved = False
            # Sockets drain at once here: every subflow can take a full buffer again.
            for conn in (self.client, self.server):
                if conn is not None:
                    for sid in conn.subflows:
                        conn.update_path(sid, send_space=1 << 20)
            for sid, data in self.client.data_to_send(self.now):
                link = self.links[sid]
                link.c2s.append(data)
                if link.closed or link.rejected or sid in (hold or set()):
                    continue
                self.deliver_raw(link, data)
                moved = True
            if self.server is not None:
                back = {link.server_sid: sid for sid, link in self.links.items()}
                for ssid, data in self.server.data_to_send(self.now):
                    csid = back.get(ssid)
                    if csid is not None and not self.links[csid].closed:
                        self.client.receive(csid, data, self.now)
                        moved = True
            self._commands()
            self._collect()
            if not moved:
                return

    def _commands(self) -> None:
        while (cmd := self.client.next_command()) is not None:
            if isinstance(cmd, CloseSubflow):
                self.links[cmd.subflow_id].closed = True
            else:
                self.open_requests.append(cmd)
        if self.server is not None:
            while (cmd := self.server.next_command()) is not None:
                if isinstance(cmd, CloseSubflow):
                    for sid, link in self.links.items():
                        if link.server_sid == cmd.subflow_id and not link.closed:
                            link.closed = True
                            self.client.transport_closed(sid, self.now, reset=cmd.reset)

    def _collect(self) -> None:
        while (e := self.client.next_event()) is not None:
            self.client_events.append(e)
        if self.server is not None:
            while (e := self.server.next_event()) is not None:
                self.server_events.append(e)

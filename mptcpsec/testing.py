"""Two engines joined in memory: a client `Connection` and a server `ServerEndpoint`.

No sockets, no clock, no files: `now` is whatever the caller says, so runs are exact and
repeatable. The protocol tests, the tamper bench (an attacker between the two on one
path) and the engine benchmark (`python -m mptcpsec.perf.engine`) all drive the engines
through this one harness; experiments can use it to run the protocol over a simulated
network. Path `i` is the address pair 127.0.0.(i+1):(40000+i) -> 127.0.0.(i+1):7000.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .crypto.keyschedule import Role
from .protocol.commands import CloseSubflow, OpenSubflow
from .protocol.config import ConnectionConfig
from .protocol.connection import Connection
from .protocol.endpoint import Rejected, Routed, ServerEndpoint
from .protocol.events import Event

SERVER_PORT = 7000
CLIENT_PORT_BASE = 40000

#: Where the bytes one engine wrote on a link go: (link, data) -> None.
Carrier = Callable[["PairLink", bytes | bytearray], None]


@dataclass
class PairLink:
    """One TCP connection between the engines (a subflow at each end)."""

    path: int
    client_sid: int
    handle: object = field(default_factory=object)  # the server endpoint's socket handle
    server_sid: int | None = None  # set once the endpoint routed the first record
    rejected: str | None = None  # the endpoint's reason, if it refused the socket
    closed: bool = False  # the TCP connection ended (FIN or RST)
    c2s: list[bytes] = field(default_factory=list)  # every buffer the client wrote

    @property
    def open(self) -> bool:
        return not self.closed and self.rejected is None


def path_addresses(path: int) -> tuple[tuple[str, int], tuple[str, int]]:
    """(client address, server address) of path `path`."""
    host = f"127.0.0.{path + 1}"
    return (host, CLIENT_PORT_BASE + path), (host, SERVER_PORT)


class EnginePair:
    """A client engine and a server endpoint; the caller moves bytes, time and commands."""

    def __init__(self, config: ConnectionConfig, now: float = 0.0, record: bool = False) -> None:
        self.now = now
        self.record = record  # keep every buffer the client wrote (PairLink.c2s), for replays
        self.client = Connection(config, Role.CLIENT, now)
        self.endpoint = ServerEndpoint(config)
        self.server: Connection | None = None
        self.links: dict[int, PairLink] = {}  # by client subflow id
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.open_requests: list[OpenSubflow] = []  # the client's path manager asked
        self.rejected: list[str] = []

    # ------------------------------------------------------------------ links

    def open_path(self, path: int) -> int:
        """Connect path `path`: a client subflow and a socket at the endpoint."""
        local, remote = path_addresses(path)
        sid = self.client.add_subflow(local, remote, self.now)
        link = self.make_link(path, sid)
        if not self.endpoint.accept(link.handle, remote, local, self.now):
            raise RuntimeError("the server endpoint refused a socket")
        self.links[sid] = link
        return sid

    def make_link(self, path: int, client_sid: int) -> PairLink:
        """A new link's record (subclasses keep more per link)."""
        return PairLink(path, client_sid)

    def server_link(self, server_sid: int) -> PairLink | None:
        """The link whose server end is subflow `server_sid`."""
        for link in self.links.values():
            if link.server_sid == server_sid:
                return link
        return None

    def to_server(self, link: PairLink, data: bytes | bytearray) -> None:
        """Bytes arrive at the server end of `link` (routed by the endpoint at first)."""
        if link.server_sid is None:
            r = self.endpoint.receive(link.handle, bytes(data), self.now)
            if isinstance(r, Rejected):
                link.rejected = r.reason
                self.rejected.append(r.reason)
            elif isinstance(r, Routed):
                link.server_sid = r.subflow_id
                self.server = r.connection
        elif self.server is not None:
            self.server.receive(link.server_sid, data, self.now)

    def to_client(self, link: PairLink, data: bytes | bytearray) -> None:
        """Bytes arrive at the client end of `link`."""
        if not link.closed:
            self.client.receive(link.client_sid, data, self.now)

    def cut(self, link: PairLink, reset: bool) -> None:
        """The TCP connection of `link` ends (FIN or RST): both engines are told."""
        if link.closed:
            return
        link.closed = True
        self.client.transport_closed(link.client_sid, self.now, reset=reset)
        if link.server_sid is not None and self.server is not None:
            self.server.transport_closed(link.server_sid, self.now, reset=reset)
        elif link.rejected is None:
            self.endpoint.drop(link.handle)

    # ------------------------------------------------------------------ stepping

    def set_paths(self, send_space: int = 1 << 20,
                  rtt: Callable[[PairLink], float | None] | None = None) -> None:
        """What each socket reports: free send space (sockets drain at once) and RTT."""
        for sid in list(self.client.subflows):
            link = self.links.get(sid)
            self.client.update_path(sid, rtt=rtt(link) if rtt and link else None,
                                    send_space=send_space)
        if self.server is not None:
            for link in self.links.values():
                if link.server_sid is not None:
                    self.server.update_path(link.server_sid, rtt=rtt(link) if rtt else None,
                                            send_space=send_space)

    def exchange(self, c2s: Carrier | None = None, s2c: Carrier | None = None,
                 hold: Iterable[int] = ()) -> bool:
        """Each engine's output once, through the carriers (default: straight across);
        links in `hold` (client subflow ids) do not deliver. True if any bytes moved."""
        moved = False
        held = set(hold)
        for sid, data in self.client.data_to_send(self.now):
            link = self.links.get(sid)
            if link is None:
                continue
            if self.record:
                link.c2s.append(bytes(data))
            if not link.open or sid in held:
                continue
            (c2s or self.to_server)(link, data)
            moved = True
        if self.server is not None:
            for ssid, data in self.server.data_to_send(self.now):
                link = self.server_link(ssid)
                if link is not None and not link.closed:
                    (s2c or self.to_client)(link, data)
                    moved = True
        return moved

    def run_commands(self, client_close_cuts: bool = True) -> None:
        """Carry out both engines' commands. A client CloseSubflow ends the link (and tells
        the server when `client_close_cuts`); OpenSubflow requests are recorded."""
        while (cmd := self.client.next_command()) is not None:
            if isinstance(cmd, CloseSubflow):
                link = self.links.get(cmd.subflow_id)
                if link is not None:
                    if client_close_cuts:
                        self.cut(link, cmd.reset)
                    else:
                        link.closed = True
            else:
                self.open_requests.append(cmd)
        if self.server is not None:
            while (cmd := self.server.next_command()) is not None:
                if isinstance(cmd, CloseSubflow):
                    link = self.server_link(cmd.subflow_id)
                    if link is not None:
                        self.cut(link, cmd.reset)

    def collect_events(self) -> bool:
        """Move both engines' events to client_events / server_events; True if any."""
        got = False
        for conn, sink in ((self.client, self.client_events),
                           (self.server, self.server_events)):
            while conn is not None and (e := conn.next_event()) is not None:
                sink.append(e)
                got = True
        return got

    def pump(self, rounds: int = 100, hold: Iterable[int] = ()) -> None:
        """Move bytes both ways until nothing moves (links in `hold` do not deliver)."""
        for _ in range(rounds):
            self.set_paths()
            moved = self.exchange(hold=hold)
            self.run_commands(client_close_cuts=False)
            self.collect_events()
            if not moved:
                return

    def next_deadline(self) -> float | None:
        """The earlier of the two engines' timers."""
        timers = [t for t in (self.client.get_timer(),
                              self.server.get_timer() if self.server else None)
                  if t is not None]
        return min(timers) if timers else None

    def advance(self, now: float) -> None:
        """Move the clock to `now` and run both engines' timers."""
        self.now = now
        self.client.handle_timer(now)
        if self.server is not None:
            self.server.handle_timer(now)

    @property
    def done(self) -> bool:
        """Both engines ended."""
        return self.client.ended and (self.server is None or self.server.ended)

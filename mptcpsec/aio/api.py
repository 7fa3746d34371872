"""`connect()` and `serve()`: secure multipath connections on real TCP sockets.

```python
stream = await connect([Path(("127.0.0.1", 7000)), Path(("127.0.0.2", 7000))], config)
stream.write(b"hello"); await stream.drain(); reply = await stream.read(5)
```
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..crypto.keyschedule import Role
from ..protocol.config import ConfigError, ConnectionConfig
from ..protocol.connection import Connection, ConnectionError_, OpenSubflow
from ..protocol.endpoint import Rejected, Routed, ServerEndpoint
from ..protocol.events import ConnectionTerminated, Event, HandshakeCompleted, TraceWriter
from ..wire.pcap import RecordSink
from .driver import ConnectionDriver, RecordTap, SubflowProtocol
from .keylog import open_key_log, with_key_log

Address = tuple[str, int]
#: Pending TCP connections per listening socket (asyncio's default of 100 is what a flood
#: of connection attempts would meet first).
LISTEN_BACKLOG = 1024
#: Seconds a pending socket may outlive its deadline, so that one sweep resets many.
SWEEP_SLACK = 0.05


@dataclass(frozen=True)
class Path:
    """One subflow to open: the server address, and the local address to bind (optional)."""

    remote: Address
    local: str | None = None
    backup: bool = False


class MptcpsecStream:
    """The application's view of a connection: an ordered, reliable, secure byte stream."""

    def __init__(self, driver: ConnectionDriver) -> None:
        self._driver = driver
        self._add_path: Callable[[Path], Awaitable[int | None]] | None = None
        self._joining: set[asyncio.Task[int | None]] = set()

    async def add_path(self, path: Path) -> int | None:
        """Client: open one more subflow over `path` (a join); its id, or None if it failed.

        The join completes in the background; watch `events` for `subflow_established`.
        """
        if self._add_path is None:
            raise ConnectionError_("only the connecting side opens subflows")
        return await self._add_path(path)

    @property
    def connection(self) -> Connection:
        return self._driver.conn

    @property
    def events(self) -> list[Event]:
        return self._driver.events

    @property
    def error(self) -> str | None:
        return self._driver.conn.error

    def subflow_stats(self) -> list[dict[str, object]]:
        return self._driver.conn.subflow_stats()

    def add_event_listener(self, fn: Callable[[Event], None]) -> None:
        self._driver.add_listener(fn)

    def _raise_if_failed(self) -> None:
        if self._driver.conn.error is not None:
            raise ConnectionError_(self._driver.conn.error)

    async def read(self, n: int = -1) -> bytes:
        """Up to n bytes (n < 0: everything until EOF); b"" at EOF."""
        conn = self._driver.conn
        if n < 0:
            chunks: list[bytes] = []
            while True:
                data = await self.read(1 << 20)
                if not data:
                    return b"".join(chunks)
                chunks.append(data)
        while True:
            if conn.readable:
                data = conn.read(n)
                self._driver.flush()
                return data
            if conn.at_eof:
                conn.read(0)
                self._driver.flush()
                return b""
            self._raise_if_failed()
            if conn.ended:
                return b""
            await self._driver.wait_change()

    async def readexactly(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            data = await self.read(n - len(buf))
            if not data:
                raise asyncio.IncompleteReadError(bytes(buf), n)
            buf += data
        return bytes(buf)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._raise_if_failed()
        self._driver.conn.send(data)
        self._driver.flush()

    async def drain(self) -> None:
        """Wait until the connection's send buffer has room again."""
        conn = self._driver.conn
        while conn.send_buffer_space <= 0:
            self._raise_if_failed()
            if conn.ended:
                raise ConnectionError_("connection closed")
            await self._driver.wait_change()
        self._raise_if_failed()

    def close(self) -> None:
        """Send DATA_FIN after the last byte written; the connection closes when both did."""
        self._driver.conn.close()
        self._driver.flush()

    def abort(self, reason: str = "aborted by the application") -> None:
        self._driver.conn.abort(reason)
        self._driver.flush()
        self._driver.shutdown()

    def shutdown(self) -> None:
        """Reset every socket now, sending nothing more (the connection ended, or a test or
        tool stops it abruptly: the peer sees a path failure, papers/SPEC.md section 10.5)."""
        self._driver.shutdown()

    async def wait_closed(self, timeout: float | None = 30.0) -> None:
        try:
            await asyncio.wait_for(self._driver.closed.wait(), timeout)
        finally:
            self._driver.shutdown()
        self._raise_if_failed()

    def summary(self) -> dict[str, Any]:
        return self._driver.stats()


async def _open_tcp(loop: asyncio.AbstractEventLoop, path: Path | OpenSubflow,
                    local_host: str | None) -> tuple[SubflowProtocol, Address, Address]:
    host, port = path.remote
    local_addr = (local_host, 0) if local_host else None
    _, proto = await loop.create_connection(SubflowProtocol, host, port, local_addr=local_addr)
    if proto.transport is None:
        raise ConnectionError_(f"no transport for the subflow to {host}:{port}")
    sock = proto.transport.get_extra_info("sockname")
    peer = proto.transport.get_extra_info("peername")
    return proto, (sock[0], sock[1]), (peer[0], peer[1])


def with_server_name(config: ConnectionConfig, host: str) -> ConnectionConfig:
    """``config`` whose tls client, when it verifies with a CA and names no server, checks
    the certificate against ``host`` (the first path's server, SPEC section 7.2): a CA alone
    would accept any certificate it signed."""
    tls = config.tls
    if config.key_exchange != "tls" or tls is None or tls.server_name or not tls.ca_pem \
            or tls.pin_sha256:
        return config
    return replace(config, tls=replace(tls, server_name=host))


async def connect(paths: Sequence[Path], config: ConnectionConfig | None = None,
                  trace: TraceWriter | None = None, timeout: float | None = None,
                  join_timeout: float = 5.0, sink: RecordSink | None = None) -> MptcpsecStream:
    """Open a connection over `paths`; returns once the key exchange is done.

    The first path (the first two for split-path) carry the key exchange (its key log, if
    the config sets none, is ``$SSLKEYLOGFILE`` when set); the others join
    afterwards. Addresses the server announces are joined from every local address in use
    unless `config.join_announced` is False. `sink` (`mptcpsec.aio.capture.open_sink`) gets
    every record on the wire, for a pcap or a records trace; capture subflow ids are the
    connection's subflow ids.
    """
    if not paths:
        raise ConfigError("give at least one path")
    config = with_server_name(config or ConnectionConfig(), paths[0].remote[0])
    config = with_key_log(config, open_key_log())
    config.validate()
    loop = asyncio.get_running_loop()
    conn = Connection(config, Role.CLIENT, loop.time())
    if len(paths) < conn.kx_paths:
        raise ConfigError(f"key exchange {config.key_exchange} needs {conn.kx_paths} paths, "
                          f"got {len(paths)}")
    joining: set[asyncio.Task[int | None]] = set()
    local_hosts: list[str | None] = []

    def open_join(cmd: OpenSubflow) -> None:
        present = {(p.transport.get_extra_info("sockname")[0],
                    p.transport.get_extra_info("peername")[0])
                   for p in driver.protocols.values()
                   if p.transport is not None and not p.transport.is_closing()}
        for lh in dict.fromkeys(local_hosts):
            if lh is not None and (lh, cmd.remote[0]) in present:
                continue
            task = loop.create_task(_join(cmd, lh))
            joining.add(task)
            task.add_done_callback(joining.discard)

    async def _join(cmd: OpenSubflow | Path, lh: str | None) -> int | None:
        try:
            proto, local, remote = await asyncio.wait_for(_open_tcp(loop, cmd, lh), join_timeout)
        except (OSError, asyncio.TimeoutError):
            return None
        try:
            sid = conn.add_subflow(local, remote, loop.time(), backup=cmd.backup,
                                   address_id=getattr(cmd, "address_id", 0))
        except ConnectionError_:
            if proto.transport is not None:
                proto.transport.abort()
            return None
        driver.attach(sid, proto)
        driver.flush()
        return sid

    driver = ConnectionDriver(conn, loop, trace, opener=open_join,
                              tap=RecordTap(sink) if sink is not None else None)
    try:
        for path in paths[:conn.kx_paths]:
            proto, local, remote = await _open_tcp(loop, path, path.local)
            local_hosts.append(local[0])
            sid = conn.add_subflow(local, remote, loop.time(), backup=path.backup)
            driver.attach(sid, proto)
        driver.flush()
        limit = timeout if timeout is not None else config.handshake_timeout + 1

        async def handshake() -> None:
            while not conn.established and not conn.ended:
                await driver.wait_change()

        await asyncio.wait_for(handshake(), limit)
    except BaseException:
        driver.shutdown()
        raise
    if not conn.established:
        driver.shutdown()
        raise ConnectionError_(conn.error or "handshake did not complete")
    for path in paths[conn.kx_paths:]:
        local_hosts.append(path.local)
        await _join(path, path.local)
    stream = MptcpsecStream(driver)
    stream._joining = joining  # joins in progress stay referenced

    async def add_path(path: Path) -> int | None:
        if path.local is not None and path.local not in local_hosts:
            local_hosts.append(path.local)
        return await _join(path, path.local)

    stream._add_path = add_path
    return stream


Handler = Callable[[MptcpsecStream], Awaitable[None]]


class MptcpsecServer:
    """Listening sockets on several addresses, an endpoint that routes subflows, handlers."""

    def __init__(self, handler: Handler, config: ConnectionConfig,
                 trace: TraceWriter | None = None, sink: RecordSink | None = None) -> None:
        self.handler = handler
        self.sink = sink
        self._conn_count = 0
        self.config = config
        self.trace = trace
        self.endpoint = ServerEndpoint(config)
        self.drivers: dict[int, ConnectionDriver] = {}
        self.finished: list[MptcpsecStream] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._sweep_timer: asyncio.TimerHandle | None = None
        self.addresses: list[Address] = []
        self._closed = False
        #: Called with (remote address, reason) for every socket refused before it reached
        #: a connection (bad first record, refused join, pending table full): for logs.
        self.on_refused: Callable[[Address | None, str], None] | None = None
        #: Called with (connection number from 1, first remote address, event) for every
        #: event of every connection, before its handshake completes too: for logs.
        self.on_connection_event: Callable[[int, Address | None, Event], None] | None = None

    def _refused(self, proto: SubflowProtocol, reason: str) -> None:
        if self.on_refused is not None:
            self.on_refused(proto.remote, reason)

    async def start(self, listen: Sequence[Address]) -> None:
        try:
            for host, port in listen:
                srv = await self._loop.create_server(
                    lambda: SubflowProtocol(on_connected=self._accepted), host, port,
                    backlog=LISTEN_BACKLOG)
                self._servers.append(srv)
                sock = srv.sockets[0].getsockname()
                self.addresses.append((sock[0], sock[1]))
        except OSError:
            for srv in self._servers:  # all addresses or none
                srv.close()
            self._servers.clear()
            raise

    def _accepted(self, proto: SubflowProtocol) -> None:
        if proto.transport is None:
            return
        local = proto.transport.get_extra_info("sockname")
        remote = proto.transport.get_extra_info("peername")
        proto.remote = (remote[0], remote[1])
        accepted = self.endpoint.accept(proto, (local[0], local[1]), (remote[0], remote[1]),
                                        self._loop.time())
        for old in self.endpoint.pop_evicted():
            if isinstance(old, SubflowProtocol) and old.transport is not None:
                self._refused(old, "evicted: too many sockets without a first record")
                old.transport.abort()
        if not accepted:
            self._refused(proto, "too many sockets without a first record")
            proto.transport.abort()
            return
        proto.on_data = self._pending_data
        proto.on_lost = lambda p, exc: self.endpoint.drop(p)
        self._arm_sweep()

    def _pending_data(self, proto: SubflowProtocol, data: bytes) -> None:
        if self.sink is not None:
            proto.prefix += data  # bounded by the endpoint: one first record
        self._route(proto, self.endpoint.receive(proto, data, self._loop.time()))
        self._arm_sweep()

    def _route(self, proto: SubflowProtocol, result: Routed | Rejected | None) -> None:
        if result is None:
            return
        if isinstance(result, Rejected):
            self._refused(proto, result.reason)
            if proto.transport is not None:
                proto.transport.abort()
            return
        if not isinstance(result, Routed):
            raise TypeError(f"endpoint returned {type(result).__name__}")
        conn = result.connection
        driver = self.drivers.get(id(conn))
        if driver is None:
            tap = None
            if self.sink is not None:
                # Capture subflow ids: 1000 per connection, so connections do not collide.
                tap = RecordTap(self.sink, id_base=1000 * self._conn_count)
            self._conn_count += 1
            driver = ConnectionDriver(conn, self._loop, self.trace, tap=tap)
            self.drivers[id(conn)] = driver
            driver.add_listener(functools.partial(self._on_event, driver))
            if self.on_connection_event is not None:
                index, remote = self._conn_count, proto.remote
                hook = self.on_connection_event
                driver.add_listener(lambda ev: hook(index, remote, ev))
        driver.attach(result.subflow_id, proto, bytes(proto.prefix))
        proto.prefix.clear()
        driver.flush()

    def _on_event(self, driver: ConnectionDriver, event: Event) -> None:
        if isinstance(event, HandshakeCompleted):
            task = self._loop.create_task(self._run_handler(driver))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self._loop.call_soon(self._retry_parked)
        elif isinstance(event, ConnectionTerminated):
            if event.error is not None:
                self._loop.call_soon(driver.shutdown)
            self._loop.call_soon(self.drivers.pop, id(driver.conn), None)

    def _retry_parked(self) -> None:
        """JOINs that arrived before their connection's handshake completed."""
        for proto, result in self.endpoint.retry_parked(self._loop.time()):
            if isinstance(proto, SubflowProtocol):
                self._route(proto, result)
        self._arm_sweep()

    async def _run_handler(self, driver: ConnectionDriver) -> None:
        stream = MptcpsecStream(driver)
        try:
            await self.handler(stream)
            if not driver.conn.ended:
                stream.close()
                with contextlib.suppress(asyncio.TimeoutError, ConnectionError_):
                    await stream.wait_closed(timeout=30)
        except ConnectionError_:
            pass
        finally:
            driver.shutdown()
            self.finished.append(stream)
            del self.finished[:-1000]

    @property
    def sweep_at(self) -> float | None:
        """Loop time of the next reset of overdue first records; None when none is due."""
        return None if self._sweep_timer is None else self._sweep_timer.when()

    def _arm_sweep(self) -> None:
        """One timer at the endpoint's next deadline (a silent or parked first record).

        A new socket's deadline is never earlier than an armed timer's (every socket gets
        the same timeout), so an armed timer stays; the sweep re-arms itself. Deadlines
        within SWEEP_SLACK of each other share one wake-up, so a flood of sockets costs a
        sweep per SWEEP_SLACK, not one per socket.
        """
        if self._sweep_timer is not None or self._closed:
            return
        deadline = self.endpoint.next_deadline()
        if deadline is None:
            return
        at = max(deadline, self._loop.time() + SWEEP_SLACK)
        self._sweep_timer = self._loop.call_at(at, self._sweep)

    def _sweep(self) -> None:
        """Reset the sockets whose first record is overdue (papers/SPEC.md section 10)."""
        self._sweep_timer = None
        for proto in self.endpoint.expired(self._loop.time()):
            if isinstance(proto, SubflowProtocol) and proto.transport is not None:
                self._refused(proto, "no first record before the deadline")
                proto.transport.abort()
        self._arm_sweep()

    def close(self) -> None:
        self._closed = True
        for srv in self._servers:
            srv.close()
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        for driver in list(self.drivers.values()):
            driver.shutdown()
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        for srv in self._servers:
            await srv.wait_closed()

    async def __aenter__(self) -> MptcpsecServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def serve(handler: Handler, listen: Sequence[Address],
                config: ConnectionConfig | None = None,
                trace: TraceWriter | None = None,
                sink: RecordSink | None = None) -> MptcpsecServer:
    """Listen on every address in `listen` and run `handler(stream)` per connection.

    `sink` captures every record (capture subflow id = 1000 x connection index + id).
    A key exchange without a key log writes to ``$SSLKEYLOGFILE`` when it is set (as
    `connect` does; papers/SPEC.md section 7.5).
    """
    config = with_key_log(config or ConnectionConfig(), open_key_log())
    server = MptcpsecServer(handler, config, trace, sink)
    await server.start(listen)
    return server

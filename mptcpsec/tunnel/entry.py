"""The converter's entry: application TCP connections in, one mptcpsec stream each.

Listeners (SPEC §Converter): SOCKS5 (`--socks`), `ssh -L`-style forwards (`--forward`),
transparent redirect (`--transparent`, destination from SO_ORIGINAL_DST) and one
connection on stdin/stdout (`--stdio`). Each application connection gets its own mptcpsec
connection (independent streams cannot block each other); with `pool > 0` that connection
is taken from a few whose key exchange is already done, which hides the handshake from the
application's first byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..aio.api import MptcpsecStream, Path, connect
from ..errors import MptcpsecError
from ..protocol.config import ConnectionConfig
from ..protocol.events import Event
from .relay import relay, reset_writer
from .request import STATUS_LEN, ConnectRequest, RequestError, Status, encode_request, parse_status
from .socks5 import Socks5Server

Address = tuple[str, int]
Log = Callable[[str], None]
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST is also 80


@dataclass
class TunnelOptions:
    paths: Sequence[Path]
    config: ConnectionConfig
    #: Ready connections kept with their key exchange done (0: connect on demand).
    pool: int = 0
    #: A pooled connection older than this is replaced (the gateway drops idle ones).
    pool_max_age: float = 30.0
    connect_timeout: float = 10.0
    idle_timeout: float | None = None
    socks_users: dict[str, str] | None = None
    #: Forwards, transparent and stdio: relay the client's bytes right behind the request
    #: instead of waiting a round trip for the status (a refusal becomes a reset).
    pipeline: bool = True
    #: SOCKS: answer "succeeded" at once and pipeline too (saves a round trip; a refusal
    #: then reaches the client as a reset instead of the matching SOCKS error).
    socks_early_reply: bool = False
    #: Open the paths beyond the key exchange's once the first bytes came back (or after
    #: `join_delay` seconds), not at once (EXPERIMENTS section 7).
    join_after_first_byte: bool = True
    join_delay: float = 1.0
    #: A pooled connection taken is replaced once the application's first answer came
    #: back (or after `join_delay`): a key exchange run at once competes for the CPU with
    #: the request it was taken for (EXPERIMENTS section 7).
    refill_after_first_byte: bool = True


@dataclass
class TunnelConnection:
    number: int
    source: str
    destination: str
    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    received: int = 0
    state: str = "connecting"
    stream: MptcpsecStream | None = None
    writer: asyncio.StreamWriter | None = None


def refused_by_gateway(error: str) -> bool:
    """Whether a connection error means the gateway refused our credentials.

    With TLS 1.3 our side of the handshake ends before the gateway has checked our
    certificate; its refusal then arrives as a late handshake record on an established
    subflow.
    """
    return ("key exchange failed" in error or "peer aborted" in error
            or "HANDSHAKE record" in error)


def original_destination(sock: socket.socket) -> Address:
    """Where an iptables/nftables REDIRECT'ed connection was going (IPv4 and IPv6)."""
    if sock.family == socket.AF_INET6:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
        port = struct.unpack_from("!H", raw, 2)[0]
        ip = ipaddress.IPv6Address(raw[8:24])
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped), port
        return str(ip), port
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack_from("!H", raw, 2)[0]
    return str(ipaddress.IPv4Address(raw[4:8])), port


class Tunnel:
    """Connects application connections to a gateway; also the listeners' home."""

    def __init__(self, options: TunnelOptions, log: Log | None = None,
                 on_event: Callable[[TunnelConnection, Event], None] | None = None) -> None:
        self.options = options
        self._log = log or (lambda text: None)
        self._on_event = on_event
        self.active: dict[int, TunnelConnection] = {}
        self.totals: dict[str, int] = {"connections": 0, "sent": 0, "received": 0,
                                       "poisoned_subflows": 0, "pool_hits": 0}
        self.refused: dict[str, int] = {}
        self._n = 0
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._pool: list[tuple[float, MptcpsecStream]] = []
        self._filling = 0
        self._pool_failures = 0
        self._maintainer: asyncio.Task[None] | None = None
        self.addresses: list[Address] = []

    # ---------------------------------------------------------------- mptcpsec side

    async def _connect(self) -> MptcpsecStream:
        paths = list(self.options.paths)
        if self.options.join_after_first_byte:
            # Only the paths the key exchange needs now; the others join once the first
            # answer is back (`_join_rest`), so the request, the status and the first
            # response bytes are not sent over a subflow whose RTT nobody measured yet.
            need = 2 if self.options.config.key_exchange == "split-path" else 1
            paths = paths[:need]
        return await asyncio.wait_for(connect(paths, self.options.config),
                                      self.options.connect_timeout)

    def _join_rest(self, stream: MptcpsecStream) -> None:
        if not self.options.join_after_first_byte or getattr(stream, "_joined", False):
            return
        stream._joined = True  # type: ignore[attr-defined]
        need = 2 if self.options.config.key_exchange == "split-path" else 1
        for path in self.options.paths[need:]:
            self._spawn(self._add_path(stream, path))

    async def _add_path(self, stream: MptcpsecStream, path: Path) -> None:
        if stream.connection.ended:
            return
        with contextlib.suppress(MptcpsecError, OSError):
            await stream.add_path(path)

    def _refill(self) -> None:
        want = self.options.pool - len(self._pool) - self._filling
        for _ in range(max(0, want)):
            self._filling += 1
            self._spawn(self._fill_one())

    async def _fill_one(self) -> None:
        try:
            stream = await self._connect()
        except (MptcpsecError, OSError, asyncio.TimeoutError) as exc:
            self._pool_failures += 1
            self._log(f"pool: cannot connect to the gateway: {exc or 'timed out'}")
            return
        finally:
            self._filling -= 1
        self._pool_failures = 0
        self._pool.append((time.monotonic(), stream))

    async def _maintain(self) -> None:
        """Replace pooled connections before they age out, so the pool stays warm while
        idle; after failed attempts, wait longer (up to a minute) before the next."""
        while True:
            wait = min(60.0, 2.0 * (2 ** min(self._pool_failures, 5)))
            await asyncio.sleep(min(wait, self.options.pool_max_age / 3)
                                if not self._pool_failures else wait)
            now = time.monotonic()
            for item in [i for i in self._pool if now - i[0] > self.options.pool_max_age
                         or i[1].connection.ended]:
                self._pool.remove(item)
                item[1].abort("pooled connection too old")
            self._refill()

    async def _take(self) -> MptcpsecStream:
        now = time.monotonic()
        while self._pool:
            born, stream = self._pool.pop(0)
            conn = stream.connection
            if conn.ended or conn.error or now - born > self.options.pool_max_age:
                stream.abort("pooled connection too old")
                continue
            self.totals["pool_hits"] += 1
            if not self._pool_failures:
                if self.options.refill_after_first_byte:
                    # `carry` refills at the first answer; this covers `open()` users.
                    asyncio.get_running_loop().call_later(self.options.join_delay,
                                                          self._refill)
                else:
                    self._refill()
            return stream
        if self.options.pool and not self._pool_failures:
            self._refill()
        return await self._connect()

    async def _stream(self) -> tuple[MptcpsecStream | None, Status, str]:
        """A connection to the gateway (pooled or new), or why there is none."""
        try:
            return await self._take(), Status.SUCCESS, ""
        except MptcpsecError as exc:
            text = str(exc)
            if refused_by_gateway(text):
                return None, Status.NOT_ALLOWED, f"gateway refused us: {text}"
            return None, Status.GENERAL_FAILURE, f"gateway: {text}"
        except (OSError, asyncio.TimeoutError) as exc:
            return None, Status.GENERAL_FAILURE, f"gateway unreachable: {exc or 'timed out'}"

    async def _status(self, stream: MptcpsecStream) -> tuple[Status, str]:
        """The gateway's answer to the request written on `stream`."""
        try:
            raw = await asyncio.wait_for(stream.readexactly(STATUS_LEN),
                                         self.options.connect_timeout + 5)
            status = parse_status(raw)
        except RequestError as exc:
            stream.abort(str(exc))
            return Status.GENERAL_FAILURE, str(exc)
        except (MptcpsecError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
            error = stream.error or ""
            stream.abort("no status")
            if refused_by_gateway(error):
                return Status.NOT_ALLOWED, f"gateway refused us: {error}"
            return Status.GENERAL_FAILURE, f"no status from the gateway ({error or exc!r})"
        if status is not Status.SUCCESS:
            with contextlib.suppress(MptcpsecError):
                stream.close()
            self._spawn(self._finish(stream))
        return status, status.label

    async def open(self, req: ConnectRequest) -> tuple[Status, MptcpsecStream | None, str]:
        """A stream to `req` through the gateway, with its status (and a reason if refused)."""
        stream, status, why = await self._stream()
        if stream is None:
            return status, None, why
        try:
            stream.write(encode_request(req))
        except (MptcpsecError, RequestError) as exc:
            stream.abort(str(exc))
            return Status.GENERAL_FAILURE, None, str(exc)
        status, why = await self._status(stream)
        return status, (stream if status is Status.SUCCESS else None), why

    async def _finish(self, stream: MptcpsecStream) -> None:
        with contextlib.suppress(MptcpsecError, asyncio.TimeoutError):
            await stream.wait_closed(5)

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- one application connection

    def _refused(self, tc: TunnelConnection, status: Status, why: str) -> None:
        self.refused[status.label] = self.refused.get(status.label, 0) + 1
        tc.state = f"refused: {why}"
        self._log(f"#{tc.number} {tc.source} -> {tc.destination}: {status.label} ({why})")

    async def carry(self, source: str, req: ConnectRequest, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter,
                    reply: Callable[[Status], bytes] | None = None,
                    early: bytes = b"", pipeline: bool = False) -> Status:
        """Open `req` and relay; `reply(status)` gives the bytes to answer the client with.

        `pipeline`: do not wait for the gateway's status before relaying (the client's first
        bytes follow the request, as RFC 8803 carries data with its Connect TLV); a refusal
        then reaches the client as a reset, and a SOCKS client has been told "succeeded".
        """
        self._n += 1
        tc = TunnelConnection(self._n, source, str(req), writer=writer)
        self.active[tc.number] = tc
        self.totals["connections"] += 1
        try:
            stream, status, why = await self._stream()
            if stream is not None:
                try:
                    stream.write(encode_request(req))
                except (MptcpsecError, RequestError) as exc:
                    stream.abort(str(exc))
                    stream, status, why = None, Status.GENERAL_FAILURE, str(exc)
            if stream is not None and not pipeline:
                status, why = await self._status(stream)
                if status is not Status.SUCCESS:
                    stream = None
            if stream is None:
                self._refused(tc, status, why)
                if reply is not None:
                    with contextlib.suppress(OSError):
                        writer.write(reply(status))
                        await writer.drain()
                writer.close()
                return status
            tc.stream = stream
            tc.state = "relaying"
            outcome = {"status": Status.SUCCESS}

            async def check_status() -> bool:
                st, reason = await self._status(stream)
                outcome["status"] = st
                if st is not Status.SUCCESS:
                    self._refused(tc, st, reason)
                return st is Status.SUCCESS

            def on_event(ev: Event) -> None:
                from ..protocol.events import SubflowPoisoned

                if isinstance(ev, SubflowPoisoned) and not ev.reported_by_peer:
                    self.totals["poisoned_subflows"] += 1
                    self._log(f"#{tc.number} subflow {ev.subflow_id} POISONED ({ev.reason}: "
                              f"{ev.detail})")
                if self._on_event is not None:
                    self._on_event(tc, ev)

            stream.add_event_listener(on_event)
            if reply is not None:
                writer.write(reply(Status.SUCCESS))
            if early:
                stream.write(early)

            def first_answer() -> None:
                # The request's round trip is over: now open the other paths and replace
                # the pooled connection, off the path of the first bytes.
                self._join_rest(stream)
                if self.options.pool and not self._pool_failures:
                    self._refill()

            loop = asyncio.get_running_loop()
            timer = loop.call_later(self.options.join_delay, first_answer)

            def count(to_stream: int, from_stream: int) -> None:
                if from_stream and not tc.received:
                    timer.cancel()
                    first_answer()
                tc.sent += to_stream
                tc.received += from_stream
                self.totals["sent"] += to_stream
                self.totals["received"] += from_stream

            try:
                res = await relay(stream, reader, writer, self.options.idle_timeout,
                                  on_bytes=count,
                                  before_down=check_status if pipeline else None)
            finally:
                timer.cancel()
            if outcome["status"] is not Status.SUCCESS:
                return outcome["status"]
            tc.state = "closed" if not res.error else f"reset: {res.error}"
            self._log(f"#{tc.number} {source} -> {req}: {res.to_stream:,} B out, "
                      f"{res.from_stream:,} B back" + (f", {res.error}" if res.error else ""))
            if not res.error:
                self._spawn(self._finish(stream))
            return Status.SUCCESS
        finally:
            self.active.pop(tc.number, None)

    # ---------------------------------------------------------------- listeners

    async def _listen(self, addr: Address,
                      handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]
                      ) -> Address:
        srv = await asyncio.start_server(handler, addr[0], addr[1], backlog=1024)  # type: ignore[arg-type]
        self._servers.append(srv)
        name = srv.sockets[0].getsockname()
        self.addresses.append((name[0], name[1]))
        return name[0], name[1]

    @staticmethod
    def _peer(writer: asyncio.StreamWriter) -> str:
        peer = writer.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    async def socks(self, addr: Address) -> Address:
        """A SOCKS5 listener (RFC 1928; RFC 1929 if `socks_users`)."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            neg = Socks5Server(self.options.socks_users)
            source = self._peer(writer)
            try:
                while True:
                    data = await asyncio.wait_for(reader.read(4096), 30)
                    if not data:
                        writer.close()
                        return
                    step = neg.receive(data)
                    if step.send:
                        writer.write(step.send)
                    if step.close:
                        self.refused["socks: " + (step.error or "closed")] = (
                            self.refused.get("socks: " + (step.error or "closed"), 0) + 1)
                        self._log(f"socks {source}: {step.error}")
                        await writer.drain()
                        writer.close()
                        return
                    if step.request is not None:
                        break
                await self.carry(source, step.request, reader, writer, reply=neg.reply,
                                 early=neg.leftover(), pipeline=self.options.socks_early_reply)
            except (OSError, asyncio.TimeoutError):
                writer.close()

        return await self._listen(addr, handle)

    async def forward(self, addr: Address, dest: Address) -> Address:
        """`ssh -L`: every connection to `addr` goes to `dest` (resolved by the gateway)."""
        req = ConnectRequest(*dest)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            status = await self.carry(self._peer(writer), req, reader, writer,
                                      pipeline=self.options.pipeline)
            if status is not Status.SUCCESS:
                reset_writer(writer)

        return await self._listen(addr, handle)

    async def transparent(self, addr: Address) -> Address:
        """Connections redirected here by REDIRECT; the destination is SO_ORIGINAL_DST."""
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            try:
                dest = original_destination(sock)
            except OSError as exc:
                self._log(f"transparent {self._peer(writer)}: no original destination ({exc})")
                reset_writer(writer)
                return
            here = sock.getsockname()
            if dest == (str(ipaddress.ip_address(here[0])), here[1]):
                self._log(f"transparent {self._peer(writer)}: not redirected (connected to the "
                          "listener itself); closed")
                reset_writer(writer)
                return
            status = await self.carry(self._peer(writer), ConnectRequest(*dest), reader, writer,
                                      pipeline=self.options.pipeline)
            if status is not Status.SUCCESS:
                reset_writer(writer)

        return await self._listen(addr, handle)

    async def stdio(self, dest: Address) -> Status:
        """One connection on stdin/stdout (ssh's ProxyCommand)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, sys.stdout)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return await self.carry("stdio", ConnectRequest(*dest), reader, writer,
                                pipeline=self.options.pipeline)

    # ---------------------------------------------------------------- lifetime

    def start_pool(self) -> None:
        if self.options.pool:
            self._refill()
            self._maintainer = asyncio.get_running_loop().create_task(self._maintain())

    async def close(self, grace: float = 3.0) -> None:
        """Stop listening; end every connection with DATA_FIN, then whatever is left."""
        if self._maintainer is not None:
            self._maintainer.cancel()
        for srv in self._servers:
            srv.close()
        for tc in list(self.active.values()):
            if tc.stream is not None:
                with contextlib.suppress(MptcpsecError):
                    tc.stream.close()
            if tc.writer is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    if tc.writer.can_write_eof():
                        tc.writer.write_eof()
        deadline = time.monotonic() + grace

        def open_streams() -> list[TunnelConnection]:
            return [tc for tc in self.active.values()
                    if tc.stream is not None and not tc.stream.connection.ended]

        while open_streams() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for tc in list(self.active.values()):
            if tc.stream is not None and not tc.stream.connection.ended:
                tc.stream.abort("tunnel stopped")
            if tc.writer is not None:
                tc.writer.close()
        deadline = time.monotonic() + 1.0
        while self.active and time.monotonic() < deadline:  # relays see the ends and return
            await asyncio.sleep(0.02)
        for _, stream in self._pool:
            with contextlib.suppress(MptcpsecError):
                stream.close()
            self._spawn(self._finish(stream))
        self._pool.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for t in list(self._tasks):
            t.cancel()

    def summary(self) -> dict[str, object]:
        return {**self.totals, "active": len(self.active), "refused": dict(self.refused),
                "refused_total": sum(self.refused.values())}

"""The converter's exit: authenticated mptcpsec connections in, plain TCP out.

Per connection (SPEC §Converter, gateway rules): check the bounds, read one CONNECT request
(bounded in size and time), resolve it, keep only the addresses an `--allow` rule lets
through, connect with a timeout, answer with a status, then relay with half-close. Every
refusal is logged with the client identity and reason and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..aio.api import MptcpsecStream
from ..errors import MptcpsecError, Refused as Refused
from ..protocol.events import ConnectionTerminated, Event, SubflowPoisoned
from .policy import Counters, Limits, Policy
from .relay import relay
from .request import (
    MAX_REQUEST_LEN,
    ConnectRequest,
    RequestError,
    Status,
    encode_status,
    parse_request,
)

Log = Callable[[str], None]


def status_for_oserror(exc: BaseException) -> Status:
    """The status a failed TCP connect reports (SPEC §Converter, status codes)."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return Status.TIMEOUT
    if isinstance(exc, ConnectionRefusedError):
        return Status.CONNECTION_REFUSED
    code = getattr(exc, "errno", None)
    return {
        errno.ECONNREFUSED: Status.CONNECTION_REFUSED,
        errno.ENETUNREACH: Status.NETWORK_UNREACHABLE,
        errno.EHOSTUNREACH: Status.HOST_UNREACHABLE,
        errno.EADDRNOTAVAIL: Status.HOST_UNREACHABLE,
        errno.ETIMEDOUT: Status.TIMEOUT,
        errno.EMFILE: Status.RESOURCE_EXHAUSTED,
        errno.ENFILE: Status.RESOURCE_EXHAUSTED,
        errno.ENOBUFS: Status.RESOURCE_EXHAUSTED,
        errno.ENOMEM: Status.RESOURCE_EXHAUSTED,
    }.get(code, Status.GENERAL_FAILURE)  # type: ignore[arg-type]


@dataclass
class GatewayConnection:
    """One client connection as the live view shows it."""

    number: int
    client: str
    destination: str = ""
    started: float = field(default_factory=time.monotonic)
    to_destination: int = 0
    to_client: int = 0
    state: str = "request"
    stream: MptcpsecStream | None = None


class Gateway:
    """The handler `aio.api.serve` runs for every authenticated connection."""

    def __init__(self, policy: Policy, limits: Limits | None = None,
                 log: Log | None = None,
                 on_event: Callable[[GatewayConnection, Event], None] | None = None) -> None:
        if not policy.rules:
            raise MptcpsecError("a gateway needs at least one --allow rule")
        self.policy = policy
        self.limits = limits or Limits()
        self.limits.validate()
        self.counters = Counters()
        self.active: dict[int, GatewayConnection] = {}
        self.poisoned = 0
        self._log = log or (lambda text: None)
        self._on_event = on_event
        self._n = 0

    # ---------------------------------------------------------------- key exchange refusals

    def trace_write(self, event: Event) -> None:
        """Connection events from the server (as a trace): counts refused key exchanges."""
        if isinstance(event, ConnectionTerminated) and event.error and (
                event.error.startswith(("key exchange", "handshake"))):
            self.counters.refuse("authentication failed")
            self._log(f"refused unauthenticated client: {event.error}")

    # ---------------------------------------------------------------- per connection

    def _refuse(self, conn: GatewayConnection, stream: MptcpsecStream, status: Status,
                reason: str) -> None:
        self.counters.refuse(status.label)
        conn.state = f"refused: {status.label}"
        self._log(f"#{conn.number} client {conn.client!r}: refused {conn.destination or '-'}: "
                  f"{status.label} ({reason})")
        with contextlib.suppress(MptcpsecError):
            stream.write(encode_status(status))
            stream.close()

    async def _read_request(self, stream: MptcpsecStream) -> tuple[ConnectRequest, bytes]:
        buf = bytearray()
        while True:
            try:
                parsed = parse_request(buf)
            except RequestError as exc:
                raise Refused(Status.BAD_REQUEST, str(exc)) from None
            if parsed is not None:
                req, used = parsed
                return req, bytes(buf[used:])
            data = await stream.read(MAX_REQUEST_LEN - len(buf))
            if not data:
                raise Refused(Status.BAD_REQUEST, "stream ended before a whole request")
            buf += data

    async def _resolve(self, req: ConnectRequest) -> list[str]:
        if not req.is_name:
            addrs = [req.host]
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(req.host, req.port, type=socket.SOCK_STREAM),
                    self.limits.dns_timeout)
            except (socket.gaierror, UnicodeError) as exc:
                raise Refused(Status.DNS_FAILURE, f"cannot resolve {req.host!r}: {exc}") from None
            except asyncio.TimeoutError:
                raise Refused(Status.DNS_FAILURE, f"resolving {req.host!r} timed out") from None
            addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = self.policy.filter(addrs, req.port)
        if not allowed:
            raise Refused(Status.NOT_ALLOWED, f"{', '.join(addrs)} port {req.port} matches no "
                          "--allow rule")
        return allowed

    async def _open(self, addrs: list[str], port: int
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        last: BaseException | None = None
        for host in addrs:
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port),
                                              self.limits.connect_timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                last = exc
        assert last is not None
        status = status_for_oserror(last)
        raise Refused(status, f"connect to {addrs[-1]}:{port}: "
                      f"{getattr(last, 'strerror', None) or last.__class__.__name__}")

    async def __call__(self, stream: MptcpsecStream) -> None:
        self._n += 1
        client = stream.connection.peer_identity or "(anonymous)"
        conn = GatewayConnection(self._n, client, stream=stream)
        self.counters.accepted += 1
        if self._on_event is not None:
            stream.add_event_listener(lambda ev: self._on_event(conn, ev))  # type: ignore[misc]
        stream.add_event_listener(self._count_poison)
        per = self.counters.per_client
        if len(self.active) >= self.limits.max_connections:
            self._refuse(conn, stream, Status.RESOURCE_EXHAUSTED,
                         f"{len(self.active)} connections, --max-connections reached")
            return
        if per.get(client, 0) >= self.limits.max_per_client:
            self._refuse(conn, stream, Status.RESOURCE_EXHAUSTED,
                         f"{per[client]} connections for this client, --max-per-client reached")
            return
        self.active[conn.number] = conn
        per[client] = per.get(client, 0) + 1
        self.counters.active = len(self.active)
        try:
            await self._serve(conn, stream)
        finally:
            self.active.pop(conn.number, None)
            per[client] -= 1
            if per[client] <= 0:
                del per[client]
            self.counters.active = len(self.active)

    def _count_poison(self, ev: Event) -> None:
        if isinstance(ev, SubflowPoisoned) and not ev.reported_by_peer:
            self.poisoned += 1

    async def _serve(self, conn: GatewayConnection, stream: MptcpsecStream) -> None:
        try:
            try:
                req, early = await asyncio.wait_for(self._read_request(stream),
                                                    self.limits.request_timeout)
            except asyncio.TimeoutError:
                raise Refused(Status.BAD_REQUEST, "no request in time") from None
            conn.destination = str(req)
            addrs = await self._resolve(req)
            conn.state = "connecting"
            reader, writer = await self._open(addrs, req.port)
        except Refused as r:
            self._refuse(conn, stream, r.status, r.reason)
            return
        except MptcpsecError:
            return
        try:
            stream.write(encode_status(Status.SUCCESS))
            if early:
                writer.write(early)
        except MptcpsecError:
            writer.close()
            return
        conn.state = "relaying"
        self._log(f"#{conn.number} client {conn.client!r} -> {conn.destination}")

        def count(to_client: int, to_destination: int) -> None:
            conn.to_destination += to_destination
            conn.to_client += to_client
            self.counters.bytes_to_destination += to_destination
            self.counters.bytes_to_client += to_client

        res = await relay(stream, reader, writer, self.limits.idle_timeout, on_bytes=count)
        conn.state = "closed" if not res.error else f"reset: {res.error}"
        self._log(f"#{conn.number} client {conn.client!r} -> {conn.destination}: "
                  f"{res.from_stream:,} B out, {res.to_stream:,} B back"
                  + (f", {res.error}" if res.error else ""))

    def summary(self) -> dict[str, Any]:
        c = self.counters
        return {"accepted": c.accepted, "active": c.active,
                "bytes_to_destination": c.bytes_to_destination,
                "bytes_to_client": c.bytes_to_client, "refused": dict(c.refused),
                "refused_total": sum(c.refused.values()), "poisoned_subflows": self.poisoned}

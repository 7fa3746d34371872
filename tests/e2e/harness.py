"""Shared set-up for end-to-end tests: echo servers, relays with attacks, transfers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from mptcpsec.aio.api import MptcpsecServer, MptcpsecStream, Path, connect, serve
from mptcpsec.errors import MptcpsecError
from mptcpsec.lab.relay import HookContext, RecordHook, Relay
from mptcpsec.protocol.config import ConnectionConfig
from mptcpsec.protocol.events import Event
from mptcpsec.wire.header import RecordType

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def echo_handler(stream: MptcpsecStream) -> None:
    while True:
        data = await stream.read(1 << 16)
        if not data:
            return
        stream.write(data)
        await stream.drain()


@dataclass
class Outcome:
    sent: bytes
    received: bytes
    client_error: str | None
    client_events: list[Event]
    server_events: list[Event]
    client_stats: list[dict[str, object]]
    server_streams: list[MptcpsecStream] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return hashlib.sha256(self.sent).digest() == hashlib.sha256(self.received).digest()

    @property
    def prefix_ok(self) -> bool:
        """Everything delivered is exactly what was sent (no forged byte), maybe shorter."""
        return self.sent[:len(self.received)] == self.received

    def kinds(self, side: str = "client") -> list[str]:
        events = self.client_events if side == "client" else self.server_events
        return [e.kind for e in events]


def bitflip_after(nbytes: int, rtype: int = RecordType.DATA, offset_from_end: int = 20,
                  fired: list[int] | None = None) -> RecordHook:
    """Flip one bit of the first record of `rtype` after `nbytes` have passed."""
    state = {"seen": 0, "done": False}

    def fn(record: bytes, ctx: HookContext) -> bytes:
        state["seen"] += len(record)
        if not state["done"] and state["seen"] >= nbytes and record[1] == rtype \
                and len(record) > offset_from_end + 6:
            state["done"] = True
            if fired is not None:
                fired.append(state["seen"])
            b = bytearray(record)
            b[len(b) - offset_from_end] ^= 0x01
            return bytes(b)
        return record

    return RecordHook(fn)


def reset_after(nbytes: int, fired: list[int] | None = None):
    """A hook that resets both sides of the relayed connection after `nbytes`."""
    state = {"seen": 0}

    def hook(data: bytes, ctx: HookContext) -> bytes:
        state["seen"] += len(data)
        if state["seen"] >= nbytes:
            if fired is not None and not fired:
                fired.append(state["seen"])
            for w in (ctx.flow.client_writer, ctx.flow.server_writer):
                with contextlib.suppress(Exception):
                    w.transport.abort()
            return b""
        return data

    return hook


@dataclass
class Lab:
    """An echo server on HOSTS[:n], and client paths, some of them through relays."""

    config: ConnectionConfig
    npaths: int = 2
    relays: dict[int, dict[str, object]] = field(default_factory=dict)  # path -> hooks
    server: MptcpsecServer | None = None
    relay_objs: dict[int, Relay] = field(default_factory=dict)
    port: int = 0

    async def __aenter__(self) -> Lab:
        hosts = HOSTS[:self.npaths]
        for attempt in range(5):  # another process may take the free port in between
            self.port = free_port()
            try:
                self.server = await serve(echo_handler, [(h, self.port) for h in hosts],
                                          self.config)
                break
            except OSError:
                if attempt == 4:
                    raise
        for path, hooks in self.relays.items():
            relay = Relay((HOSTS[path], 0), (HOSTS[path], self.port),
                          c2s=hooks.get("c2s"), s2c=hooks.get("s2c"), name=f"path{path}")
            await relay.start()
            self.relay_objs[path] = relay
        return self

    def paths(self, backup: set[int] | None = None) -> list[Path]:
        out = []
        for i, h in enumerate(HOSTS[:self.npaths]):
            remote = self.relay_objs[i].address if i in self.relay_objs else (h, self.port)
            out.append(Path(remote, local=h, backup=i in (backup or set())))
        return out

    async def __aexit__(self, *exc: object) -> None:
        for r in self.relay_objs.values():
            await r.close()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 2)


async def echo_transfer(lab: Lab, nbytes: int, chunk: int = 1 << 16,
                        backup: set[int] | None = None,
                        on_progress: Callable[[int, MptcpsecStream], None] | None = None,
                        ) -> Outcome:
    """Send `nbytes` of random data, read the echo until EOF or error."""
    payload = os.urandom(nbytes)
    stream = await connect(lab.paths(backup), lab.config)
    received = bytearray()
    error: str | None = None

    async def writer() -> None:
        for i in range(0, nbytes, chunk):
            stream.write(payload[i:i + chunk])
            await stream.drain()
            if on_progress is not None:
                on_progress(i + chunk, stream)
        stream.close()

    wt = asyncio.create_task(writer())
    try:
        while True:
            data = await stream.read(1 << 16)
            if not data:
                break
            received += data
    except MptcpsecError as exc:
        error = str(exc)
    with contextlib.suppress(MptcpsecError):
        await wt
    if error is None:
        with contextlib.suppress(MptcpsecError, asyncio.TimeoutError):
            await stream.wait_closed(5)
    error = error or stream.error
    stream._driver.shutdown()
    await asyncio.sleep(0.05)
    assert lab.server is not None
    server_events: list[Event] = []
    for s in lab.server.finished:
        server_events += s.events
    for d in lab.server.drivers.values():
        server_events += d.events
    return Outcome(payload, bytes(received), error, stream.events, server_events,
                   stream.subflow_stats(), list(lab.server.finished))

"""Shared fixtures of the crypto tests: both AEAD backends; for the key exchanges, in-memory
and loopback runners (paths optionally through relays) and certificates."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from mptcpsec.aio.kx import run_key_exchange
from mptcpsec.crypto import BACKENDS, Backend, get_backend
from mptcpsec.crypto.certs import CertificateBundle, generate_ca, generate_self_signed
from mptcpsec.crypto.kx import KeyExchange
from mptcpsec.lab.relay import Hook, Relay

T = TypeVar("T")
HOSTS = ("127.0.0.1", "127.0.0.2")
Path = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def run(coro: Awaitable[T], timeout: float = 8.0) -> T:
    """Run one async test body with a hard bound."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@dataclass
class Paths:
    """Client and server ends of up to two loopback TCP paths, each maybe via a relay."""

    client: list[Path] = field(default_factory=list)
    server: list[Path] = field(default_factory=list)
    relays: dict[int, Relay] = field(default_factory=dict)
    _servers: list[asyncio.Server] = field(default_factory=list)

    async def close(self) -> None:
        for _, w in self.client + self.server:
            w.close()
        for relay in self.relays.values():
            await relay.close()
        for srv in self._servers:
            srv.close()
        for _, w in self.client + self.server:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(w.wait_closed(), 1.0)


async def open_paths(n: int, hooks: dict[int, tuple[Hook | None, Hook | None]] | None = None
                     ) -> Paths:
    """Open ``n`` TCP connections (path i on HOSTS[i]); hooks[i] = (c2s, s2c) puts a relay
    with those hooks in the middle of path i."""
    hooks = hooks or {}
    paths = Paths()
    loop = asyncio.get_running_loop()
    accepted: list[asyncio.Future[Path]] = [loop.create_future() for _ in range(n)]
    for i in range(n):
        def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int = i) -> None:
            if accepted[i].done():
                w.close()
            else:
                accepted[i].set_result((r, w))

        srv = await asyncio.start_server(on_conn, HOSTS[i], 0)
        paths._servers.append(srv)
        target = srv.sockets[0].getsockname()[:2]
        if i in hooks:
            c2s, s2c = hooks[i]
            relay = Relay((HOSTS[i], 0), target, c2s=c2s, s2c=s2c, name=f"path{i}")
            target = await relay.start()
            paths.relays[i] = relay
        paths.client.append(await asyncio.open_connection(*target))
    for fut in accepted:
        paths.server.append(await asyncio.wait_for(fut, 5.0))
    return paths


async def run_pair(client: KeyExchange, server: KeyExchange, paths: Paths,
                   timeout: float = 5.0) -> tuple[Any, Any]:
    """Run both ends concurrently; each outcome is a result or the exception it raised."""
    c, s = await asyncio.gather(
        run_key_exchange(client, paths.client, timeout),
        run_key_exchange(server, paths.server, timeout),
        return_exceptions=True,
    )
    return c, s


def pump_in_memory(client: KeyExchange, server: KeyExchange, max_rounds: int = 20,
                   tamper: Callable[[str, int, bytes], bytes] | None = None
                   ) -> tuple[Any, Any]:
    """Drive two sans-I/O ends against each other without sockets (bounded rounds).

    ``tamper(direction, path, message)`` may rewrite messages ("c2s"/"s2c").
    """
    outcomes: dict[str, Any] = {"client": None, "server": None}
    queue: list[tuple[str, int, bytes]] = []

    def absorb(side: str, step: Any) -> None:
        direction = "c2s" if side == "client" else "s2c"
        for path, msg in step.send:
            queue.append((direction, path, msg))
        if step.error is not None and outcomes[side] is None:
            outcomes[side] = step.error
        if step.result is not None:
            outcomes[side] = step.result

    absorb("server", server.start())
    absorb("client", client.start())
    for _ in range(max_rounds):
        if not queue:
            break
        direction, path, msg = queue.pop(0)
        if tamper is not None:
            msg = tamper(direction, path, msg)
        side, obj = ("server", server) if direction == "c2s" else ("client", client)
        if isinstance(outcomes[side], Exception):
            continue
        absorb(side, obj.receive(path, msg))
    return outcomes["client"], outcomes["server"]


@pytest.fixture(scope="session")
def self_signed() -> CertificateBundle:
    return generate_self_signed()


@pytest.fixture(scope="session")
def other_self_signed() -> CertificateBundle:
    return generate_self_signed()


@pytest.fixture(scope="session")
def ca() -> CertificateBundle:
    return generate_ca()


@pytest.fixture(scope="session")
def other_ca() -> CertificateBundle:
    return generate_ca("another CA")


def secrets_of(results: Sequence[Any]) -> list[bytes]:
    return [bytes(r.connection_secret.buffer) for r in results]


@dataclass(frozen=True)
class Helpers:
    """The helpers above, as a fixture (test modules cannot import conftest by name)."""

    run: Callable[..., Any] = run
    open_paths: Callable[..., Any] = open_paths
    run_pair: Callable[..., Any] = run_pair
    pump_in_memory: Callable[..., Any] = pump_in_memory
    secrets_of: Callable[..., Any] = secrets_of


@pytest.fixture(scope="session")
def kx() -> Helpers:
    return Helpers()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each test runs against the C core and the reference backend."""
    return get_backend(request.param)

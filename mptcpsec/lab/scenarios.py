"""The demo scenario: an echo over several emulated paths, one of them attacked.

``run_scenario(Scenario(...))`` starts an echo server on 127.0.0.1..N, one proxy per path
(a little delay, the attack on ``attack_path``), connects a client through the proxies
(exactly those paths: announced addresses are not joined, so nothing bypasses the
attacker), sends ``nbytes`` of random data, reads the echo back, and returns a
``ScenarioResult``: SHA-256 of both, the outcome, per-subflow statistics, every protocol
event of both ends, what the attacker did, and a throughput timeline.

``Observer`` callbacks let a live view follow along (``mptcpsec demo`` uses them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from ..aio.api import MptcpsecServer, MptcpsecStream, Path, connect, serve
from ..crypto.keyschedule import Role, Secret
from ..errors import MptcpsecError
from ..protocol.config import ConnectionConfig
from ..protocol.events import Event, HandshakeCompleted, SubflowPoisoned
from .attacks import AttackSpec, Strike
from .proxy import Proxy

MODES = ("mptcpsec", "plain", "tls-over-plain")
MAX_PATHS = 8


def host(i: int) -> str:
    """Loopback address of path i (0-based): 127.0.0.1, 127.0.0.2, ..."""
    return f"127.0.0.{i + 1}"


@dataclass
class Scenario:
    """What to run. ``attack_path`` counts from 1, as on the command line ("path 2")."""

    mode: str = "mptcpsec"
    key_exchange: str = "split-path"
    paths: int = 2
    nbytes: int = 20_000_000
    attack: AttackSpec | None = field(
        default_factory=lambda: AttackSpec("bitflip-data", after_bytes=1_000_000))
    attack_path: int = 2
    delay_ms: float = 2.0
    rate_mbps: float | None = None
    #: round-robin puts records on every path, so the attacked one surely carries data
    scheduler: str = "round-robin"
    algorithm: str = "aes-128-gcm"
    chunk: int = 64 * 1024
    #: give up when nothing was echoed for this long (a stalled transfer)
    stall_timeout: float = 15.0
    sample_interval: float = 0.1
    pcap: str | None = None
    trace: str | None = None

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if not 1 <= self.paths <= MAX_PATHS:
            raise ValueError(f"paths must be 1..{MAX_PATHS}")
        if self.mode == "mptcpsec" and self.key_exchange == "split-path" and self.paths < 2:
            raise ValueError("split-path needs two paths: use --paths 2 or another "
                             "--key-exchange")
        if self.attack is not None and not 1 <= self.attack_path <= self.paths:
            raise ValueError(f"attack path {self.attack_path} is not one of 1..{self.paths}")
        if self.nbytes < 1:
            raise ValueError("bytes must be positive")


@dataclass
class Sample:
    """Cumulative bytes per subflow (sent + received by the client) at time ``t``."""

    t: float
    sent: int
    echoed: int
    subflows: dict[int, int]


@dataclass
class ScenarioResult:
    mode: str
    key_exchange: str
    attack: str | None
    attack_path: int | None
    bytes_sent: int
    bytes_echoed: int
    sha256_sent: str
    sha256_echoed: str
    intact: bool
    outcome: str               # completed | aborted | stalled
    error: str | None
    detected: bool             # some end poisoned a subflow
    duration_s: float
    subflows: list[dict[str, Any]]
    events: list[dict[str, Any]]
    strikes: list[dict[str, Any]]
    samples: list[Sample] = field(default_factory=list)
    attack_time: float | None = None  # seconds from the start
    first_difference: int | None = None  # offset of the first corrupted byte echoed

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not samples:
            d.pop("samples")
        return d

    def summary(self) -> str:
        """One line, e.g. for ``--compare`` tables and logs."""
        if self.outcome == "completed" and self.intact:
            what = "completed intact"
        elif self.outcome == "completed":
            what = "completed with CORRUPTED data"
        else:
            what = self.outcome
        det = "attack detected" if self.detected else "attack not detected"
        return f"{self.mode}: {what}, {det}"


class Observer:
    """Callbacks a live view overrides; all run on the event loop."""

    def phase(self, text: str) -> None: ...

    def event(self, side: str, t: float, event: Event) -> None: ...

    def strike(self, path: int, t: float, strike: Strike) -> None: ...

    def progress(self, sample: Sample, stats: list[dict[str, Any]]) -> None: ...


class _EventTap:
    """Stands in for a TraceWriter: keeps every event, tells the observer."""

    def __init__(self, side: str, t0: float, observer: Observer, out: list[dict[str, Any]],
                 also: Any = None) -> None:
        self.side, self.t0, self.observer, self.out, self.also = side, t0, observer, out, also

    def write(self, event: Event) -> None:
        t = max(0.0, event.time - self.t0)
        self.out.append({"side": self.side, "t": round(t, 4), **event.to_dict()})
        self.observer.event(self.side, t, event)
        if self.also is not None:
            self.also.write(event)


def make_configs(sc: Scenario) -> tuple[ConnectionConfig, ConnectionConfig]:
    """Server and client configurations for the scenario's mode and key exchange."""
    common = {"mode": sc.mode, "key_exchange": sc.key_exchange, "scheduler": sc.scheduler,
              "algorithm": sc.algorithm, "join_announced": False}
    server = ConnectionConfig(**common)  # type: ignore[arg-type]
    client = ConnectionConfig(**common)  # type: ignore[arg-type]
    if sc.key_exchange == "tls" or sc.mode == "tls-over-plain":
        from ..crypto.certs import generate_self_signed
        from ..crypto.tls_keys import TlsConfig

        bundle = generate_self_signed("localhost")
        server.tls = TlsConfig(Role.SERVER, cert_pem=bundle.cert_pem, key_pem=bundle.key_pem)
        client.tls = TlsConfig(Role.CLIENT, pin_sha256=bundle.fingerprint)
    if sc.key_exchange == "psk":
        from ..crypto.psk import PskConfig

        psk = os.urandom(32)
        server.psk = PskConfig(Role.SERVER, Secret(psk))
        client.psk = PskConfig(Role.CLIENT, Secret(psk))
    return server, client


async def _echo(stream: MptcpsecStream) -> None:
    with contextlib.suppress(MptcpsecError):
        while data := await stream.read(1 << 16):
            stream.write(data)
            await stream.drain()


async def run_scenario(sc: Scenario, observer: Observer | None = None) -> ScenarioResult:
    """Run one scenario on loopback; never raises for a failed transfer (see ``outcome``)."""
    sc.validate()
    obs = observer or Observer()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    events: list[dict[str, Any]] = []
    strike_times: list[float] = []
    server_cfg, client_cfg = make_configs(sc)
    from ..wire.pcap import open_sink

    sink = open_sink(pcap=sc.pcap, trace=sc.trace) if (sc.pcap or sc.trace) else None
    server: MptcpsecServer | None = None
    proxies: list[Proxy] = []
    stream: MptcpsecStream | None = None
    payload = os.urandom(sc.nbytes)
    received = bytearray()
    samples: list[Sample] = []
    error: str | None = None
    outcome = "completed"
    sent = 0
    try:
        obs.phase("starting the echo server and one proxy per path")
        server = await serve(_echo, [(host(i), 0) for i in range(sc.paths)], server_cfg,
                             trace=_EventTap("server", t0, obs, events))  # type: ignore[arg-type]
        for i in range(sc.paths):
            attacked = sc.attack is not None and i == sc.attack_path - 1

            def on_strike(s: Strike, path: int = i + 1) -> None:
                t = loop.time() - t0
                strike_times.append(t)
                obs.strike(path, t, s)

            proxy = Proxy((host(i), 0), server.addresses[i], delay_ms=sc.delay_ms,
                          rate_mbps=sc.rate_mbps, attack=sc.attack if attacked else None,
                          name=f"path {i + 1}", on_strike=on_strike)
            await proxy.start()
            proxies.append(proxy)
        obs.phase(f"connecting over {sc.paths} paths ({sc.mode}, {sc.key_exchange})")
        tap = _EventTap("client", t0, obs, events)
        paths = [Path(p.address, local=host(i)) for i, p in enumerate(proxies)]
        try:
            stream = await connect(paths, client_cfg, trace=tap,  # type: ignore[arg-type]
                                   sink=sink)
        except (MptcpsecError, OSError, asyncio.TimeoutError) as exc:
            error = f"connect failed: {exc}"
            outcome = "aborted"
        if stream is not None:
            await _wait_joined(stream, sc.paths)
            obs.phase(f"echoing {sc.nbytes:,} bytes")
            sent, outcome, error = await _transfer(sc, stream, payload, received, samples,
                                                   obs, t0)
    finally:
        stats = stream.subflow_stats() if stream is not None else []
        if stream is not None:
            stream._driver.shutdown()
        for p in proxies:
            await p.close()
        if server is not None:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2)
        if sink is not None:
            sink.close()
    kx = next((e["key_exchange"] for e in events if e["event"] == HandshakeCompleted.kind),
              sc.key_exchange if sc.mode == "mptcpsec" else "none")
    h_sent = hashlib.sha256(payload[:sent]).hexdigest()
    h_back = hashlib.sha256(received).hexdigest()
    strikes = [s.to_dict() for p in proxies for s in p.strikes]
    res = ScenarioResult(
        mode=sc.mode, key_exchange=kx,
        attack=sc.attack.describe() if sc.attack else None,
        attack_path=sc.attack_path if sc.attack else None,
        bytes_sent=sent, bytes_echoed=len(received), sha256_sent=h_sent,
        sha256_echoed=h_back, intact=sent == sc.nbytes and h_sent == h_back,
        outcome=outcome, error=error,
        detected=any(e["event"] == SubflowPoisoned.kind for e in events),
        duration_s=round(loop.time() - t0, 3), subflows=stats, events=events,
        strikes=strikes, samples=samples,
        attack_time=round(strike_times[0], 4) if strike_times else None,
        first_difference=first_difference(payload[:sent], received))
    return res


def first_difference(a: bytes | bytearray, b: bytes | bytearray, block: int = 65536) -> int | None:
    """Offset of the first byte where ``b`` differs from ``a`` (None: a prefix of ``a``)."""
    n = min(len(a), len(b))
    for i in range(0, n, block):
        end = min(n, i + block)
        if a[i:end] != b[i:end]:
            return next(j for j in range(i, end) if a[j] != b[j])
    return None


async def _wait_joined(stream: MptcpsecStream, paths: int, timeout: float = 5.0) -> bool:
    """Let the joins finish first, so that every path carries its share from the start."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        stats = stream.subflow_stats()
        up = sum(1 for s in stats if s["state"] == "established")
        if up >= paths or stream.error is not None:
            return up >= paths
        await asyncio.sleep(0.01)
    return False


async def _transfer(sc: Scenario, stream: MptcpsecStream, payload: bytes,
                    received: bytearray, samples: list[Sample], obs: Observer,
                    t0: float) -> tuple[int, str, str | None]:
    loop = asyncio.get_running_loop()
    state = {"sent": 0, "last": loop.time()}

    async def writer() -> None:
        for i in range(0, len(payload), sc.chunk):
            stream.write(payload[i:i + sc.chunk])
            state["sent"] = min(len(payload), i + sc.chunk)
            await stream.drain()
        stream.close()

    async def reader() -> None:
        while data := await stream.read(1 << 16):
            received.extend(data)
            state["last"] = loop.time()

    def sample() -> None:
        stats = stream.subflow_stats()
        s = Sample(round(loop.time() - t0, 4), state["sent"], len(received),
                   {int(st["id"]): int(st["bytes_sent"]) + int(st["bytes_received"])
                    for st in stats})
        samples.append(s)
        obs.progress(s, stats)

    async def sampler() -> None:
        while True:
            sample()
            await asyncio.sleep(sc.sample_interval)

    wt = loop.create_task(writer())
    rt = loop.create_task(reader())
    st = loop.create_task(sampler())
    outcome, error = "completed", None
    try:
        while not rt.done():
            await asyncio.wait([rt], timeout=0.25)
            if loop.time() - state["last"] > sc.stall_timeout and not rt.done():
                outcome = "stalled"
                error = f"nothing echoed for {sc.stall_timeout:.0f} s"
                break
        if rt.done() and rt.exception() is not None:
            outcome, error = "aborted", str(rt.exception())
    finally:
        for t in (wt, rt, st):
            t.cancel()
        await asyncio.gather(wt, rt, st, return_exceptions=True)
        sample()
    if outcome == "completed":
        error = stream.error
        if error is not None:
            outcome = "aborted"
        elif len(received) < state["sent"]:
            outcome, error = "aborted", "the echo ended early"
        else:
            with contextlib.suppress(MptcpsecError, asyncio.TimeoutError):
                await stream.wait_closed(3)
    return state["sent"], outcome, error


def run(sc: Scenario, observer: Observer | None = None) -> ScenarioResult:
    """Synchronous wrapper (its own event loop)."""
    return asyncio.run(run_scenario(sc, observer))

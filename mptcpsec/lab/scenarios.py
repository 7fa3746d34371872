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
    sample_interval: float = 0.05
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
    server_error: str | None = None      # why the server's end failed, if it did

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
    strikes: list[dict[str, Any]] = []
    server_cfg, client_cfg = make_configs(sc)
    from ..aio.capture import open_sink

    sink = open_sink(pcap=sc.pcap, trace=sc.trace) if (sc.pcap or sc.trace) else None
    server: MptcpsecServer | None = None
    proxies: list[Proxy] = []
    stream: MptcpsecStream | None = None
    run = EchoRun(os.urandom(sc.nbytes))
    try:
        obs.phase("starting the echo server and one proxy per path")
        server = await serve(_echo, [(host(i), 0) for i in range(sc.paths)], server_cfg,
                             trace=_EventTap("server", t0, obs, events))  # type: ignore[arg-type]
        for i in range(sc.paths):
            attacked = sc.attack is not None and i == sc.attack_path - 1

            def on_strike(s: Strike, path: int = i + 1) -> None:
                # The events' clock (loop.time() since t0), not the Strike's epoch stamp:
                # one clock in all of the result's JSON.
                t = loop.time() - t0
                strike_times.append(t)
                d = {k: v for k, v in s.to_dict().items() if k != "time"}
                strikes.append({**d, "path": path, "t": round(t, 4),
                                "record_number": int(s.record_index) + 1})
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
            run.outcome, run.error = "aborted", f"connect failed: {exc}"
        if stream is not None:
            await wait_joined(stream, sc.paths)
            obs.phase(f"echoing {sc.nbytes:,} bytes")
            run = await echo_transfer(stream, run.payload, chunk=sc.chunk,
                                      stall_timeout=sc.stall_timeout,
                                      sample_interval=sc.sample_interval, observer=obs, t0=t0)
    finally:
        stats = stream.subflow_stats() if stream is not None else []
        if stream is not None:
            stream.shutdown()
        for p in proxies:
            await p.close()
        if server is not None:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2)
        if sink is not None:
            sink.close()
    return make_result(sc.mode, sc.key_exchange, run, subflows=stats, events=events,
                       duration=loop.time() - t0,
                       attack=sc.attack.describe() if sc.attack else None,
                       attack_path=sc.attack_path if sc.attack else None,
                       strikes=strikes,
                       attack_time=strike_times[0] if strike_times else None)


def first_difference(a: bytes | bytearray, b: bytes | bytearray, block: int = 65536) -> int | None:
    """Offset of the first byte where ``b`` differs from ``a`` (None: a prefix of ``a``)."""
    n = min(len(a), len(b))
    for i in range(0, n, block):
        end = min(n, i + block)
        if a[i:end] != b[i:end]:
            return next(j for j in range(i, end) if a[j] != b[j])
    return None


async def wait_joined(stream: MptcpsecStream, paths: int, timeout: float = 5.0) -> bool:
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


@dataclass
class EchoRun:
    """What one echo transfer did (``echo_transfer``)."""

    payload: bytes
    sent: int = 0
    received: bytearray = field(default_factory=bytearray)
    outcome: str = "completed"
    error: str | None = None
    samples: list[Sample] = field(default_factory=list)


async def echo_transfer(stream: MptcpsecStream, payload: bytes, *, chunk: int = 64 * 1024,
                        stall_timeout: float = 15.0, sample_interval: float = 0.1,
                        observer: Observer | None = None, t0: float | None = None) -> EchoRun:
    """Write ``payload``, then DATA_FIN; read the echo until EOF, an error or a stall."""
    loop = asyncio.get_running_loop()
    obs = observer or Observer()
    t0 = loop.time() if t0 is None else t0
    run = EchoRun(payload)
    state = {"last": loop.time()}

    async def writer() -> None:
        for i in range(0, len(payload), chunk):
            stream.write(payload[i:i + chunk])
            run.sent = min(len(payload), i + chunk)
            await stream.drain()
        stream.close()

    async def reader() -> None:
        while data := await stream.read(1 << 16):
            run.received.extend(data)
            state["last"] = loop.time()

    def sample() -> None:
        stats = stream.subflow_stats()
        s = Sample(round(loop.time() - t0, 4), run.sent, len(run.received),
                   {int(st["id"]): int(st["bytes_sent"]) + int(st["bytes_received"])
                    for st in stats})
        run.samples.append(s)
        obs.progress(s, stats)

    async def sampler() -> None:
        while True:
            sample()
            await asyncio.sleep(sample_interval)

    wt = loop.create_task(writer())
    rt = loop.create_task(reader())
    st = loop.create_task(sampler())
    try:
        while not rt.done():
            await asyncio.wait([rt], timeout=0.25)
            if loop.time() - state["last"] > stall_timeout and not rt.done():
                run.outcome = "stalled"
                run.error = f"nothing echoed for {stall_timeout:.0f} s"
                break
        if rt.done() and not rt.cancelled() and rt.exception() is not None:
            run.outcome, run.error = "aborted", str(rt.exception())
    finally:
        for t in (wt, rt, st):
            t.cancel()
        await asyncio.gather(wt, rt, st, return_exceptions=True)
        sample()
    if run.outcome == "completed":
        run.error = stream.error
        if run.error is not None:
            run.outcome = "aborted"
        elif len(run.received) < run.sent:
            run.outcome, run.error = "aborted", "the echo ended early"
        else:
            with contextlib.suppress(MptcpsecError, asyncio.TimeoutError):
                await stream.wait_closed(3)
    return run


def make_result(mode: str, key_exchange: str, run: EchoRun, *, subflows: list[dict[str, Any]],
                events: list[dict[str, Any]], duration: float, attack: str | None = None,
                attack_path: int | None = None, strikes: list[dict[str, Any]] | None = None,
                attack_time: float | None = None) -> ScenarioResult:
    """The summary ``--json`` prints, for the demo and for ``connect --verify`` alike."""
    kx = next((e["key_exchange"] for e in events if e["event"] == HandshakeCompleted.kind),
              key_exchange if mode == "mptcpsec" else "none")
    h_sent = hashlib.sha256(run.payload[:run.sent]).hexdigest()
    h_back = hashlib.sha256(run.received).hexdigest()
    server_error = next((e["error"] for e in events if e["side"] == "server"
                         and e["event"] == "connection_terminated" and e["error"]), None)
    return ScenarioResult(
        mode=mode, key_exchange=kx, attack=attack, attack_path=attack_path,
        bytes_sent=run.sent, bytes_echoed=len(run.received), sha256_sent=h_sent,
        sha256_echoed=h_back, intact=run.sent == len(run.payload) and h_sent == h_back,
        outcome=run.outcome, error=run.error,
        detected=any(e["event"] == SubflowPoisoned.kind for e in events),
        duration_s=round(duration, 3), subflows=subflows, events=events,
        strikes=strikes or [], samples=run.samples,
        attack_time=round(attack_time, 4) if attack_time is not None else None,
        first_difference=first_difference(run.payload[:run.sent], run.received),
        server_error=server_error)


def run(sc: Scenario, observer: Observer | None = None) -> ScenarioResult:
    """Synchronous wrapper (its own event loop)."""
    return asyncio.run(run_scenario(sc, observer))

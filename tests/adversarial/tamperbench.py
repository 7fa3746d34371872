"""A sans-I/O attack bench: two engines joined by in-memory TCP pipes, an attacker on one path.

The attacker sees whole records per path and direction (as a RecordHook on a real relay
does) and may forward, change, drop, duplicate, hold back or inject records, or end the
TCP connection with a FIN or a RST. The clock is explicit, so a run is exact and fast:
the combinatorial tamper matrix runs here, and a real-socket subset proves it on the wire.

Both ends send a payload and close; the bench reads both ends all the time and checks
after every read that nothing was delivered that was not sent (a forged byte fails at
once, not only at the end).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from mptcpsec.crypto.keyschedule import Role, Secret
from mptcpsec.crypto.psk import PskConfig
from mptcpsec.protocol.config import ConnectionConfig
from mptcpsec.protocol.events import Event, SubflowClosed, SubflowPoisoned
from mptcpsec.testing import EnginePair, PairLink
from mptcpsec.wire.header import HEADER_LEN, RecordHeader, RecordType

C2S, S2C = "c2s", "s2c"


class Cut:
    """An attacker verdict that ends the TCP connection after the bytes forwarded so far."""

    def __init__(self, reset: bool) -> None:
        self.reset = reset


FIN, RST = Cut(False), Cut(True)

#: What an attack returns for one record: bytes to forward (b"" drops it), or a list of
#: bytes and Cut items applied in order.
Verdict = bytes | list[bytes | Cut]
Attack = Callable[[str, int, bytes], Verdict]  # (direction, index on this path+dir, record)


@dataclass
class Link(PairLink):
    """One TCP connection of one path, as the two engines and the attacker see it."""

    rx: dict[str, bytearray] = field(default_factory=lambda: {C2S: bytearray(),
                                                               S2C: bytearray()})
    count: dict[str, int] = field(default_factory=lambda: {C2S: 0, S2C: 0})

    @property
    def cut(self) -> bool:
        return self.closed


@dataclass
class RunResult:
    client_events: list[Event]
    server_events: list[Event]
    sent_c: bytes
    sent_s: bytes
    got_c: bytes  # what the client application read (the server's payload)
    got_s: bytes
    client_error: str | None
    server_error: str | None
    rejected: list[str]
    records: dict[tuple[int, str], list[bytes]]  # (path, direction) -> records seen
    time: float
    stuck: bool
    sids: dict[int, tuple[int, int | None]]  # path -> (client subflow id, server subflow id)

    @property
    def intact(self) -> bool:
        return self.got_c == self.sent_s and self.got_s == self.sent_c

    def poisoned(self, side: str) -> list[SubflowPoisoned]:
        events = self.client_events if side == "client" else self.server_events
        return [e for e in events if isinstance(e, SubflowPoisoned)]

    def closed(self, side: str) -> list[SubflowClosed]:
        events = self.client_events if side == "client" else self.server_events
        return [e for e in events if isinstance(e, SubflowClosed)]


def psk_config(**kw: object) -> ConnectionConfig:
    cfg = ConnectionConfig(key_exchange="psk", **kw)  # type: ignore[arg-type]
    cfg.psk = PskConfig(Role.CLIENT, Secret(b"\x42" * 32))
    return cfg


def split_records(buf: bytearray) -> list[bytes]:
    """Take every complete record off the front of `buf` (the attacker's framing)."""
    out = []
    while len(buf) >= HEADER_LEN:
        try:
            n = RecordHeader.unpack(buf).record_len
        except Exception:  # not a record stream (e.g. garbage injected): pass it as is
            out.append(bytes(buf))
            buf.clear()
            break
        if len(buf) < n:
            break
        out.append(bytes(buf[:n]))
        del buf[:n]
    return out


class Bench(EnginePair):
    """Client engine, server endpoint, and an attacker on one path; see the module doc."""

    def __init__(self, config: ConnectionConfig, *, paths: int = 2, attacked: int = 1,
                 attack: Attack | None = None, rtts: tuple[float, ...] = (0.05, 0.01, 0.03),
                 payload: int = 48 * 1024, seed: int = 1, max_time: float = 200.0,
                 write_per_step: int = 3000) -> None:
        super().__init__(config)
        self.config = config
        self.paths = paths
        self.attacked = attacked
        self.attack = attack
        self.rtts = rtts
        self.max_time = max_time
        self.write_per_step = write_per_step  # spread the writes: records interleave
        rnd = random.Random(seed)
        self.sent_c = rnd.randbytes(payload)
        self.sent_s = rnd.randbytes(payload + 777)
        self.got_c = bytearray()
        self.got_s = bytearray()
        self.records: dict[tuple[int, str], list[bytes]] = {}
        self.written_c = 0
        self.written_s = 0
        self.hooks: list[Callable[[Bench], None]] = []  # run once per step (scenarios)

    # ------------------------------------------------------------------ TCP

    def make_link(self, path: int, client_sid: int) -> Link:
        return Link(path, client_sid)

    def to_server(self, link: PairLink, data: bytes | bytearray) -> None:
        """Deliver at the server end; a socket the endpoint refuses is reset."""
        if link.closed or link.rejected:
            return
        super().to_server(link, data)
        if link.rejected:
            self.cut(link, reset=True)

    def carry(self, link: PairLink, direction: str, data: bytes | bytearray) -> None:
        """Bytes one engine wrote on a link: through the attacker if on the attacked path."""
        assert isinstance(link, Link)
        deliver = self.to_server if direction == C2S else self.to_client
        key = (link.path, direction)
        buf = link.rx[direction]
        buf += data
        for rec in split_records(buf):
            self.records.setdefault(key, []).append(rec)
            idx = link.count[direction]
            link.count[direction] += 1
            verdict: Verdict = rec
            if self.attack is not None and link.path == self.attacked:
                verdict = self.attack(direction, idx, rec)
            items = verdict if isinstance(verdict, list) else [verdict]
            for item in items:
                if isinstance(item, Cut):
                    self.cut(link, item.reset)
                elif item:
                    deliver(link, item)

    # ------------------------------------------------------------------ stepping

    def _app(self) -> bool:
        """The applications: write (a little per step), close, read; True if they wrote."""
        c, s = self.client, self.server
        wrote = False
        if c.established and self.written_c < len(self.sent_c):
            n = min(c.send_buffer_space, len(self.sent_c) - self.written_c,
                    self.write_per_step)
            if n > 0:
                c.send(self.sent_c[self.written_c:self.written_c + n])
                self.written_c += n
                wrote = True
            if self.written_c == len(self.sent_c):
                c.close()
        if s is not None and s.established and self.written_s < len(self.sent_s):
            n = min(s.send_buffer_space, len(self.sent_s) - self.written_s,
                    self.write_per_step)
            if n > 0:
                s.send(self.sent_s[self.written_s:self.written_s + n])
                self.written_s += n
                wrote = True
            if self.written_s == len(self.sent_s):
                s.close()
        for conn, got, sent in ((c, self.got_c, self.sent_s), (s, self.got_s, self.sent_c)):
            if conn is None:
                continue
            data = conn.read()
            if data:
                got += data
                # The promise, checked at every read: no byte that was not sent.
                assert sent[:len(got)] == got, "forged or misplaced byte delivered"
            elif conn.at_eof:
                conn.read(0)
        return wrote

    def _step(self) -> bool:
        for hook in self.hooks:
            hook(self)
        self.set_paths(rtt=lambda link: self.rtts[link.path])
        moved = self._app()
        moved = self.exchange(c2s=lambda link, data: self.carry(link, C2S, data),
                              s2c=lambda link, data: self.carry(link, S2C, data)) or moved
        self.run_commands()  # OpenSubflow requests are recorded: scenarios open paths
        return self.collect_events() or moved

    def run(self) -> RunResult:
        """Step until both ends ended (or the simulated time budget is spent)."""
        for _ in range(200_000):
            if self.done:
                break
            if self._step():
                continue
            self._app()
            deadline = self.next_deadline()
            if deadline is None:
                break
            now = max(self.now, deadline) + 1e-6
            if now > self.max_time:
                self.now = now
                break
            self.advance(now)
        self._step()
        return RunResult(self.client_events, self.server_events, self.sent_c, self.sent_s,
                         bytes(self.got_c), bytes(self.got_s), self.client.error,
                         self.server.error if self.server else None, self.rejected,
                         self.records, self.now, not self.done,
                         {link.path: (link.client_sid, link.server_sid)
                          for link in self.links.values()})


# ---------------------------------------------------------------------- scenarios

@dataclass(frozen=True)
class Scenario:
    """How a run is set up: the key exchange, which paths, what extra signals flow."""

    name: str
    make: Callable[[Attack | None], Bench]


def _join_when_established(path: int) -> Callable[[Bench], None]:
    state = {"done": False}

    def hook(b: Bench) -> None:
        if not state["done"] and b.client.established:
            state["done"] = True
            b.open_path(path)

    return hook


def base_config(**kw: object) -> dict[str, object]:
    args: dict[str, object] = dict(scheduler="round-robin", max_record=1024, batch_bytes=4096,
                                   ack_every=4096, key_update_records=12,
                                   path_manager="configured", subflow_timeout=5.0,
                                   handshake_timeout=5.0)
    args.update(kw)
    return args


def psk_join(attack: Attack | None) -> Bench:
    """psk on path 0, path 1 joined: JOIN, DATA, CONTROL, KEY_UPDATE and CLOSE on path 1."""
    b = Bench(psk_config(**base_config()), attack=attack)
    b.open_path(0)
    b.hooks.append(_join_when_established(1))
    return b


def split_path_signals(attack: Attack | None) -> Bench:
    """split-path over paths 0 and 1; ADD_ADDR, its echo and MP_PRIO ride on path 1."""
    cfg = ConnectionConfig(key_exchange="split-path",
                           **base_config(announce=[("127.0.0.9", 7000)]))  # type: ignore[arg-type]
    b = Bench(cfg, attack=attack)
    b.open_path(0)
    b.open_path(1)
    state = {"prio": False}

    def prio(bench: Bench) -> None:
        # Once data flows, the client marks path 1 as backup, then regular again.
        sub = bench.client.subflows.get(1)
        if not state["prio"] and bench.written_c and sub is not None and sub.usable:
            state["prio"] = True
            bench.client.set_backup(1, True)
            bench.client.set_backup(1, False)

    b.hooks.append(prio)
    return b


def three_paths_report(attack: Attack | None) -> Bench:
    """psk, paths 0..2; path 2 is poisoned early, so the MP_TCPRST report rides on path 1."""
    flipped = {"done": False}

    def both(direction: str, idx: int, rec: bytes) -> Verdict:
        return attack(direction, idx, rec) if attack is not None else rec

    b = Bench(psk_config(**base_config()), paths=3, attack=both,
              rtts=(0.05, 0.01, 0.03))
    b.open_path(0)
    b.hooks.append(_join_when_established(1))
    b.hooks.append(_join_when_established(2))
    orig = b.carry

    def carry(link: Link, direction: str, data: bytes) -> None:
        # A second attacker on path 2 flips a tag bit of its 4th c2s DATA record.
        if link.path == 2 and direction == C2S and not flipped["done"]:
            buf = link.rx[direction]
            buf += data
            for rec in split_records(buf):
                b.records.setdefault((2, C2S), []).append(rec)
                n = link.count[C2S]
                link.count[C2S] += 1
                if rec[1] == RecordType.JOIN and n > 0:
                    flipped["joined"] = True
                if rec[1] == RecordType.DATA and flipped.get("joined") and not flipped["done"]:
                    flipped["done"] = True
                    rec = rec[:-1] + bytes([rec[-1] ^ 1])
                b.to_server(link, rec)
            return
        orig(link, direction, data)

    b.carry = carry  # type: ignore[method-assign]
    return b


SCENARIOS = {s.name: s for s in (Scenario("psk-join", psk_join),
                                 Scenario("split-path", split_path_signals),
                                 Scenario("report", three_paths_report))}


def random_payload(n: int) -> bytes:
    return os.urandom(n)

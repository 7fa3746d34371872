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
from mptcpsec.protocol.connection import CloseSubflow, Connection, OpenSubflow
from mptcpsec.protocol.endpoint import Rejected, Routed, ServerEndpoint
from mptcpsec.protocol.events import Event, SubflowClosed, SubflowPoisoned
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
class Link:
    """One TCP connection of one path, as the two engines and the attacker see it."""

    path: int
    client_sid: int
    handle: object = field(default_factory=object)
    server_sid: int | None = None
    rejected: str | None = None
    cut: bool = False
    rx: dict[str, bytearray] = field(default_factory=lambda: {C2S: bytearray(),
                                                               S2C: bytearray()})
    count: dict[str, int] = field(default_factory=lambda: {C2S: 0, S2C: 0})


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


class Bench:
    """Client engine, server endpoint, and an attacker on one path; see the module doc."""

    def __init__(self, config: ConnectionConfig, *, paths: int = 2, attacked: int = 1,
                 attack: Attack | None = None, rtts: tuple[float, ...] = (0.05, 0.01, 0.03),
                 payload: int = 48 * 1024, seed: int = 1, max_time: float = 200.0,
                 write_per_step: int = 3000) -> None:
        self.config = config
        self.now = 0.0
        self.client = Connection(config, Role.CLIENT, self.now)
        self.endpoint = ServerEndpoint(config)
        self.server: Connection | None = None
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
        self.links: dict[int, Link] = {}  # by client subflow id
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.rejected: list[str] = []
        self.records: dict[tuple[int, str], list[bytes]] = {}
        self._written_c = 0
        self._written_s = 0
        self._server_app_started = False
        self.hooks: list[Callable[[Bench], None]] = []  # run once per step (scenarios)

    # ------------------------------------------------------------------ TCP

    def open_path(self, path: int) -> int:
        host = f"127.0.0.{path + 1}"
        sid = self.client.add_subflow((host, 40000 + path), (host, 7000), self.now)
        link = Link(path, sid)
        assert self.endpoint.accept(link.handle, (host, 7000), (host, 40000 + path), self.now)
        self.links[sid] = link
        return sid

    def _to_server(self, link: Link, data: bytes) -> None:
        if link.cut or link.rejected:
            return
        if link.server_sid is None:
            r = self.endpoint.receive(link.handle, data, self.now)
            if isinstance(r, Rejected):
                link.rejected = r.reason
                self.rejected.append(r.reason)
                self._cut(link, reset=True)
            elif isinstance(r, Routed):
                link.server_sid = r.subflow_id
                self.server = r.connection
        else:
            assert self.server is not None
            self.server.receive(link.server_sid, data, self.now)

    def _to_client(self, link: Link, data: bytes) -> None:
        if not link.cut:
            self.client.receive(link.client_sid, data, self.now)

    def _cut(self, link: Link, reset: bool) -> None:
        """The TCP connection ends (FIN both ways, or RST): both engines are told."""
        if link.cut:
            return
        link.cut = True
        self.client.transport_closed(link.client_sid, self.now, reset=reset)
        if link.server_sid is not None and self.server is not None:
            self.server.transport_closed(link.server_sid, self.now, reset=reset)
        elif link.rejected is None:
            self.endpoint.drop(link.handle)

    def _carry(self, link: Link, direction: str, data: bytes) -> None:
        """Bytes one engine wrote on a link: through the attacker if on the attacked path."""
        deliver = self._to_server if direction == C2S else self._to_client
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
                    self._cut(link, item.reset)
                elif item:
                    deliver(link, item)

    # ------------------------------------------------------------------ stepping

    def _app(self) -> bool:
        """The applications: write (a little per step), close, read; True if they wrote."""
        c, s = self.client, self.server
        wrote = False
        if c.established and self._written_c < len(self.sent_c):
            n = min(c.send_buffer_space, len(self.sent_c) - self._written_c,
                    self.write_per_step)
            if n > 0:
                c.send(self.sent_c[self._written_c:self._written_c + n])
                self._written_c += n
                wrote = True
            if self._written_c == len(self.sent_c):
                c.close()
        if s is not None and s.established and self._written_s < len(self.sent_s):
            n = min(s.send_buffer_space, len(self.sent_s) - self._written_s,
                    self.write_per_step)
            if n > 0:
                s.send(self.sent_s[self._written_s:self._written_s + n])
                self._written_s += n
                wrote = True
            if self._written_s == len(self.sent_s):
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
        moved = False
        for hook in self.hooks:
            hook(self)
        for sid in list(self.client.subflows):
            link = self.links.get(sid)
            rtt = self.rtts[link.path] if link is not None else 0.02
            self.client.update_path(sid, rtt=rtt, send_space=1 << 20)
        if self.server is not None:
            for link in self.links.values():
                if link.server_sid is not None:
                    self.server.update_path(link.server_sid, rtt=self.rtts[link.path],
                                            send_space=1 << 20)
        moved = self._app() or moved
        for sid, data in self.client.data_to_send(self.now):
            link = self.links.get(sid)
            if link is not None and not link.cut:
                self._carry(link, C2S, data)
                moved = True
        if self.server is not None:
            back = {link.server_sid: link for link in self.links.values()
                    if link.server_sid is not None}
            for ssid, data in self.server.data_to_send(self.now):
                link = back.get(ssid)
                if link is not None and not link.cut:
                    self._carry(link, S2C, data)
                    moved = True
        while (cmd := self.client.next_command()) is not None:
            if isinstance(cmd, CloseSubflow):
                link = self.links.get(cmd.subflow_id)
                if link is not None:
                    self._cut(link, cmd.reset)
            elif isinstance(cmd, OpenSubflow):
                pass  # scenarios open paths themselves
        if self.server is not None:
            while (cmd := self.server.next_command()) is not None:
                if isinstance(cmd, CloseSubflow):
                    for link in self.links.values():
                        if link.server_sid == cmd.subflow_id:
                            self._cut(link, cmd.reset)
        for conn, sink in ((self.client, self.client_events), (self.server, self.server_events)):
            while conn is not None and (e := conn.next_event()) is not None:
                sink.append(e)
                moved = True
        return moved

    def done(self) -> bool:
        s = self.server
        return self.client.ended and (s is None or s.ended)

    def run(self) -> RunResult:
        """Step until both ends ended (or the simulated time budget is spent)."""
        for _ in range(200_000):
            if self.done():
                break
            if self._step():
                continue
            self._app()
            timers = [t for t in (self.client.get_timer(),
                                  self.server.get_timer() if self.server else None)
                      if t is not None]
            if not timers:
                break
            self.now = max(self.now, min(timers)) + 1e-6
            if self.now > self.max_time:
                break
            self.client.handle_timer(self.now)
            if self.server is not None:
                self.server.handle_timer(self.now)
        self._step()
        return RunResult(self.client_events, self.server_events, self.sent_c, self.sent_s,
                         bytes(self.got_c), bytes(self.got_s), self.client.error,
                         self.server.error if self.server else None, self.rejected,
                         self.records, self.now, not self.done(),
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
        if not state["prio"] and bench._written_c and sub is not None and sub.usable:
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
    orig = b._carry

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
                b._to_server(link, rec)
            return
        orig(link, direction, data)

    b._carry = carry  # type: ignore[method-assign]
    return b


SCENARIOS = {s.name: s for s in (Scenario("psk-join", psk_join),
                                 Scenario("split-path", split_path_signals),
                                 Scenario("report", three_paths_report))}


def random_payload(n: int) -> bytes:
    return os.urandom(n)

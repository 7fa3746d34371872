"""The packet stage of a router namespace: NFQUEUE in, delay and attack, verdicts out.

There is no netem qdisc on this kernel, so delay is added here: every forwarded TCP packet
is queued to user space (``iptables-legacy -j NFQUEUE`` in the router's FORWARD chain), held
for half the path's RTT (plus jitter, never reordering within a direction) and then
accepted, after the attacker (``attacker.Attacker``) had its say. Run inside the router::

    ip netns exec mpsl-…-r1 python -m mptcpsec.lab.net.stage --queue 0 --delay-ms 5 \\
        --attack bitflip --after 200000 --report r1.json --ready r1.ready

SIGTERM (or SIGINT) writes the report (JSON: packets, what the attacker changed, how many
packets per second were handled and how much CPU that took) and exits.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import select
import signal
import socket
import sys
import time
from typing import Any

from .attacker import ATTACKS, Action, AttackConfig, Attacker


class Stage:
    def __init__(self, queue: int, delay_s: float, jitter_s: float,
                 attacker: Attacker, pcap: str | None = None) -> None:
        self.queue = queue
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.attacker = attacker
        self.held: dict[str, collections.deque[tuple[float, Any, Action]]] = {
            "c2s": collections.deque(), "s2c": collections.deque()}
        self.last_due = {"c2s": 0.0, "s2c": 0.0}
        self.max_held = 0
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.stop = False
        self.first: float | None = None
        self.last: float | None = None
        self.evidence: list[bytes] = []
        self.pcap = pcap
        self.injected = 0
        self.second = 0
        self.in_second = 0
        self.peak_pps = 0

    def on_packet(self, pkt: Any) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        sec = int(now)
        if sec != self.second:
            self.second, self.in_second = sec, 0
        self.in_second += 1
        self.peak_pps = max(self.peak_pps, self.in_second)
        raw = pkt.get_payload()
        action = self.attacker.handle(raw, now)
        if action.drop:
            pkt.drop()
            return
        if action.payload is not None:
            pkt.set_payload(action.payload)
            self.evidence.append(action.payload)
        direction = "c2s" if raw[12:15] == b"\xc0\x00\x02" else "s2c"
        if self.delay_s <= 0 and self.jitter_s <= 0:
            pkt.accept()
            self._inject(action)
            self._inject(Action(inject=action.inject_reverse))
            return
        pkt.retain()
        self._hold(direction, now, pkt, action)
        if action.inject_reverse:
            other = "s2c" if direction == "c2s" else "c2s"
            self._hold(other, now, None, Action(inject=action.inject_reverse))
        self.max_held = max(self.max_held, sum(len(q) for q in self.held.values()))

    def _hold(self, direction: str, now: float, pkt: Any, action: Action) -> None:
        due = now + self.delay_s + (random.uniform(0, self.jitter_s) if self.jitter_s else 0)
        due = max(due, self.last_due[direction])  # jitter without reordering
        self.last_due[direction] = due
        self.held[direction].append((due, pkt, action))

    def _inject(self, action: Action) -> None:
        for forged in action.inject:
            dst = socket.inet_ntoa(forged[16:20])
            try:
                self.raw.sendto(forged, (dst, 0))
                self.injected += 1
                self.evidence.append(forged)
            except OSError as exc:
                print(f"stage: cannot inject to {dst}: {exc}", file=sys.stderr)

    def release(self, now: float) -> float | None:
        """Accept every held packet that is due; return the next due time."""
        nxt = None
        for q in self.held.values():
            while q and q[0][0] <= now:
                _, pkt, action = q.popleft()
                if pkt is not None:
                    pkt.accept()
                self._inject(action)
            if q and (nxt is None or q[0][0] < nxt):
                nxt = q[0][0]
        return nxt

    def run(self, ready: str | None, max_seconds: float) -> None:
        from netfilterqueue import NetfilterQueue

        nfq = NetfilterQueue()
        nfq.bind(self.queue, self.on_packet, max_len=8192)
        fd = nfq.get_fd()
        if ready:
            with open(ready, "w") as f:
                f.write(str(os.getpid()))
        deadline = time.monotonic() + max_seconds
        nxt: float | None = None
        try:
            while not self.stop and time.monotonic() < deadline:
                now = time.monotonic()
                timeout = 0.2 if nxt is None else max(0.0, min(0.2, nxt - now))
                r, _, _ = select.select([fd], [], [], timeout)
                if r:
                    nfq.run(block=False)
                nxt = self.release(time.monotonic())
        finally:
            for q in self.held.values():  # let nothing hang in the queue
                while q:
                    _, pkt, _ = q.popleft()
                    if pkt is not None:
                        pkt.accept()
            nfq.unbind()

    def report(self, cpu0: float) -> dict[str, Any]:
        span = (self.last - self.first) if self.first is not None and self.last else 0.0
        cpu = time.process_time() - cpu0
        n = self.attacker.packets
        return {**self.attacker.report(), "injected": self.injected,
                "max_held": self.max_held, "active_s": round(span, 3),
                "peak_pps": self.peak_pps,
                "cpu_s": round(cpu, 3),
                "pps": round(n / span, 1) if span > 0 else None,
                "pps_per_cpu_s": round(n / cpu, 1) if cpu > 0 else None,
                "delay_ms": self.delay_s * 1000, "jitter_ms": self.jitter_s * 1000}


def write_pcap(path: str, packets: list[bytes]) -> None:
    """Raw-IP pcap (linktype 101) of the packets the attacker rewrote or forged."""
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        t = time.time()
        for p in packets:
            f.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(p), len(p)))
            f.write(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mptcpsec.lab.net.stage",
                                 description="NFQUEUE delay and attack stage of a router "
                                 "namespace (run it inside the namespace).")
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay added")
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="uniform extra delay")
    ap.add_argument("--attack", choices=ATTACKS)
    ap.add_argument("--after", type=int, default=200_000,
                    help="payload bytes in --direction before the strike")
    ap.add_argument("--direction", choices=("c2s", "s2c"), default="c2s")
    ap.add_argument("--drop-seconds", type=float, default=1.0)
    ap.add_argument("--report", help="write the JSON report here on exit")
    ap.add_argument("--evidence", help="raw-IP pcap of every packet rewritten or forged")
    ap.add_argument("--ready", help="file written once the queue is bound")
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="exit after this long")
    args = ap.parse_args(argv)
    cfg = (AttackConfig(args.attack, args.after, args.direction, args.drop_seconds)
           if args.attack else None)
    stage = Stage(args.queue, args.delay_ms / 1000, args.jitter_ms / 1000, Attacker(cfg))

    def stop(*_: Any) -> None:
        stage.stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    cpu0 = time.process_time()
    try:
        stage.run(args.ready, args.max_seconds)
    finally:
        if args.report:
            tmp = args.report + ".tmp"
            with open(tmp, "w") as f:
                json.dump(stage.report(cpu0), f)
            os.replace(tmp, args.report)
        if args.evidence:
            write_pcap(args.evidence, stage.evidence)
    return 0


if __name__ == "__main__":
    sys.exit(main())

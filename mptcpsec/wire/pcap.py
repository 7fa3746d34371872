"""Export records as a classic pcap that Wireshark/tshark decode (papers/SPEC.md, section 9).

Each subflow becomes an IPv4/TCP or IPv6/TCP conversation between its real addresses and
ports:
a SYN, SYN/ACK, ACK at the start, then one TCP segment per record with consistent
sequence and acknowledgement numbers, the record's MPTCP options copied into the TCP
option field (those that fit in 40 bytes) and the whole record as payload, and a FIN
exchange (or an RST) at the end. Wireshark's MPTCP dissector then shows the DSS data
sequence numbers and DATA_ACKs, ADD_ADDR, MP_TCPRST reasons and so on of every record.

Writers are *event sinks* (:class:`RecordSink`): a connection (or the ``mptcpsec pcap``
sample, or a trace replay) calls ``subflow_open``, ``record`` and ``subflow_close`` as
things happen. :class:`TraceWriter` records the same events as JSON lines, which
``replay_trace`` feeds into any sink later. Writers take open file objects: the files
are opened by the adapter (``mptcpsec.aio.capture``: ``open_sink`` for ``--pcap FILE`` /
``--trace FILE``, ``trace_to_pcap``), never here.

Hooking up a connection end: call ``subflow_open(id, client_endpoint, server_endpoint)``
when a subflow's TCP connection is up (client = the end that connected, whichever end is
writing), then ``record(id, from_client, record_bytes)`` for every record it sends *and*
every record it receives, whole and as on the wire (before opening), and
``subflow_close(id, reset=...)`` when the subflow ends. One end's view is then the
complete conversation.

Decrypting payloads: give :class:`PcapWriter` a ``transform`` (e.g.
:class:`RecordDecryptor`, fed by a key log) and each protected record is written with
its plaintext instead of ``ciphertext || tag``.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import IO, Any, Protocol

from ..errors import (
    MptcpsecError,
    PcapError as PcapError,
    RecordError,
)
from .header import HEADER_LEN, RecordHeader, RecordType
from .options import KIND_MPTCP
from .records import Record, is_protected

LINKTYPE_RAW = 101  # raw IPv4/IPv6, no link-layer header
PCAP_MAGIC = 0xA1B2C3D4
TCP_MAX_OPTIONS = 40
#: Largest TCP payload per IPv4 packet (65535 - 20-byte IP header - 60-byte TCP header);
#: a longer record is split over consecutive segments, options on the first.
MAX_SEGMENT_PAYLOAD = 65535 - 20 - 60
MSS_OPTION = b"\x02\x04\xff\xd7"  # MSS 65495, like loopback

_FIN, _SYN, _RST, _PSH, _ACK = 0x01, 0x02, 0x04, 0x08, 0x10

Endpoint = tuple[str, int]
#: (subflow_id, from_client, record bytes) -> bytes to write as the payload instead.
RecordTransform = Callable[[int, bool, bytes], bytes]


class RecordSink(Protocol):
    """What a connection calls to export its records (``--pcap FILE``, ``--trace``)."""

    def subflow_open(self, subflow_id: int, client: Endpoint, server: Endpoint,
                     ts: float | None = None) -> None: ...

    def record(self, subflow_id: int, from_client: bool, record: bytes,
               ts: float | None = None) -> None: ...

    def subflow_close(self, subflow_id: int, reset: bool = False,
                      ts: float | None = None) -> None: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- packets

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_option_field(record_options: bytes) -> bytes:
    """The TCP option field for a record's MPTCP options: every option that still fits
    in 40 bytes, in record order, padded with NOPs to a multiple of 4."""
    out = bytearray()
    pos = 0
    while pos + 2 <= len(record_options):
        length = record_options[pos + 1]
        if record_options[pos] != KIND_MPTCP or length < 2 or pos + length > len(record_options):
            break  # not a well-formed option area: copy nothing more
        if len(out) + length <= TCP_MAX_OPTIONS:
            out += record_options[pos:pos + length]
        pos += length
    out += b"\x01" * (-len(out) % 4)
    return bytes(out)


def _tcp_segment(saddr: bytes, daddr: bytes, src_port: int, dst_port: int, seq: int,
                 ack: int, flags: int, options: bytes, payload: bytes, window: int) -> bytes:
    """A TCP header + payload with its checksum over the IPv4 or IPv6 pseudo-header."""
    if len(options) % 4 or len(options) > TCP_MAX_OPTIONS:
        raise PcapError(f"TCP options of {len(options)} bytes")
    tcp_len = 20 + len(options) + len(payload)
    offset_flags = ((20 + len(options)) // 4) << 12 | flags
    tcp = struct.pack("!HHIIHHHH", src_port, dst_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      offset_flags, window, 0, 0) + options + payload
    if len(saddr) == 4:
        pseudo = saddr + daddr + struct.pack("!BBH", 0, 6, tcp_len)
    else:  # RFC 8200 section 8.1
        pseudo = saddr + daddr + struct.pack("!I3xB", tcp_len, 6)
    csum = _checksum(pseudo + tcp)
    return tcp[:16] + struct.pack("!H", csum) + tcp[18:]


def build_ipv6_tcp(src: Endpoint, dst: Endpoint, seq: int, ack: int, flags: int,
                   options: bytes = b"", payload: bytes = b"", flow: int = 0,
                   window: int = 65535) -> bytes:
    """One IPv6/TCP packet (no extension headers) with a correct TCP checksum."""
    try:
        saddr, daddr = IPv6Address(src[0]).packed, IPv6Address(dst[0]).packed
    except ValueError as exc:
        raise PcapError(f"not an IPv6 subflow: {exc}") from None
    tcp = _tcp_segment(saddr, daddr, src[1], dst[1], seq, ack, flags, options, payload, window)
    if len(tcp) > 0xFFFF:
        raise PcapError(f"IPv6 payload of {len(tcp)} bytes")
    ip = struct.pack("!IHBB16s16s", 6 << 28 | (flow & 0xFFFFF), len(tcp), 6, 64, saddr, daddr)
    return ip + tcp


def build_ip_tcp(src: Endpoint, dst: Endpoint, seq: int, ack: int, flags: int,
                 options: bytes = b"", payload: bytes = b"", ip_id: int = 0) -> bytes:
    """IPv4/TCP or IPv6/TCP, after the subflow's addresses (both of one family)."""
    try:
        v_src, v_dst = ip_address(src[0]).version, ip_address(dst[0]).version
    except ValueError as exc:
        raise PcapError(f"pcap export needs IP addresses: {exc}") from None
    if v_src != v_dst:
        raise PcapError(f"subflow {src[0]} -> {dst[0]} mixes IPv4 and IPv6")
    if v_src == 6:
        return build_ipv6_tcp(src, dst, seq, ack, flags, options, payload, ip_id)
    return build_ipv4_tcp(src, dst, seq, ack, flags, options, payload, ip_id)


def build_ipv4_tcp(src: Endpoint, dst: Endpoint, seq: int, ack: int, flags: int,
                   options: bytes = b"", payload: bytes = b"", ip_id: int = 0,
                   window: int = 65535) -> bytes:
    """One IPv4/TCP packet with correct checksums."""
    if len(options) % 4 or len(options) > TCP_MAX_OPTIONS:
        raise PcapError(f"TCP options of {len(options)} bytes")
    try:
        saddr, daddr = IPv4Address(src[0]).packed, IPv4Address(dst[0]).packed
    except ValueError as exc:
        raise PcapError(f"pcap export handles IPv4 subflows only: {exc}") from None
    tcp_len = 20 + len(options) + len(payload)
    offset_flags = ((20 + len(options)) // 4) << 12 | flags
    tcp = struct.pack("!HHIIHHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      offset_flags, window, 0, 0) + options + payload
    pseudo = saddr + daddr + struct.pack("!BBH", 0, 6, tcp_len)
    csum = _checksum(pseudo + tcp)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    total = 20 + tcp_len
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ip_id & 0xFFFF, 0x4000, 64, 6, 0,
                     saddr, daddr)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + tcp


# ----------------------------------------------------------------------------- writer

@dataclass
class _Subflow:
    client: Endpoint
    server: Endpoint
    next_seq: dict[bool, int]  # from_client -> next sequence number of that direction
    open: bool = True


class PcapWriter:
    """A :class:`RecordSink` that writes classic pcap (link type RAW: IPv4 or IPv6 after
    each subflow's addresses).

    ``out`` is a binary file object (closed by :meth:`close` only with ``close_file``).
    ``transform`` may replace each record's payload, e.g. with its decrypted form
    (:class:`RecordDecryptor`). Thread-safe: events from several subflow tasks may arrive
    concurrently.
    """

    def __init__(self, out: IO[bytes], *, transform: RecordTransform | None = None,
                 snaplen: int = 262144, close_file: bool = False) -> None:
        self._file = _check_file(out, "PcapWriter", "pcap_file")
        self._owned = close_file
        self.transform = transform
        self.snaplen = snaplen
        self._subflows: dict[int, _Subflow] = {}
        self._lock = threading.Lock()
        self._ip_id = 0
        self._last_ts = 0.0
        self.packets = 0
        self._file.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_RAW))

    # -- events
    def subflow_open(self, subflow_id: int, client: Endpoint, server: Endpoint,
                     ts: float | None = None) -> None:
        with self._lock:
            if subflow_id in self._subflows and self._subflows[subflow_id].open:
                raise PcapError(f"subflow {subflow_id} is already open")
            isn_c = zlib.crc32(f"{client}{server}c".encode())
            isn_s = zlib.crc32(f"{client}{server}s".encode())
            sf = _Subflow(client, server, {True: isn_c + 1, False: isn_s + 1})
            self._subflows[subflow_id] = sf
            self._emit(ts, client, server, isn_c, 0, _SYN, MSS_OPTION)
            self._emit(ts, server, client, isn_s, isn_c + 1, _SYN | _ACK, MSS_OPTION)
            self._emit(ts, client, server, isn_c + 1, isn_s + 1, _ACK)

    def record(self, subflow_id: int, from_client: bool, record: bytes,
               ts: float | None = None) -> None:
        with self._lock:
            sf = self._get(subflow_id)
            payload = bytes(record)
            if self.transform is not None:
                payload = self.transform(subflow_id, from_client, payload)
            opts = b""
            if len(record) >= HEADER_LEN:
                opt_len = record[3]
                opts = tcp_option_field(bytes(record[HEADER_LEN:HEADER_LEN + opt_len]))
            src, dst = (sf.client, sf.server) if from_client else (sf.server, sf.client)
            for start in range(0, max(len(payload), 1), MAX_SEGMENT_PAYLOAD):
                chunk = payload[start:start + MAX_SEGMENT_PAYLOAD]
                seq = sf.next_seq[from_client]
                self._emit(ts, src, dst, seq, sf.next_seq[not from_client], _PSH | _ACK,
                           opts if start == 0 else b"", chunk)
                sf.next_seq[from_client] = (seq + len(chunk)) & 0xFFFFFFFF

    def subflow_close(self, subflow_id: int, reset: bool = False,
                      ts: float | None = None) -> None:
        with self._lock:
            sf = self._get(subflow_id)
            c, s = sf.next_seq[True], sf.next_seq[False]
            if reset:
                self._emit(ts, sf.client, sf.server, c, s, _RST | _ACK)
            else:
                self._emit(ts, sf.client, sf.server, c, s, _FIN | _ACK)
                self._emit(ts, sf.server, sf.client, s, c + 1, _FIN | _ACK)
                self._emit(ts, sf.client, sf.server, c + 1, s + 1, _ACK)
            sf.open = False

    def close(self) -> None:
        with self._lock:
            self._file.flush()
            if self._owned:
                self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals
    def _get(self, subflow_id: int) -> _Subflow:
        sf = self._subflows.get(subflow_id)
        if sf is None or not sf.open:
            raise PcapError(f"subflow {subflow_id} is not open")
        return sf

    def _emit(self, ts: float | None, src: Endpoint, dst: Endpoint, seq: int, ack: int,
              flags: int, options: bytes = b"", payload: bytes = b"") -> None:
        if ts is None:
            ts = time.time()
        ts = max(ts, self._last_ts)  # keep the capture in time order
        self._last_ts = ts
        self._ip_id += 1
        pkt = build_ip_tcp(src, dst, seq, ack, flags, options, payload, self._ip_id)
        sec = int(ts)
        usec = min(round((ts - sec) * 1e6), 999999)
        caplen = min(len(pkt), self.snaplen)
        self._file.write(struct.pack("<IIII", sec, usec, caplen, len(pkt)) + pkt[:caplen])
        self.packets += 1


# ----------------------------------------------------------------------------- JSON-lines trace

class TraceWriter:
    """A :class:`RecordSink` that writes the events as JSON lines (replayable to pcap).

    Lines: ``{"event": "subflow_open", "subflow", "client": "ip:port", "server", "ts"}``,
    ``{"event": "record", "subflow", "from": "client"|"server", "record": hex, "ts"}``,
    ``{"event": "subflow_close", "subflow", "reset", "ts"}``, and once per connection
    ``{"event": "connection", "connection_id", "algorithm", "client_nonce", "server_nonce",
    "kx_subflows", ...}`` (public values a key log needs to rebuild the keys).
    """

    def __init__(self, out: IO[str], *, close_file: bool = False) -> None:
        self._file = _check_file(out, "TraceWriter", "trace_file")
        self._owned = close_file
        self._lock = threading.Lock()

    def _write(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(json.dumps(obj, separators=(",", ":")) + "\n")

    def subflow_open(self, subflow_id: int, client: Endpoint, server: Endpoint,
                     ts: float | None = None) -> None:
        self._write({"event": "subflow_open", "subflow": subflow_id,
                     "client": f"{client[0]}:{client[1]}", "server": f"{server[0]}:{server[1]}",
                     "ts": time.time() if ts is None else ts})

    def record(self, subflow_id: int, from_client: bool, record: bytes,
               ts: float | None = None) -> None:
        self._write({"event": "record", "subflow": subflow_id,
                     "from": "client" if from_client else "server", "record": bytes(record).hex(),
                     "ts": time.time() if ts is None else ts})

    def subflow_close(self, subflow_id: int, reset: bool = False,
                      ts: float | None = None) -> None:
        self._write({"event": "subflow_close", "subflow": subflow_id, "reset": reset,
                     "ts": time.time() if ts is None else ts})

    def connection_info(self, info: dict[str, Any], ts: float | None = None) -> None:
        """Public facts a key log needs to find the keys: connection id, algorithm, nonces."""
        self._write({"event": "connection", **info, "ts": time.time() if ts is None else ts})

    def close(self) -> None:
        with self._lock:
            self._file.flush()
            if self._owned:
                self._file.close()


def _check_file(out: Any, who: str, opener: str) -> Any:
    """``out`` if it is a writable file object; a clear error for a path."""
    if isinstance(out, (str, bytes, os.PathLike)):
        raise PcapError(f"{who} writes to an open file object, not a path ({out!r}): "
                        f"use mptcpsec.aio.capture.{opener}")
    if not callable(getattr(out, "write", None)):
        raise PcapError(f"{who} needs an object with write(), got {type(out).__name__}")
    return out


def _endpoint(text: str) -> Endpoint:
    host, _, port = str(text).rpartition(":")
    if not host or not port.isdigit():
        raise PcapError(f"bad endpoint {text!r}, expected IP:PORT")
    return host.strip("[]"), int(port)


def read_trace(lines: Iterator[str] | IO[str], name: str = "trace") -> Iterator[dict[str, Any]]:
    """Parse and check the events of a JSON-lines records trace; every problem is a
    PcapError naming `name` and the line (papers/SPEC.md section 9)."""
    it = iter(lines)
    n = 0
    while True:
        n += 1
        try:
            line = next(it)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise PcapError(f"{name} line {n}: not UTF-8 text; a records trace is JSON lines "
                            "(written with --trace or --trace-out)") from None
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
            if not isinstance(ev, dict):
                raise TypeError("not a JSON object")
            kind = ev["event"]
            if kind == "subflow_open":
                ev["client"], ev["server"] = _endpoint(ev["client"]), _endpoint(ev["server"])
            elif kind == "record":
                ev["record"] = bytes.fromhex(ev["record"])
                if ev["from"] not in ("client", "server"):
                    raise ValueError("'from' must be client or server")
            elif kind == "connection":
                yield ev
                continue
            elif kind != "subflow_close":
                continue  # other engine events may share the trace file
            ev["subflow"] = int(ev["subflow"])
        except KeyError as exc:
            raise PcapError(f"{name} line {n}: missing field {exc.args[0]!r}") from None
        except (ValueError, TypeError) as exc:
            raise PcapError(f"{name} line {n}: {exc}") from None
        yield ev


def replay_trace(lines: Iterator[str] | IO[str], sink: RecordSink, name: str = "trace") -> int:
    """Feed a records trace into a sink; returns the number of records."""
    count = 0
    for ev in read_trace(lines, name):
        ts = ev.get("ts")
        if ev["event"] == "connection":
            fn = getattr(sink, "connection_info", None)
            if fn is not None:
                fn({k: v for k, v in ev.items() if k not in ("event", "ts")}, ts)
        elif ev["event"] == "subflow_open":
            sink.subflow_open(ev["subflow"], ev["client"], ev["server"], ts)
        elif ev["event"] == "record":
            sink.record(ev["subflow"], ev["from"] == "client", ev["record"], ts)
            count += 1
        else:
            sink.subflow_close(ev["subflow"], bool(ev.get("reset", False)), ts)
    return count


class MultiSink:
    """Fan one stream of events out to several sinks (e.g. a pcap and a trace)."""

    def __init__(self, *sinks: RecordSink) -> None:
        self.sinks = sinks

    def subflow_open(self, subflow_id: int, client: Endpoint, server: Endpoint,
                     ts: float | None = None) -> None:
        for s in self.sinks:
            s.subflow_open(subflow_id, client, server, ts)

    def record(self, subflow_id: int, from_client: bool, record: bytes,
               ts: float | None = None) -> None:
        for s in self.sinks:
            s.record(subflow_id, from_client, record, ts)

    def subflow_close(self, subflow_id: int, reset: bool = False,
                      ts: float | None = None) -> None:
        for s in self.sinks:
            s.subflow_close(subflow_id, reset, ts)

    def connection_info(self, info: dict[str, Any], ts: float | None = None) -> None:
        for s in self.sinks:
            fn = getattr(s, "connection_info", None)
            if fn is not None:
                fn(info, ts)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


# ----------------------------------------------------------------------------- decryption hook

#: (subflow_id, from_client, key generation) -> (algorithm, key, iv), or None if unknown.
KeyLookup = Callable[[int, bool, int], "tuple[Any, bytes, bytes] | None"]


#: The generation number a key lookup gets for a join's early (0-RTT) keys.
EARLY = -1


@dataclass
class _Direction:
    generation: int = 0
    opener: Any = None
    dead: bool = False
    seen_join: bool = False


@dataclass
class RecordDecryptor:
    """A :data:`RecordTransform` that opens protected records with keys from a lookup.

    ``keys(subflow_id, from_client, generation)`` returns ``(algorithm, key, iv)`` for
    that subflow direction after ``generation`` key updates (for a key log: see
    ``mptcpsec.crypto.keylog.subflow_keys_from_keylog``), or None when unknown. Records
    must be given in order per direction (the record counter is implicit). An opened
    record is written as ``header' || options || plaintext`` with ``body_len`` set to the
    plaintext length: the unprotected framing of papers/SPEC.md. Unprotected records
    (plaintext HANDSHAKE, JOIN) pass unchanged; after a failure (or without keys) a
    direction's records are left as they are.
    """

    keys: KeyLookup
    backend: Any = None
    protected_mode: bool = True
    #: Called with every unprotected record (a key lookup learns join nonces from them).
    observer: Callable[[int, bool, bytes], None] | None = None
    _dirs: dict[tuple[int, bool], _Direction] = field(default_factory=dict)

    def __call__(self, subflow_id: int, from_client: bool, record: bytes) -> bytes:
        try:
            header = RecordHeader.unpack(record)
        except RecordError:
            return record
        if not is_protected(header.type, header.flags, self.protected_mode):
            if self.observer is not None:
                self.observer(subflow_id, from_client, record)
            if header.type == RecordType.JOIN and from_client:
                # JOIN SYN: the joining end's data uses the early keys (generation
                # EARLY) until its JOIN ACK, then the subflow keys from generation 0.
                d = self._dirs.setdefault((subflow_id, True), _Direction())
                if d.opener is not None:
                    d.opener.close()
                d.opener, d.dead = None, False
                d.generation = 0 if d.seen_join else EARLY
                d.seen_join = True
            return record
        d = self._dirs.setdefault((subflow_id, from_client), _Direction())
        if d.dead:
            return record
        if d.opener is None:
            d.opener = self._opener(subflow_id, from_client, d.generation)
            if d.opener is None:
                d.dead = True
                return record
        buf = bytearray(record)
        try:
            res = d.opener.open_records(buf, max_records=1)
        except MptcpsecError:
            d.dead = True
            return record
        if res.error is not None or len(res.records) != 1:
            d.dead = True
            return record
        rec = res.records[0]
        options = bytes(buf[HEADER_LEN:HEADER_LEN + rec.opt_len])
        plaintext = bytes(buf[rec.pt_offset:rec.pt_offset + rec.pt_len])
        if rec.type == RecordType.KEY_UPDATE and d.generation != EARLY:
            d.generation += 1
            d.opener.close()
            d.opener = None
        return Record(rec.type, rec.flags, options, plaintext).encode()

    def _opener(self, subflow_id: int, from_client: bool, generation: int) -> Any:
        found = self.keys(subflow_id, from_client, generation)
        if found is None:
            return None
        alg, key, iv = found
        backend = self.backend
        if backend is None:
            from ..crypto import get_backend

            backend = get_backend()
        return backend.opener(alg, bytes(key), bytes(iv))

    def close(self) -> None:
        for d in self._dirs.values():
            if d.opener is not None:
                d.opener.close()
        self._dirs.clear()


__all__ = [
    "LINKTYPE_RAW", "MAX_SEGMENT_PAYLOAD", "TCP_MAX_OPTIONS", "Endpoint", "KeyLookup",
    "MultiSink", "PcapError", "PcapWriter", "RecordDecryptor", "RecordSink",
    "RecordTransform", "TraceWriter", "build_ipv4_tcp", "read_trace", "replay_trace",
    "tcp_option_field",
]

"""asyncio adapter core: real TCP sockets in, engine calls, bytes out. No protocol logic.

One `ConnectionDriver` owns one engine `Connection` and its sockets. Every input (bytes,
a closed socket, a timer, a write from the application) is passed to the engine, and
then `flush()` writes what the engine produced, carries out its commands and wakes the
readers and writers waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from ..errors import TransportError as TransportError
from ..protocol.connection import CloseSubflow, Connection, OpenSubflow
from ..protocol.events import ConnectionTerminated, Event, HandshakeCompleted, TraceWriter
from ..wire.pcap import RecordSink

#: Events a driver keeps for `stream.events` (the oldest are dropped beyond it; a trace
#: file keeps them all).
MAX_EVENTS = 10_000
#: Bytes queued in a socket's transport before the engine stops scheduling on it.
SOCKET_HIGH_WATER = 512 * 1024
_TCP_INFO_RTT_OFFSET = 68  # struct tcp_info: 8 bytes of u8 fields, then u32s; tcpi_rtt is #16


def tcp_rtt(sock: socket.socket | None) -> float | None:
    """Smoothed RTT in seconds from the kernel's TCP_INFO, or None where unavailable."""
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (OSError, ValueError):  # ValueError: uvloop's socket of a closed handle (fd -1)
        return None
    if len(info) < _TCP_INFO_RTT_OFFSET + 4:
        return None
    (rtt_us,) = struct.unpack_from("I", info, _TCP_INFO_RTT_OFFSET)
    return float(rtt_us) / 1e6


#: What the driver calls on a socket transport (asyncio's, uvloop's, or any other loop's).
_TRANSPORT_METHODS = ("write", "abort", "close", "is_closing", "get_extra_info",
                      "get_write_buffer_size", "set_write_buffer_limits")


#: Seconds a socket may take to deliver the connection's last records after shutdown()
#: before it is reset (peers that stopped reading must not hold the process).
SHUTDOWN_LINGER = 2.0


def _abort_if_open(transport: asyncio.Transport) -> None:
    if not transport.is_closing() or transport.get_write_buffer_size():
        transport.abort()


class SubflowProtocol(asyncio.Protocol):
    """One TCP socket; forwards everything to its driver (set once routed)."""

    def __init__(self, on_connected: Callable[[SubflowProtocol], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.driver: ConnectionDriver | None = None
        self.subflow_id: int | None = None
        self.on_data: Callable[[SubflowProtocol, bytes], None] | None = None
        self.on_lost: Callable[[SubflowProtocol, Exception | None], None] | None = None
        self._on_connected = on_connected
        self.paused = False
        self.eof = False
        self.prefix = bytearray()  # bytes received before routing (for a capture)
        self.remote: tuple[str, int] | None = None  # the peer, once accepted (for logs)
        self.closed = False  # connection_lost ran

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Duck-typed: uvloop's TCPTransport is not an asyncio.Transport subclass.
        missing = [m for m in _TRANSPORT_METHODS if not callable(getattr(transport, m, None))]
        if missing:
            transport.close()
            raise TransportError(f"{type(transport).__name__} lacks {', '.join(missing)}")
        tp: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = tp
        tp.set_write_buffer_limits(high=SOCKET_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._on_connected is not None:
            self._on_connected(self)

    def data_received(self, data: bytes) -> None:
        if self.driver is not None and self.subflow_id is not None:
            self.driver.on_data(self.subflow_id, data)
        elif self.on_data is not None:
            self.on_data(self, data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return False  # close our side too; the engine decides what the FIN means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.driver is not None and self.subflow_id is not None:
            self.driver.on_lost(self.subflow_id, exc)
        elif self.on_lost is not None:
            self.on_lost(self, exc)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.driver is not None:
            self.driver.flush()

    def send_space(self) -> int:
        if self.transport is None or self.transport.is_closing():
            return 0
        return max(0, SOCKET_HIGH_WATER - self.transport.get_write_buffer_size())

    def rtt(self) -> float | None:
        return tcp_rtt(self.transport.get_extra_info("socket") if self.transport else None)


class RecordTap:
    """Cuts each subflow direction's bytes into records for a capture sink (pcap/trace).

    Framing only (6-byte header lengths): the sink sees exactly the records on the wire,
    tampered ones included. Buffers hold at most one record per direction.
    """

    _MAX = 6 + 255 + 65535

    def __init__(self, sink: RecordSink, id_base: int = 0) -> None:
        self.sink = sink
        self.id_base = id_base
        self._bufs: dict[tuple[int, bool], bytearray] = {}
        self._broken: set[tuple[int, bool]] = set()

    def open(self, sid: int, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.sink.subflow_open(self.id_base + sid, client, server, time.time())

    def feed(self, sid: int, from_client: bool, data: bytes | bytearray) -> None:
        key = (sid, from_client)
        if key in self._broken:
            return
        buf = self._bufs.setdefault(key, bytearray())
        buf += data
        while len(buf) >= 6:
            n = 6 + buf[3] + (buf[4] << 8 | buf[5])
            if len(buf) < n:
                break
            self.sink.record(self.id_base + sid, from_client, bytes(buf[:n]), time.time())
            del buf[:n]
        if len(buf) > self._MAX:  # cannot happen with valid framing; never grow
            self._broken.add(key)
            buf.clear()

    def close(self, sid: int, reset: bool) -> None:
        self.sink.subflow_close(self.id_base + sid, reset, time.time())

    def connection(self, info: dict[str, Any]) -> None:
        fn = getattr(self.sink, "connection_info", None)
        if fn is not None:
            fn(info, time.time())


class ConnectionDriver:
    """Drives one engine connection over real sockets."""

    def __init__(self, conn: Connection, loop: asyncio.AbstractEventLoop,
                 trace: TraceWriter | None = None,
                 opener: Callable[[OpenSubflow], None] | None = None,
                 tap: RecordTap | None = None) -> None:
        self.conn = conn
        self.tap = tap
        self._client = conn.role.value == "client"
        self.loop = loop
        self.trace = trace
        self.events: list[Event] = []
        self.protocols: dict[int, SubflowProtocol] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._lingering: list[asyncio.TimerHandle] = []  # resets due after shutdown()
        self._changed = asyncio.Event()
        self._opener = opener
        self._event_listeners: list[Callable[[Event], None]] = []
        self.closed = asyncio.Event()
        self._rtt_checked = 0.0
        self._flushing = False

    # ------------------------------------------------------------------ inputs

    def attach(self, sid: int, proto: SubflowProtocol, first_bytes: bytes = b"") -> None:
        """Route a socket to subflow `sid` (first_bytes: what it received before routing)."""
        proto.driver = self
        proto.subflow_id = sid
        self.protocols[sid] = proto
        if self.tap is not None and proto.transport is not None:
            local = proto.transport.get_extra_info("sockname")[:2]
            peer = proto.transport.get_extra_info("peername")[:2]
            client, server = (local, peer) if self._client else (peer, local)
            self.tap.open(sid, client, server)
            if first_bytes:
                self.tap.feed(sid, not self._client, first_bytes)

    def on_data(self, sid: int, data: bytes) -> None:
        if self.tap is not None:
            self.tap.feed(sid, not self._client, data)
        self.conn.receive(sid, data, self.loop.time())
        self.flush()

    def on_lost(self, sid: int, exc: Exception | None) -> None:
        proto = self.protocols.get(sid)
        reset = exc is not None and not (proto is not None and proto.eof)
        if self.tap is not None:
            self.tap.close(sid, reset)
        self.conn.transport_closed(sid, self.loop.time(), reset=reset)
        self.flush()

    def add_listener(self, fn: Callable[[Event], None]) -> None:
        self._event_listeners.append(fn)

    # ------------------------------------------------------------------ outputs

    def flush(self) -> None:
        """Write what the engine produced, run its commands, re-arm its timer."""
        if self._flushing:
            return
        self._flushing = True
        try:
            now = self.loop.time()
            check_rtt = now - self._rtt_checked > 0.2
            if check_rtt:
                self._rtt_checked = now
            for sid, proto in self.protocols.items():
                self.conn.update_path(sid, rtt=proto.rtt() if check_rtt else None,
                                      send_space=proto.send_space())
            for sid, data in self.conn.data_to_send(now):
                target = self.protocols.get(sid)
                if target is not None and target.transport is not None \
                        and not target.transport.is_closing():
                    target.transport.write(data)
                    if self.tap is not None:
                        self.tap.feed(sid, self._client, data)
            while (cmd := self.conn.next_command()) is not None:
                self._run(cmd)
            for sid in [s for s, p in self.protocols.items()
                        if s not in self.conn.subflows and p.transport is not None
                        and p.transport.is_closing()]:
                del self.protocols[sid]  # the engine forgot this ended subflow
            while (event := self.conn.next_event()) is not None:
                self.events.append(event)
                if len(self.events) > MAX_EVENTS:
                    del self.events[:len(self.events) - MAX_EVENTS]
                if self.trace is not None:
                    self.trace.write(event)
                for fn in self._event_listeners:
                    fn(event)
                if isinstance(event, ConnectionTerminated):
                    self.closed.set()
                elif isinstance(event, HandshakeCompleted) and self.tap is not None:
                    info = self.conn.connection_info()
                    if info is not None:
                        self.tap.connection(info)
            self._arm_timer()
            self._changed.set()
        finally:
            self._flushing = False

    def _run(self, cmd: CloseSubflow | OpenSubflow) -> None:
        if isinstance(cmd, CloseSubflow):
            proto = self.protocols.get(cmd.subflow_id)
            if proto is None or proto.transport is None:
                return
            if cmd.reset and self.conn.ended:
                # The connection ended (MP_FASTCLOSE queued on this socket): deliver it,
                # then close; a poisoned subflow (connection alive) is reset at once.
                self._linger_close(proto.transport, SHUTDOWN_LINGER)
            elif cmd.reset:
                proto.transport.abort()
            else:
                proto.transport.close()
        elif self._opener is not None:
            self._opener(cmd)

    def _arm_timer(self) -> None:
        when = self.conn.get_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.conn.handle_timer(self.loop.time())
        self.flush()

    async def wait_change(self) -> None:
        """Wait until the next flush (new data, events, buffer space)."""
        self._changed.clear()
        await self._changed.wait()

    def shutdown(self, linger: float = SHUTDOWN_LINGER) -> None:
        """Close every socket once the engine is done with it.

        When the connection has ended (its last records, CLOSE or MP_FASTCLOSE, are
        queued: papers/SPEC.md section 10.5), each socket is flushed and half-closed, so
        those records still reach the peer when the buffers are full; a socket that has
        not closed `linger` seconds later is reset. A connection that has not ended (an
        error, or an abrupt stop) is reset at once, sending nothing more."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        graceful = (self.closed.is_set() or self.conn.ended) and linger > 0
        for proto in self.protocols.values():
            t = proto.transport
            if t is None or t.is_closing():
                continue
            if graceful:
                self._linger_close(t, linger)
            else:
                t.abort()

    def _linger_close(self, t: asyncio.Transport, linger: float) -> None:
        """Flush and half-close `t` (FIN after what is queued), reading on until the peer
        closes; reset it if it is still open `linger` seconds later."""
        can_eof = getattr(t, "can_write_eof", None)
        if can_eof is not None and can_eof():
            t.write_eof()
        else:
            t.close()
        self._lingering.append(self.loop.call_later(linger, _abort_if_open, t))

    async def wait_flushed(self, timeout: float = SHUTDOWN_LINGER) -> bool:
        """Wait (bounded) until :meth:`shutdown`'s flush ended, e.g. before the process
        exits and would drop what is still queued; True if it did."""
        deadline = self.loop.time() + timeout
        while self.loop.time() < deadline:
            if all(p.transport is None or p.closed for p in self.protocols.values()):
                return True
            await asyncio.sleep(0.02)
        return False

    def stats(self) -> dict[str, Any]:
        return {"state": self.conn.state.value, "error": self.conn.error,
                "subflows": self.conn.subflow_stats()}

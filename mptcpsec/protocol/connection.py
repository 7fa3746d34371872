"""The sans-I/O multipath connection engine: record handlers behind a dispatch table.

It is fed bytes per subflow and the current time, and returns bytes per subflow, timer
deadlines, commands for the adapter (open or close a subflow) and events. It never
touches a socket or a clock, so experiments can drive it over a simulated network.

Record handling follows papers/SPEC.md: every byte after the key exchange is in a
protected record; the first record on a subflow that fails authentication or parsing
poisons that subflow (SPEC section 10.4): it is reset, the peer is told on a clean
subflow, its unacknowledged data is re-sent elsewhere, and nothing it carried after the
last good record is delivered. Handlers raise ProtocolViolation; `_process` poisons.

The services live next door: keys (keys.py), joins (joins.py), flight, RTT and timers
(recovery.py), acknowledgements and windows (acks.py), state tables (states.py), the
per-subflow behaviour (subflow.py) and the fast-path codec (wire/fastpath.py).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence

from ..crypto.keyschedule import ConnectionKeys, Role
from ..crypto.kx import KeyExchangeResult, Step
from ..errors import (
    ConfigError,
    ConnectionError_,
    MptcpsecError,
    ProtocolViolation,
    TlsStreamError,
    WireError,
)
from ..wire import fastpath
from ..wire.header import RecordType
from ..wire.options import (
    AddAddr,
    Dss,
    MpCapable,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpsSubflow,
    MpsWindow,
    MptcpOption,
    MpTcpRst,
    PoisonReason,
    RemoveAddr,
)
from ..wire.records import (
    HandshakeFlags,
    KeyUpdateFlags,
    check_record,
    close_spec,
    control_spec,
    data_spec,
)
from .acks import AckPolicy, ack_value
from .addresses import AddressSignals
from .commands import CloseSubflow, Command, OpenSubflow
from .config import ConnectionConfig
from .ending import Ending
from .events import (
    Event,
    HandshakeCompleted,
    KeyUpdated,
    Refusal,
    RefusalReason,
    StreamEnded,
    SubflowEstablished,
)
from .handshake import Handshake, plain_hello
from .joins import JOIN_NONCE_LEN, MAC_LEN, make_join_authenticator
from .keys import KeyState
from .pathmanager import make_path_manager
from .poison import reason_name, violation
from .receiving import RecordReceiving
from .recovery import Timer, Timers, on_acked, on_fin_sent, on_kernel_rtt, on_sent
from .scheduler import batches, make_scheduler, signal_subflow
from .states import ConnectionState, check_connection_transition
from .stream import ReassemblyBuffer, SendBuffer
from .subflow import Address, Subflow, SubflowState, format_address as _fmt
from .tls_stream import TlsAppStream

__all__ = ["JOIN_NONCE_LEN", "MAC_LEN", "MAX_ENDED_SUBFLOWS", "CloseSubflow", "Command",
           "ConfigError", "Connection", "ConnectionError_", "ConnectionState", "OpenSubflow",
           "reason_name"]

#: Ended subflows a connection remembers (for statistics) before forgetting the oldest.
MAX_ENDED_SUBFLOWS = 4

_Handler = Callable[[Subflow, int, bytes, "bytes | bytearray"], None]


class Connection(RecordReceiving, Ending):
    """One multipath connection, client or server role (SPEC section 10).

    The receive path (receiving.py) and the ending paths (ending.py) are mixins; every
    other service is an object this class holds.
    """

    def __init__(self, config: ConnectionConfig, role: Role, now: float,
                 handshake_id: int | None = None) -> None:
        config.validate()
        self.config = config
        self.role = role
        self.mode = config.mode
        self.protected = config.mode == "mptcpsec"
        self._now = now
        self.state = ConnectionState.HANDSHAKE
        self.error: str | None = None
        self.handshake_id = handshake_id if handshake_id is not None else (
            int.from_bytes(os.urandom(8), "big"))
        self.subflows: dict[int, Subflow] = {}
        self._events: deque[Event] = deque()
        self._commands: deque[Command] = deque()
        self._next_subflow_id = 0
        self._handshake = Handshake(config, role, self.handshake_id)
        self._keys = KeyState(role, self.protected, config.algorithm)
        self._joins = make_join_authenticator(self._keys)
        self.timers = Timers(config.subflow_timeout, handshake=now + config.handshake_timeout)
        self.acks = AckPolicy(config, self.timers)
        self._prebuffer = bytearray()
        self._write_closed = False
        self.sendbuf: SendBuffer | None = None
        self.recvbuf: ReassemblyBuffer | None = None
        self._fin_sent = False
        self._fin_delivered = False
        self._scheduler = make_scheduler(config.scheduler)
        self.path_manager = make_path_manager(config.path_manager_name, config.announce)
        self._blocked_pairs: set[tuple[str, str]] = set()
        self._addresses = AddressSignals(self._keys, self.path_manager)
        self.peer_identity: str | None = None
        self.early_data_received = 0
        self._tls: TlsAppStream | None = None
        self._handlers: dict[int, _Handler] = {
            RecordType.DATA: self._on_data_record,
            RecordType.CONTROL: self._on_control_record,
            RecordType.KEY_UPDATE: self._on_key_update_record,
            RecordType.CLOSE: self._on_close_record,
            RecordType.HANDSHAKE: self._on_handshake_record,
            RecordType.JOIN: self._on_join_record,
        }
        self._signals: dict[type[MptcpOption], Callable[[Subflow, MptcpOption], None]] = {
            MpsWindow: self._on_window,
            AddAddr: self._on_add_addr,
            RemoveAddr: self._on_remove_addr,
            MpPrio: self._on_prio,
        }

    # ------------------------------------------------------------------ public API

    @property
    def established(self) -> bool:
        """Keys are in place and data may flow (SPEC section 10.1)."""
        return self.state is ConnectionState.ESTABLISHED

    @property
    def ended(self) -> bool:
        """Closed or failed: nothing more is sent or accepted (SPEC section 10.5)."""
        return self.state is ConnectionState.CLOSED or self.state is ConnectionState.FAILED

    @property
    def kx_result(self) -> KeyExchangeResult | None:
        """What the key exchange produced (nonces, identity; SPEC 7.1), once it completed."""
        return self._handshake.result

    @property
    def keys(self) -> ConnectionKeys | None:
        """The connection keys of the schedule (SPEC section 6.1); None before, or plain."""
        return self._keys.connection

    @property
    def join_failures(self) -> int:
        """Failed joins so far, bounded by `max_join_attempts` (SPEC section 10.2)."""
        return self._joins.failures

    def join_token(self) -> int | None:
        """The token a JOIN names this connection by (SPEC section 5.4)."""
        return self._keys.server_token()

    @property
    def send_buffer_space(self) -> int:
        """Bytes the application may write before it should wait (SPEC section 10.3)."""
        if self.sendbuf is None:
            return max(0, self.config.send_buffer - len(self._prebuffer))
        return self.sendbuf.writable

    @property
    def kx_paths(self) -> int:
        """Subflows the key exchange runs over: 2 for split-path, else 1 (SPEC 10.1)."""
        if not self.protected:
            return 1
        return 2 if self.config.key_exchange == "split-path" else 1

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None (SPEC section 10)."""
        return self._events.popleft() if self._events else None

    def report(self, event: Event) -> None:
        """Queue an event about this connection that its endpoint observed (a refused join).

        SPEC section 10.
        """
        self._events.append(event)

    def next_command(self) -> Command | None:
        """The oldest adapter command (open or close a subflow) not yet taken, or None.

        SPEC section 10.
        """
        return self._commands.popleft() if self._commands else None

    def add_subflow(self, local: Address, remote: Address, now: float,
                    backup: bool = False, address_id: int = 0) -> int:
        """Client: a TCP connection to the server is up; returns its id (SPEC 10.1, 10.2)."""
        if self.role is not Role.CLIENT:
            raise ConfigError("add_subflow is for the client; a server attaches subflows")
        self._now = now
        if self.ended:
            raise ConnectionError_(f"connection is {self.state.value}")
        sid = self._next_subflow_id
        self._next_subflow_id += 1
        if self.state is ConnectionState.HANDSHAKE and sid < self.kx_paths:
            sub = Subflow(sid, local, remote, SubflowState.HANDSHAKE, backup=backup,
                          initial=True, protected=self.protected, last_progress=now)
            self.subflows[sid] = sub
            if sid == self.kx_paths - 1:
                self._start_key_exchange()
            return sid
        if self.state is not ConnectionState.ESTABLISHED:
            raise ConnectionError_("joins need an established connection")
        if (local[0], remote[0]) in self._blocked_pairs:
            raise ConnectionError_(f"address pair {local[0]} -> {remote[0]} was poisoned on this "
                                   "connection and may not join again")
        sub = Subflow(sid, local, remote, SubflowState.JOINING, backup=backup,
                      address_id=address_id, protected=self.protected, last_progress=now,
                      join_deadline=now + self.config.handshake_timeout)
        self.subflows[sid] = sub
        self._joins.client_syn(sub)
        return sid

    def attach_subflow(self, sid: int, local: Address, remote: Address, now: float,
                       initial: bool) -> Subflow:
        """Server: the endpoint routed a new TCP connection here (SPEC section 10.1)."""
        self._now = now
        if sid in self.subflows:
            raise WireError(f"subflow id {sid} is already in use on this connection")
        state = SubflowState.HANDSHAKE if initial else SubflowState.JOINING
        sub = Subflow(sid, local, remote, state, initial=initial, protected=self.protected,
                      last_progress=now)
        if not initial:
            sub.join_deadline = now + self.config.handshake_timeout
        self.subflows[sid] = sub
        return sub

    def receive(self, sid: int, data: bytes | bytearray | memoryview, now: float) -> None:
        """Bytes arrived on a subflow: open and handle its records (SPEC sections 3, 4)."""
        self._now = now
        sub = self.subflows.get(sid)
        if sub is None or sub.state.ended or self.ended:
            return
        sub.rx += data
        sub.last_progress = now
        self._process(sub)
        self._after_receive()

    def transport_closed(self, sid: int, now: float, reset: bool = False) -> None:
        """The subflow's TCP connection ended (FIN or RST) (SPEC section 10.5)."""
        self._now = now
        sub = self.subflows.get(sid)
        if sub is None or sub.state.ended:
            return
        if sub.close_received:
            self._end_subflow(sub, SubflowState.CLOSED, "closed", clean=True)
        else:
            what = "reset" if reset else "FIN"
            self._end_subflow(sub, SubflowState.FAILED,
                              f"path failure: TCP {what} without an authenticated CLOSE",
                              clean=False)
        self._check_alive()

    def update_path(self, sid: int, rtt: float | None = None,
                    send_space: int | None = None) -> None:
        """The adapter's view of a subflow's socket: RTT and free send buffer (SPEC 10.3)."""
        sub = self.subflows.get(sid)
        if sub is None:
            return
        if rtt is not None:
            on_kernel_rtt(sub, rtt)
        if send_space is not None:
            sub.send_space = send_space

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue application bytes (back-pressure: send_buffer_space) (SPEC section 10.3)."""
        if self._write_closed:
            raise ConnectionError_("the stream was closed for writing")
        if self.ended:
            raise ConnectionError_(f"connection {self.state.value}: {self.error or 'closed'}")
        if self._tls is not None:
            try:
                data = self._tls.send(bytes(data))
            except TlsStreamError as exc:
                self._fail(str(exc), error=str(exc))
                raise ConnectionError_(str(exc)) from None
        if self.sendbuf is None:
            self._prebuffer += data
        else:
            self.sendbuf.write(data)

    def read(self, max_bytes: int = -1) -> bytes:
        """Take delivered bytes in order; a window update follows a large read (SPEC 10.3)."""
        rb = self.recvbuf
        if rb is None:
            return b""
        if self._tls is not None:
            data = self._tls.read(max_bytes)
            self._pump_tls()
            if not self._tls.readable:
                self._maybe_stream_ended()
            return data
        data = rb.read(max_bytes)
        if data and self.acks.window_update_due(rb):
            self._queue_ack(force=True)  # window update for a sender that was blocked
        if not rb.readable:
            self._maybe_stream_ended()
        return data

    @property
    def readable(self) -> int:
        """Bytes read() returns now (SPEC section 10)."""
        if self._tls is not None:
            return self._tls.readable
        return self.recvbuf.readable if self.recvbuf is not None else 0

    @property
    def at_eof(self) -> bool:
        """The peer's DATA_FIN arrived and every byte before it was read (SPEC 5.2)."""
        if self._tls is not None and self._tls.readable:
            return False
        return self.recvbuf is not None and self.recvbuf.at_eof

    def close(self) -> None:
        """Close the sending direction: DATA_FIN after the last byte (SPEC section 10.5)."""
        if self._write_closed:
            return
        if self._tls is not None and self.sendbuf is not None and not self.ended:
            self.sendbuf.write(self._tls.close())  # close_notify before DATA_FIN
        self._write_closed = True
        if self.sendbuf is not None:
            self.sendbuf.close()

    def abort(self, reason: str = "aborted by the application") -> None:
        """MP_FASTCLOSE on every subflow, then reset them all (SPEC section 5.3)."""
        if self.ended:
            return
        if self.state is ConnectionState.ESTABLISHED:
            peer_key = self._keys.peer_key64()
            for sub in self.subflows.values():
                if sub.usable:
                    sub.queue(control_spec([MpFastclose(receiver_key=peer_key)]))
                    sub.flush_control()
        self._fail(reason, error=f"aborted: {reason}", notify=False)

    def set_backup(self, sid: int, backup: bool) -> None:
        """MP_PRIO: mark our side of a subflow as backup (SPEC sections 5.3, 10.3)."""
        sub = self.subflows.get(sid)
        if sub is None or not sub.usable:
            raise ConnectionError_(f"subflow {sid} is not established")
        sub.backup = backup
        sub.queue(control_spec([MpPrio(backup=backup)]))

    def request_key_update(self, sid: int) -> None:
        """Move the subflow's sending direction to the next key now (SPEC section 6.2)."""
        sub = self.subflows.get(sid)
        if sub is None or not sub.usable or not self.protected:
            raise ConnectionError_(f"subflow {sid} cannot update its key now")
        self._key_update(sub)

    def data_to_send(self, now: float) -> list[tuple[int, bytes | bytearray]]:
        """Bytes to write per subflow, sealed just now, in order (SPEC section 10.3).

        Each buffer is handed over (the engine keeps no reference to it), not copied.
        """
        self._now = now
        if self.state in (ConnectionState.ESTABLISHED, ConnectionState.CLOSING):
            self._schedule_data()
        self._maybe_send_fin()
        out: list[tuple[int, bytes | bytearray]] = []
        for sub in self.subflows.values():
            sub.flush_control()
            if sub.out:
                out.append((sub.id, sub.take_output()))
            if sub.action and not sub.action_taken:
                sub.action_taken = True
                self._commands.append(CloseSubflow(sub.id, reset=sub.action == "reset"))
        self._prune_ended()
        return out

    def _prune_ended(self) -> None:
        """Forget all but the last MAX_ENDED_SUBFLOWS ended subflows.

        A long-lived connection whose paths fail and come back would otherwise keep every
        dead subflow (and the adapter its socket object) for its whole life.
        """
        ended = [s for s in self.subflows.values()
                 if s.state.ended and s.action_taken and not s.out and not s.inflight]
        for sub in ended[:max(0, len(ended) - MAX_ENDED_SUBFLOWS)]:
            del self.subflows[sub.id]

    def get_timer(self) -> float | None:
        """The next deadline (SPEC sections 10.1-10.5), or None."""
        return self.timers.next_deadline(self.subflows.values())

    def handle_timer(self, now: float) -> None:
        """Act on every deadline that passed (recovery.Timers, SPEC 10.1-10.5)."""
        self._now = now
        quiet = self.config.subflow_timeout
        for timer, sub in self.timers.expired(now, self.subflows):
            if timer is Timer.HANDSHAKE:
                if self.state is ConnectionState.HANDSHAKE:
                    self._fail("handshake timed out",
                               error=f"key exchange did not finish within "
                                     f"{self.config.handshake_timeout:g} s")
                    return
            elif timer is Timer.JOIN:
                assert sub is not None
                if sub.state is SubflowState.JOINING:
                    self._joins.failures += 1
                    self._end_subflow(sub, SubflowState.FAILED, "join timed out", clean=False,
                                      reset=True)
                    self._check_alive()  # it may have been the last subflow
            elif timer is Timer.PROGRESS:
                assert sub is not None
                self._end_subflow(sub, SubflowState.FAILED,
                                  f"path failure: no progress for {quiet:g} s",
                                  clean=False, reset=True)
                self._check_alive()
            else:
                self._queue_ack(force=True)

    def connection_info(self) -> dict[str, object] | None:
        """Public facts for captures and key logs: id, algorithm, nonces (SPEC section 9)."""
        r = self.kx_result
        if r is None:
            return None
        return {"connection_id": r.connection_id.hex(), "mode": self.mode,
                "key_exchange": self.config.key_exchange,
                "algorithm": self.config.algorithm.value,
                "client_nonce": r.client_nonce.hex(), "server_nonce": r.server_nonce.hex(),
                "kx_subflows": [s.id for s in self.subflows.values() if s.initial]}

    def subflow_stats(self) -> list[dict[str, object]]:
        """Each subflow's counters and state (SPEC section 10)."""
        return [s.stats() for s in self.subflows.values()]

    def close_keys(self) -> None:
        """Erase every key this connection holds (SPEC section 6.4)."""
        for sub in self.subflows.values():
            sub.wipe_keys()
        self._keys.wipe()
        self._handshake.close()

    def _set_state(self, new: ConnectionState, event: Event | None = None) -> None:
        """The one place the connection changes state (states.CONNECTION_TRANSITIONS)."""
        check_connection_transition(self.state, new)
        self.state = new
        if event is not None:
            self._events.append(event)

    def _maybe_stream_ended(self) -> None:
        rb = self.recvbuf
        if rb is not None and rb.at_eof and not self._fin_delivered:
            self._fin_delivered = True
            self._events.append(StreamEnded(self._now))
            self._maybe_close_subflows()

    def _pump_tls(self) -> None:
        """tls-over-plain: stream bytes into the TLS session, plaintext out (bounded)."""
        tls, rb, sb = self._tls, self.recvbuf, self.sendbuf
        if tls is None or rb is None or sb is None or self.ended:
            return
        room = tls.room
        raw = rb.read(room) if room > 0 else b""
        try:
            out = tls.pump(raw)
        except TlsStreamError as exc:
            self._fail(str(exc), error=str(exc))
            return
        if out and sb.fin_dsn is None:  # after our DATA_FIN nothing more can be sent
            sb.write(out)

    # ------------------------------------------------------------------ key exchange

    def _start_key_exchange(self) -> None:
        """Client: every key-exchange subflow is up; send the first handshake (SPEC 7.1)."""
        if not self.protected:
            plain_hello(self.subflows[0], self._keys.local_key)
            return
        try:
            step = self._handshake.start()
        except MptcpsecError as exc:
            self._fail(str(exc), error=f"key exchange failed: {exc}")
            return
        self._apply_step(step)

    def _apply_step(self, step: Step) -> None:
        """Send the exchange's messages; fail on its error; install its result (SPEC 7.1)."""
        self._handshake.write(step, self.subflows)
        if step.error is not None:
            self._fail(str(step.error), error=f"key exchange failed: {step.error}", notify=False)
            return
        if step.result is not None:
            self._install_keys(step.result)

    def _install_keys(self, result: KeyExchangeResult) -> None:
        """Generation-0 keys on every exchange subflow, then establish (SPEC 10.1)."""
        self._handshake.result = result
        self.peer_identity = result.peer_identity
        alg = self.config.algorithm.value
        schedule = self._keys.install(result)
        for sub in self.subflows.values():
            if sub.initial and not sub.state.ended:
                keys = schedule.subflow_keys(sub.id, result.client_nonce, result.server_nonce)
                send, recv = keys.send_keys(self.role), keys.recv_keys(self.role)
                sub.install_send(self._keys.sealer(send), send)
                sub.install_recv(self._keys.opener(recv), recv)
                sub.set_state(SubflowState.ESTABLISHED)
        self._establish(HandshakeCompleted(self._now, self.mode, self.config.key_exchange, alg))
        for sub in self.subflows.values():
            if sub.state is SubflowState.ESTABLISHED:
                self._events.append(SubflowEstablished(self._now, sub.id, _fmt(sub.local),
                                                       _fmt(sub.remote), sub.backup))
        # Records that arrived behind the last handshake message can be opened now.
        for sub in list(self.subflows.values()):
            if sub.rx and not sub.state.ended:
                self._process(sub)

    def _establish(self, event: HandshakeCompleted) -> None:
        """Both sequence spaces start at the IDSNs; buffered writes go out (SPEC 10.1)."""
        local_idsn, peer_idsn = self._keys.idsns()
        self._set_state(ConnectionState.ESTABLISHED)
        self.timers.handshake = None
        self.sendbuf = SendBuffer(local_idsn, self.config.send_buffer)
        self.recvbuf = ReassemblyBuffer(peer_idsn, self.config.receive_window)
        self.acks.start(local_idsn, peer_idsn, self.recvbuf.window_edge)
        if self.mode == "tls-over-plain":
            self._tls = TlsAppStream(self.role, self.config.tls, self.config.receive_window)
            self.sendbuf.write(self._tls.start())
        if self._prebuffer:
            self.sendbuf.write(self._prebuffer)
            self._prebuffer.clear()
        if self._write_closed:
            self.sendbuf.close()
        if self.role is Role.SERVER:
            self._announce_addresses()
        self._events.append(event)

    def _on_handshake_record(self, sub: Subflow, flags: int, opts: bytes,
                             body: bytes | bytearray) -> None:
        """HANDSHAKE: feed the key exchange, or plain MP_CAPABLE (SPEC sections 3, 7)."""
        if not flags & HandshakeFlags.CLEAR or sub.state is not SubflowState.HANDSHAKE:
            raise ProtocolViolation(PoisonReason.UNEXPECTED_RECORD,
                                    f"HANDSHAKE record on a subflow in state {sub.state.value}")
        if not self.protected:
            self._plain_handshake(sub, opts)
            return
        try:  # SPEC section 3: version 1 MP_CAPABLE with H set, SUBFLOW reason 0, no others
            check_record(RecordType.HANDSHAKE, flags, opts, len(body))
        except MptcpsecError as exc:
            raise violation(PoisonReason.MALFORMED_RECORD, exc) from None
        try:
            step = self._handshake.receive(sub.id, bytes(body))
        except ProtocolViolation:
            raise
        except MptcpsecError as exc:
            self._fail(str(exc), error=f"key exchange failed: {exc}")
            return
        self._apply_step(step)

    def _plain_handshake(self, sub: Subflow, opts: bytes) -> None:
        """Plain mode: one MP_CAPABLE round trip with keys in clear (SPEC 7.6, 10.1)."""
        try:
            decoded = check_record(RecordType.HANDSHAKE, HandshakeFlags.CLEAR, opts, 0)
        except MptcpsecError as exc:
            self._fail(str(exc), error=f"handshake failed: {exc}")
            return
        caps = [o for o in decoded if isinstance(o, MpCapable)]
        if not caps or caps[0].sender_key is None:
            self._fail("no MP_CAPABLE key", error="handshake failed: no MP_CAPABLE key")
            return
        if self.role is Role.SERVER:
            plain_hello(sub, self._keys.local_key)
        self._keys.set_plain(caps[0].sender_key)
        sub.set_state(SubflowState.ESTABLISHED)
        self._establish(HandshakeCompleted(self._now, self.mode, "none", "none"))
        self._events.append(SubflowEstablished(self._now, sub.id, _fmt(sub.local),
                                               _fmt(sub.remote), sub.backup))

    # ------------------------------------------------------------------ joins

    def server_join(self, sub: Subflow, syn: MpJoinSyn, nonce: bytes) -> Refusal | None:
        """Server: check a JOIN SYN routed here; a Refusal or None (SPEC 5.4, 10.2)."""
        if self._joins.failures >= self.config.max_join_attempts:
            return Refusal(RefusalReason.TOO_MANY_FAILED_JOINS,
                           f"too many failed join attempts on this connection "
                           f"({self._joins.failures})")
        live = [s for s in self.subflows.values() if not s.state.ended and s is not sub]
        if len(live) >= self.config.max_subflows:
            return Refusal(RefusalReason.SUBFLOW_LIMIT,
                           f"subflow limit ({self.config.max_subflows}) reached")
        if (sub.remote[0], sub.local[0]) in self._blocked_pairs:
            return Refusal(RefusalReason.PAIR_POISONED,
                           "address pair was poisoned on this connection")
        if self.state is not ConnectionState.ESTABLISHED:
            return Refusal(RefusalReason.NOT_ESTABLISHED, "connection not established")
        sub.backup = syn.backup
        sub.address_id = syn.address_id
        return self._joins.server_syn(sub, syn, nonce)

    def _on_join_record(self, sub: Subflow, flags: int, opts: bytes,
                        body: bytes | bytearray) -> None:
        """JOIN SYN/ACK at the joining end, JOIN ACK at the server (SPEC 5.4, 10.2)."""
        try:
            join = check_record(RecordType.JOIN, flags, opts, len(body))[0]
        except MptcpsecError as exc:
            raise violation(PoisonReason.MALFORMED_RECORD, exc) from None
        if self.role is Role.CLIENT and isinstance(join, MpJoinSynAck):
            if sub.state is not SubflowState.JOINING or sub.join.server_nonce:
                raise ProtocolViolation(PoisonReason.UNEXPECTED_RECORD,
                                        "JOIN SYN/ACK out of place")
            self._joins.client_synack(sub, join, bytes(body))
        elif self.role is Role.SERVER and isinstance(join, MpJoinAck):
            if sub.state is not SubflowState.JOINING or not sub.join.server_nonce:
                raise ProtocolViolation(PoisonReason.UNEXPECTED_RECORD, "JOIN ACK out of place")
            self._joins.server_ack(sub, join, bytes(body))
        else:
            raise ProtocolViolation(PoisonReason.UNEXPECTED_RECORD,
                                    f"unexpected {type(join).__name__} on subflow {sub.id}")
        sub.set_state(SubflowState.ESTABLISHED)
        sub.join_deadline = None
        self._events.append(SubflowEstablished(self._now, sub.id, _fmt(sub.local),
                                               _fmt(sub.remote), sub.backup, join=True))

    # ------------------------------------------------------------------ receiving

    def _process(self, sub: Subflow) -> None:
        """Consume every complete record in sub.rx; a violation poisons sub (SPEC 10.4)."""
        try:
            while sub.rx and not sub.state.ended and not self.ended:
                if not self._read_batch(sub):
                    return
        except ProtocolViolation as violation:
            self._poison(sub, violation.reason, violation.detail)

    def _on_record(self, sub: Subflow, rtype: int, flags: int, opts: bytes,
                   pt: bytes | bytearray) -> None:
        """Dispatch an opened record by type (SPEC section 3)."""
        handler = self._handlers.get(rtype)
        if handler is None:
            raise ProtocolViolation(PoisonReason.UNEXPECTED_RECORD, f"record type {rtype}")
        handler(sub, flags, opts, pt)

    def _decode(self, sub: Subflow, rtype: int, flags: int, opts: bytes,
                pt: bytes | bytearray) -> list[MptcpOption]:
        """The general codec's rules for a record's options (SPEC section 5)."""
        try:
            decoded = check_record(rtype, flags, opts, len(pt))
        except MptcpsecError as exc:
            raise violation(PoisonReason.MALFORMED_RECORD, exc) from None
        if sub.state is SubflowState.JOINING and rtype != RecordType.CONTROL:
            raise ProtocolViolation(PoisonReason.UNEXPECTED_RECORD,
                                    f"{RecordType(rtype).name} before the join completed")
        return decoded

    def _on_data_record(self, sub: Subflow, flags: int, opts: bytes,
                        pt: bytes | bytearray) -> None:
        """DATA: deliver the mapped bytes, take its DATA_ACK and signals (SPEC 5.2)."""
        # CLOSING: our CLOSE ended our direction only; the peer's may still carry data.
        if sub.state not in (SubflowState.ESTABLISHED, SubflowState.CLOSING) and not (
                sub.state is SubflowState.JOINING and sub.early_recv):
            raise ProtocolViolation(PoisonReason.UNEXPECTED_RECORD,
                                    f"DATA on a subflow in state {sub.state.value}")
        edge: int | None = None
        fast = fastpath.parse_data(opts)
        extra: Sequence[MptcpOption] = ()
        if fast is not None and fast.data_len == len(pt) + fast.data_fin and (
                len(pt) or fast.data_fin):
            data_ack, dsn, fin, edge = fast.data_ack, fast.dsn, fast.data_fin, fast.window_edge
        else:
            try:
                decoded = check_record(RecordType.DATA, flags, opts, len(pt))
            except MptcpsecError as exc:
                raise violation(PoisonReason.MALFORMED_RECORD, exc) from None
            dss = decoded[0]
            assert isinstance(dss, Dss) and dss.dsn is not None
            data_ack, dsn, fin, extra = dss.data_ack, dss.dsn, dss.data_fin, decoded[1:]
        if flags:
            raise ProtocolViolation(PoisonReason.MALFORMED_RECORD, "DATA record with flags set")
        self._on_data(sub, dsn, pt, fin)
        if data_ack is not None:
            self._on_data_ack(data_ack)
        if edge is not None:
            self.acks.on_peer_window(edge)
        for o in extra:
            self._on_signal(sub, o)

    def _on_control_record(self, sub: Subflow, flags: int, opts: bytes,
                           pt: bytes | bytearray) -> None:
        """CONTROL: DATA_ACK, MP_TCPRST reports, MP_FASTCLOSE and signals (SPEC 5.3)."""
        if not flags and not pt:
            ack = fastpath.parse_ack(opts)
            if ack is not None:
                self._on_data_ack(ack[0])  # what the general path below does, in its order
                self.acks.on_peer_window(ack[1])
                return
        reset: MpTcpRst | None = None
        for o in self._decode(sub, RecordType.CONTROL, flags, opts, pt):
            if isinstance(o, Dss) and o.data_ack is not None:
                self._on_data_ack(o.data_ack)
            elif isinstance(o, MpTcpRst):
                reset = o
            elif isinstance(o, MpsSubflow) and reset is not None:
                self._on_peer_reset(o.subflow_id, o.reason)
            elif isinstance(o, MpFastclose):
                if o.receiver_key != self._keys.own_key64():
                    raise ProtocolViolation(PoisonReason.MALFORMED_RECORD,
                                            "MP_FASTCLOSE with the wrong key")
                self._fail("peer sent MP_FASTCLOSE",
                           error="connection aborted by the peer (MP_FASTCLOSE)", notify=False)
                return
            else:
                self._on_signal(sub, o)

    def _on_key_update_record(self, sub: Subflow, flags: int, opts: bytes,
                              pt: bytes | bytearray) -> None:
        """KEY_UPDATE: open with the next generation from here on (SPEC 3, 6.2)."""
        self._decode(sub, RecordType.KEY_UPDATE, flags, opts, pt)
        keys = sub.recv_keys
        if not self.protected or keys is None:
            raise ProtocolViolation(PoisonReason.UNEXPECTED_RECORD, "KEY_UPDATE without keys")
        keys.update()
        sub.install_recv(self._keys.opener(keys), keys, early=sub.early_recv)
        self._events.append(KeyUpdated(self._now, sub.id, "receive", keys.generation))
        if flags & KeyUpdateFlags.UPDATE_REQUESTED:
            self._key_update(sub)

    def _on_close_record(self, sub: Subflow, flags: int, opts: bytes,
                         pt: bytes | bytearray) -> None:
        """CLOSE: the subflow ends cleanly; answer with CLOSE (SPEC 3, 10.5)."""
        for o in self._decode(sub, RecordType.CLOSE, flags, opts, pt):
            if isinstance(o, Dss) and o.data_ack is not None:
                self._on_data_ack(o.data_ack)
        sub.close_received = True
        if not sub.close_sent:
            sub.queue(close_spec(ack_value(self.recvbuf)))
            sub.close_sent = True
            sub.flush_control()
        self._end_subflow(sub, SubflowState.CLOSED, "closed", clean=True)
        self._check_alive()

    def _on_data(self, sub: Subflow, dsn: int, pt: bytes | bytearray, fin: bool) -> None:
        """Mapped bytes into the reassembly buffer; DATA_FIN ends the stream (SPEC 5.2)."""
        assert self.recvbuf is not None
        sub.bytes_received += len(pt)
        if sub.early_recv:
            self.early_data_received += len(pt)
        try:
            self.recvbuf.receive(dsn, pt)  # pt is already a copy out of the receive buffer
        except ValueError as exc:
            raise ProtocolViolation(PoisonReason.MALFORMED_RECORD, str(exc)) from None
        if fin:
            self.recvbuf.set_fin(dsn + len(pt))
        self._queue_ack(force=fin, via=sub)

    def _on_data_ack(self, data_ack: int) -> None:
        """DATA_ACK: free acknowledged bytes, drop covered flight, time paths (SPEC 10.3)."""
        sb = self.sendbuf
        if sb is None:
            return
        sb.ack(data_ack)
        on_acked(self.subflows.values(), sb, data_ack, self._now)
        self._maybe_close_subflows()

    def _on_signal(self, sub: Subflow, o: MptcpOption) -> None:
        """Dispatch a signal option by its type (SPEC 5.3); others carry nothing to act on."""
        handler = self._signals.get(type(o))
        if handler is not None:
            handler(sub, o)

    def _on_window(self, sub: Subflow, o: MptcpOption) -> None:
        """WINDOW: the peer's receive window edge moved (SPEC 5.3)."""
        assert isinstance(o, MpsWindow)
        self.acks.on_peer_window(o.edge)

    def _on_add_addr(self, sub: Subflow, o: MptcpOption) -> None:
        """ADD_ADDR: verify its HMAC, echo it, maybe join the address (SPEC 5.3, 10.6)."""
        assert isinstance(o, AddAddr)
        got = self._addresses.on_add_addr(o, sub.remote[1], self._now)
        if got is not None:
            event, echo, join = got
            self._events.append(event)
            sub.queue(echo)
            if join is not None:
                self._commands.append(join)

    def _on_remove_addr(self, sub: Subflow, o: MptcpOption) -> None:
        """REMOVE_ADDR: close the subflows to the withdrawn addresses (SPEC 5.3, 10.6)."""
        assert isinstance(o, RemoveAddr)
        for aid in o.address_ids:
            self._events.append(self._addresses.on_remove_addr(aid, self._now))
            for s in self.subflows.values():
                if s.address_id == aid and s.usable and s is not sub:
                    self._close_subflow(s)

    def _on_prio(self, sub: Subflow, o: MptcpOption) -> None:
        """MP_PRIO: the peer marked this subflow as backup or regular (SPEC 5.3, 10.3)."""
        assert isinstance(o, MpPrio)
        sub.backup = o.backup

    def _after_receive(self) -> None:
        if self._tls is not None:
            self._pump_tls()
        self._maybe_close_subflows()

    # ------------------------------------------------------------------ sending

    def _queue_ack(self, force: bool, via: Subflow | None = None) -> None:
        """A DATA_ACK + WINDOW now if due, else arm the delayed-ack timer (SPEC 10.3)."""
        rb = self.recvbuf
        if rb is None or not self.acks.due(rb, force, via, self._now):
            return
        best = self.acks.route(self._best_subflow)
        if best is not None:
            best.queue(self.acks.ack_spec(rb))

    def _best_subflow(self) -> Subflow | None:
        return signal_subflow(self.subflows.values())

    def _schedule_data(self) -> None:
        """Seal new and re-injected data on the scheduler's picks (SPEC 10.3)."""
        sb = self.sendbuf
        if sb is None or (not sb.pending_reinjection and sb.unsent == 0):
            return  # nothing to send: the common case at a receiver
        for subs, dsn, data in batches(sb, self.subflows, self._scheduler, self.acks.peer_edge,
                                       self.config.batch_bytes):
            for sub in subs:
                self._send_chunk(sub, dsn, data)

    def _send_chunk(self, sub: Subflow, dsn: int, data: bytes | memoryview) -> None:
        """DATA records for [dsn, dsn+len) on `sub`, carrying the current ack (SPEC 5.2)."""
        assert self.recvbuf is not None and self.sendbuf is not None
        sub.seal_data(dsn, data, self.acks.data_template(self.recvbuf), self.config.max_record)
        on_sent(sub, dsn, len(data), self.sendbuf.base, self._now)
        # Early (0-RTT join) keys are never updated: the peer accepts only data under them,
        # and the join replaces them with the subflow's keys one round trip later.
        if (self.protected and sub.sealer is not None and not sub.early_send
                and sub.sealer.counter >= self.config.update_after):
            self._key_update(sub)

    def _key_update(self, sub: Subflow) -> None:
        """KEY_UPDATE, then seal with the next generation (SPEC section 6.2)."""
        keys = sub.seal_key_update()
        sub.install_send(self._keys.sealer(keys), keys, early=sub.early_send)
        self._events.append(KeyUpdated(self._now, sub.id, "send", keys.generation))

    def _maybe_send_fin(self) -> None:
        """DATA_FIN once every byte before it was sent (SPEC 5.2, 10.5)."""
        sb = self.sendbuf
        if (sb is None or sb.fin_dsn is None or self._fin_sent or sb.next_dsn < sb.fin_dsn
                or sb.pending_reinjection):
            return
        best = self._best_subflow()
        if best is None:
            return
        best.queue(data_spec(sb.fin_dsn, b"", ack_value(self.recvbuf), data_fin=True))
        on_fin_sent(best, self._now)
        self._fin_sent = True
        if self.state is ConnectionState.ESTABLISHED:
            self._set_state(ConnectionState.CLOSING)

    # ------------------------------------------------------------------ path manager

    def _announce_addresses(self) -> None:
        """Server: ADD_ADDR for each configured address (SPEC 5.3, 10.6)."""
        sub = self._best_subflow()
        if sub is not None:
            for spec in self._addresses.announcements():
                sub.queue(spec)

    def withdraw_address(self, address_id: int) -> None:
        """Server: REMOVE_ADDR for an announced address (SPEC 5.3, 10.6)."""
        sub = self._best_subflow()
        if sub is not None:
            sub.queue(self._addresses.withdrawal(address_id))

"""Server side demultiplexer: which connection does a new TCP connection belong to?

The first record on an accepted TCP connection decides: a clear HANDSHAKE record names
the connection by the client's handshake id (MP_CAPABLE sender key) and its path
(SUBFLOW option), a JOIN record names it by the server's token. Until that record is
complete the endpoint holds at most one maximum record per pending socket, and a socket
that does not complete it in time is reset.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from ..crypto.keyschedule import Role
from ..errors import MptcpsecError
from ..wire.header import HEADER_LEN, RecordHeader, RecordType
from ..wire.options import MpCapable, MpJoinSyn, MpsSubflow, MptcpOption
from ..wire.records import check_header, check_record
from .config import ConnectionConfig
from .connection import Connection, ConnectionState
from .events import JoinRefused, Refusal, RefusalReason

Address = tuple[str, int]


@dataclass
class Routed:
    """The socket now belongs to `connection` as subflow `subflow_id`."""

    connection: Connection
    subflow_id: int
    new_connection: bool


@dataclass
class Rejected:
    """Reset the socket: its first record was not acceptable (SPEC sections 10.1, 10.2)."""

    reason: str
    code: RefusalReason = RefusalReason.MALFORMED_FIRST_RECORD


@dataclass
class _Pending:
    local: Address
    remote: Address
    deadline: float
    buf: bytearray = field(default_factory=bytearray)


class ServerEndpoint:
    """Routes accepted sockets to connections; creates connections for new handshakes."""

    def __init__(self, config: ConnectionConfig, max_pending: int = 1024,
                 max_connections: int = 10_000,
                 on_join_refused: Callable[[JoinRefused], None] | None = None) -> None:
        config.validate()
        self.config = config
        self.max_pending = max_pending
        self.max_connections = max_connections
        self._pending: dict[Hashable, _Pending] = {}
        self._evicted: list[Hashable] = []
        #: JOINs that may have overtaken the last handshake message of their connection
        #: on another path: (pending, decoded options, body, bytes after the record).
        self._parked: dict[Hashable, tuple[_Pending, list[MptcpOption], bytes, bytearray]] = {}
        self._by_hid: dict[int, Connection] = {}
        self._by_token: dict[int, Connection] = {}
        self.refused: list[JoinRefused] = []
        self._on_join_refused = on_join_refused

    @property
    def connections(self) -> list[Connection]:
        """The connections this endpoint routes to (SPEC section 10.1)."""
        return list(self._by_hid.values())

    def accept(self, handle: Hashable, local: Address, remote: Address, now: float) -> bool:
        """A socket was accepted; False means refuse it (no room even after eviction).

        When the pending table is full, the oldest socket that has not completed its first
        record is evicted (see `pop_evicted`): a flood of silent connections then cannot
        lock out a client that sends its first record at once.

        SPEC section 10.1.
        """
        self.forget_ended()
        if len(self._pending) + len(self._parked) >= self.max_pending:
            if not self._pending:
                return False
            oldest = min(self._pending, key=lambda h: self._pending[h].deadline)
            del self._pending[oldest]
            self._evicted.append(oldest)
        self._pending[handle] = _Pending(local, remote, now + self.config.handshake_timeout)
        return True

    def pop_evicted(self) -> list[Hashable]:
        """Sockets evicted from the full pending table since the last call (to be reset).

        SPEC section 10.1.
        """
        out, self._evicted = self._evicted, []
        return out

    def drop(self, handle: Hashable) -> None:
        """Forget a pending socket that closed (SPEC section 10.1)."""
        self._pending.pop(handle, None)
        self._parked.pop(handle, None)

    def receive(self, handle: Hashable, data: bytes, now: float) -> Routed | Rejected | None:
        """Bytes on a pending socket; None while its first record is incomplete.

        SPEC section 10.1.
        """
        parked = self._parked.get(handle)
        if parked is not None:
            parked[3].extend(data)
            if len(parked[3]) > self.config.receive_window:
                del self._parked[handle]
                return Rejected("too much data behind a JOIN waiting for its connection",
                                RefusalReason.PARKED_OVERFLOW)
            return None
        p = self._pending.get(handle)
        if p is None:
            return Rejected("unknown socket", RefusalReason.UNKNOWN_SOCKET)
        p.buf += data
        if len(p.buf) < HEADER_LEN:
            return None
        try:
            header = RecordHeader.unpack(p.buf)
            check_header(header, max_body=self.config.max_record + 16,
                         allowed_types=(RecordType.HANDSHAKE, RecordType.JOIN),
                         protected=self.config.mode == "mptcpsec")
        except MptcpsecError as exc:
            del self._pending[handle]
            return Rejected(f"first record: {exc}")
        if len(p.buf) < header.record_len:
            return None
        del self._pending[handle]
        opts = bytes(p.buf[HEADER_LEN:HEADER_LEN + header.opt_len])
        body = bytes(p.buf[HEADER_LEN + header.opt_len:header.record_len])
        try:
            if header.type == RecordType.JOIN:
                decoded = check_record(header.type, header.flags, opts, len(body))
                return self._join(handle, p, decoded, body,
                                  bytearray(p.buf[header.record_len:]), now)
            return self._handshake(p, opts, bytes(p.buf), now)
        except MptcpsecError as exc:
            return Rejected(f"first record: {exc}")

    def _handshake(self, p: _Pending, opts: bytes, data: bytes, now: float) -> Routed | Rejected:
        # The per-type option rules (SPEC section 3) apply before the record is routed.
        decoded = check_record(RecordType.HANDSHAKE, 0x01, opts, len(data))
        caps = [o for o in decoded if isinstance(o, MpCapable)]
        subs = [o for o in decoded if isinstance(o, MpsSubflow)]
        if len(caps) != 1 or caps[0].sender_key is None:
            return Rejected("first HANDSHAKE record without an MP_CAPABLE handshake id",
                            RefusalReason.NO_HANDSHAKE_ID)
        hid = caps[0].sender_key
        path = subs[0].subflow_id if subs else 0
        conn = self._by_hid.get(hid)
        new = conn is None
        if conn is None:
            if len(self._by_hid) >= self.max_connections:
                return Rejected("connection limit reached", RefusalReason.CONNECTION_LIMIT)
            conn = Connection(self.config, Role.SERVER, now, handshake_id=hid)
            self._by_hid[hid] = conn
        elif conn.state is not ConnectionState.HANDSHAKE:
            return Rejected("handshake id of a connection past its handshake",
                            RefusalReason.PAST_HANDSHAKE)
        if path >= conn.kx_paths:
            if new:
                del self._by_hid[hid]
            return Rejected(f"handshake on path {path}: the key exchange uses "
                            f"{conn.kx_paths} path(s)", RefusalReason.HANDSHAKE_PATH)
        try:
            conn.attach_subflow(path, p.local, p.remote, now, initial=True)
        except MptcpsecError as exc:
            return Rejected(str(exc), RefusalReason.SUBFLOW_ID_IN_USE)
        conn.receive(path, data, now)
        return Routed(conn, path, new)

    def _join(self, handle: Hashable, p: _Pending, decoded: list[MptcpOption], body: bytes,
              rest: bytearray, now: float) -> Routed | Rejected | None:
        syn = decoded[0]
        if not isinstance(syn, MpJoinSyn):
            return Rejected("first JOIN record is not an MP_JOIN SYN",
                            RefusalReason.NOT_A_JOIN_SYN)
        sid = next(o.subflow_id for o in decoded if isinstance(o, MpsSubflow))
        self._index_tokens()
        conn = self._by_token.get(syn.token)
        if conn is None and now < p.deadline and any(
                c.state is ConnectionState.HANDSHAKE for c in self._by_hid.values()):
            # The client may have sent this JOIN as its key exchange completed, and it
            # overtook the last handshake message on a slower path: wait (until the
            # pending deadline) for a handshake to complete, then route it again.
            self._parked[handle] = (p, decoded, body, rest)
            return None
        if conn is None or conn.ended:
            return self._refuse(Refusal(RefusalReason.UNKNOWN_TOKEN,
                                        f"unknown token {syn.token:#010x}"), p, now)
        try:
            sub = conn.attach_subflow(sid, p.local, p.remote, now, initial=False)
        except MptcpsecError as exc:
            return self._refuse(Refusal(RefusalReason.SUBFLOW_ID_IN_USE, str(exc)), p, now, conn)
        refusal = conn.server_join(sub, syn, body)
        if refusal is not None:
            del conn.subflows[sid]
            return self._refuse(refusal, p, now, conn)
        if rest:
            conn.receive(sid, bytes(rest), now)
        return Routed(conn, sid, False)

    def retry_parked(self, now: float) -> list[tuple[Hashable, Routed | Rejected]]:
        """Route parked JOINs again (call when a connection completed its handshake).

        SPEC section 10.1.
        """
        parked, self._parked = self._parked, {}
        out: list[tuple[Hashable, Routed | Rejected]] = []
        for handle, (p, decoded, body, rest) in parked.items():
            try:
                result = self._join(handle, p, decoded, body, rest, now)
            except MptcpsecError as exc:
                result = Rejected(f"first record: {exc}")
            if result is not None:
                out.append((handle, result))
        return out

    def _refuse(self, refusal: Refusal, p: _Pending, now: float,
                conn: Connection | None = None) -> Rejected:
        event = JoinRefused(now, refusal.detail, f"{p.remote[0]}:{p.remote[1]}", refusal.code)
        self.refused.append(event)
        del self.refused[:-100]  # bounded
        if conn is not None:
            conn.report(event)
        if self._on_join_refused is not None:
            self._on_join_refused(event)
        return Rejected(f"join refused: {refusal.detail}", refusal.code)

    def _index_tokens(self) -> None:
        for conn in self._by_hid.values():
            if conn.state is ConnectionState.HANDSHAKE:
                continue
            token = self.token_of(conn)
            if token is not None:
                self._by_token.setdefault(token, conn)

    @staticmethod
    def token_of(conn: Connection) -> int | None:
        """The token a JOIN names `conn` by (SPEC section 5.4)."""
        return conn.join_token()

    def expired(self, now: float) -> list[Hashable]:
        """Pending sockets whose first record did not arrive in time (to be reset).

        SPEC section 10.1.
        """
        out = [h for h, p in self._pending.items() if now >= p.deadline]
        for h in out:
            del self._pending[h]
        late = [h for h, (p, *_) in self._parked.items() if now >= p.deadline]
        for h in late:
            del self._parked[h]
        return out + late

    def next_deadline(self) -> float | None:
        """When ``expired`` next returns something: the earliest pending or parked deadline."""
        times = [p.deadline for p in self._pending.values()]
        times += [p.deadline for p, *_ in self._parked.values()]
        return min(times, default=None)

    def forget_ended(self) -> None:
        """Drop connections that ended (their tokens can no longer be joined).

        SPEC section 10.1.
        """
        for hid, conn in list(self._by_hid.items()):
            if conn.ended:
                del self._by_hid[hid]
        for token, conn in list(self._by_token.items()):
            if conn.ended:
                del self._by_token[token]

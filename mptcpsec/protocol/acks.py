"""Acknowledgement and window policy (SPEC section 10.3).

The receiving side decides when a DATA_ACK is due (every `ack_every` bytes, or
`ack_delay` after data arrived, or at once when asked) and what window edge to advertise;
the sending side keeps the peer's advertised edge. Every DATA record also carries the
current DATA_ACK and window, so taking a DATA template counts as sending an ack: that is
`mark_sent`, explicit, never hidden in a getter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..wire import fastpath
from .config import ConnectionConfig
from .recovery import Timers
from .stream import ReassemblyBuffer

if TYPE_CHECKING:
    from .subflow import Subflow


def ack_value(rb: ReassemblyBuffer | None) -> int:
    """The DATA_ACK to send: next DSN expected, one past a received DATA_FIN (SPEC 5.2)."""
    if rb is None:
        return 0
    ack = rb.next_dsn
    if rb.fin_dsn is not None and rb.next_dsn >= rb.fin_dsn:
        ack = rb.fin_dsn + 1
    return ack & fastpath.U64_MASK


class AckPolicy:
    """When to acknowledge, where, and the window both ways (SPEC section 10.3)."""

    def __init__(self, config: ConnectionConfig, timers: Timers) -> None:
        self.ack_every = config.ack_every
        self.ack_delay = config.ack_delay
        self.receive_window = config.receive_window
        self.timers = timers
        self.sent = 0  # next DSN covered by the last DATA_ACK we sent
        self.window_sent = 0  # the last window edge we advertised
        self.via: Subflow | None = None  # where the data being acknowledged arrived
        self.peer_edge = 0  # the peer's window edge: we send no new DSN at or beyond it

    def start(self, local_idsn: int, peer_idsn: int, window_edge: int) -> None:
        """Both sequence spaces start (SPEC section 10.1)."""
        self.sent = peer_idsn
        self.window_sent = window_edge
        # Until the peer advertises its window, assume one as large as ours.
        self.peer_edge = local_idsn + self.receive_window

    def on_peer_window(self, edge: int) -> None:
        """A WINDOW option or a DATA/ACK record's edge: it only moves right (SPEC 5.3)."""
        if edge > self.peer_edge:
            self.peer_edge = edge

    def due(self, rb: ReassemblyBuffer, force: bool, via: Subflow | None, now: float) -> bool:
        """Data arrived (on `via`) or the app read: is a DATA_ACK due now? Arms the timer.

        SPEC section 10.3.
        """
        if via is not None:
            self.via = via
        pending = rb.next_dsn - self.sent
        if force or pending >= self.ack_every:
            return True
        if pending > 0 and self.timers.ack is None:
            self.timers.ack = now + self.ack_delay
        return False

    def window_update_due(self, rb: ReassemblyBuffer) -> bool:
        """Reading opened the window by a quarter: tell a sender that may be blocked.

        SPEC section 10.3.
        """
        return rb.window_edge - self.window_sent >= self.receive_window // 4

    def route(self, best: Callable[[], Subflow | None]) -> Subflow | None:
        """Acknowledge on the path the data came in on while it is usable, else the best.

        A path that swallows records then stalls only its own flight, never a clean one's.

        SPEC section 10.3.
        """
        via = self.via
        return via if via is not None and via.usable else best()

    def mark_sent(self, rb: ReassemblyBuffer) -> tuple[int, int]:
        """An ack is being sent now: returns (DATA_ACK, window edge) and resets the timer.

        SPEC section 10.3.
        """
        edge = rb.window_edge
        value = ack_value(rb)
        self.sent = rb.next_dsn
        self.window_sent = edge
        self.timers.ack = None
        return value, edge

    def ack_spec(self, rb: ReassemblyBuffer) -> tuple[int, int, bytes, bytes]:
        """A CONTROL record with DATA_ACK and WINDOW, marked as sent (SPEC 10.3)."""
        value, edge = self.mark_sent(rb)
        return fastpath.ack_spec(value, edge)

    def data_template(self, rb: ReassemblyBuffer) -> bytes:
        """DATA options carrying the current DATA_ACK and WINDOW, marked as sent (SPEC 5.2)."""
        value, edge = self.mark_sent(rb)
        return fastpath.data_template(value, edge)

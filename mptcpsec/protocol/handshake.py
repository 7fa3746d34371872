"""Driving the key exchange over the key-exchange subflows (SPEC sections 7.1 and 10.1).

The exchange itself (crypto.kx) is a pure state machine of messages per path; this module
builds it for the configured kind and role, wraps its messages in clear HANDSHAKE records
(the client's first record on each path names the connection by its handshake id and the
path by a SUBFLOW option) and hands the result back to the connection.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..crypto.keyschedule import Role
from ..crypto.kx import KeyExchange, KeyExchangeResult, Step
from ..errors import ProtocolViolation
from ..wire.options import MpCapable, MpsSubflow, MptcpOption, PoisonReason
from ..wire.records import clear_handshake
from .config import ConnectionConfig
from .keys import make_key_exchange
from .subflow import Subflow


class Handshake:
    """The key exchange of one connection and the records that carry it (SPEC 7.1)."""

    def __init__(self, config: ConnectionConfig, role: Role, handshake_id: int) -> None:
        self.config = config
        self.role = role
        self.handshake_id = handshake_id
        self.kx: KeyExchange | None = None
        self.result: KeyExchangeResult | None = None

    def start(self) -> Step:
        """Client: build the exchange and its first messages (raises MptcpsecError).

        SPEC section 7.1.
        """
        self.kx = make_key_exchange(self.config, self.role)
        return self.kx.start()

    def receive(self, sid: int, body: bytes) -> Step:
        """A HANDSHAKE record's body on subflow `sid` (raises MptcpsecError) (SPEC section 7.1)."""
        if self.kx is None:
            if self.role is Role.CLIENT:
                raise ProtocolViolation(PoisonReason.UNEXPECTED_RECORD, "handshake before start")
            self.kx = make_key_exchange(self.config, self.role)
        return self.kx.receive(sid, body)

    def write(self, step: Step, subflows: Mapping[int, Subflow]) -> None:
        """Each message of `step` in a clear HANDSHAKE record on its path (SPEC 10.1)."""
        for path, message in step.send:
            sub = subflows.get(path)
            if sub is None or sub.state.ended:
                continue
            opts: list[MptcpOption] = []
            if self.role is Role.CLIENT and not sub.handshake_options_sent:
                opts = [MpCapable(sender_key=self.handshake_id), MpsSubflow(path)]
            sub.handshake_options_sent = True
            sub.out += clear_handshake(message, opts)

    def close(self) -> None:
        """Erase the exchange's secrets (SPEC section 6.4)."""
        if self.result is not None:
            self.result.wipe()
        if self.kx is not None:
            self.kx.close()


def plain_hello(sub: Subflow, key: int) -> None:
    """Plain mode: MP_CAPABLE with this end's 64-bit key in clear (SPEC section 7.6)."""
    sub.out += clear_handshake(b"", [MpCapable(sender_key=key)])

"""Address signalling: ADD_ADDR and REMOVE_ADDR in and out (SPEC sections 5.3 and 10.6).

A server announces its other addresses with ADD_ADDR, each with the RFC 8684 HMAC over the
connection's 64-bit keys (on top of the record tag), and withdraws them with REMOVE_ADDR.
A client verifies, echoes and records announcements, and asks its path manager whether
to join them. The connection's signal handlers call into this object.
"""

from __future__ import annotations

import ipaddress

from ..crypto.keyschedule import Role
from ..crypto.rfc8684 import add_addr_hmac, verify
from ..errors import ProtocolViolation
from ..wire.options import AddAddr, PoisonReason, RemoveAddr
from ..wire.records import RecordSpec, control_spec
from .commands import OpenSubflow
from .events import AddressAnnounced
from .keys import KeyState
from .pathmanager import PathManager


class AddressSignals:
    """The peer's announced addresses and our announcements (SPEC 10.6)."""

    def __init__(self, keys: KeyState, path_manager: PathManager) -> None:
        self.keys = keys
        self.path_manager = path_manager
        self.peer_addresses: dict[int, tuple[str, int | None]] = {}

    def announcements(self) -> list[RecordSpec]:
        """Server: one CONTROL record with ADD_ADDR per address, ids 1, 2, ... (SPEC 5.3)."""
        specs = []
        for i, (host, port) in enumerate(self.path_manager.addresses_to_announce(), start=1):
            addr = ipaddress.ip_address(host)
            mac = add_addr_hmac(self.keys.own_key64(), self.keys.peer_key64(), i, addr, port)
            specs.append(control_spec([AddAddr(i, addr, port, hmac=mac)]))
        return specs

    @staticmethod
    def withdrawal(address_id: int) -> RecordSpec:
        """Server: REMOVE_ADDR for an announced address (SPEC 5.3)."""
        return control_spec([RemoveAddr((address_id,))])

    def on_add_addr(self, o: AddAddr, default_port: int, now: float
                    ) -> tuple[AddressAnnounced, RecordSpec, OpenSubflow | None] | None:
        """Client: verify an ADD_ADDR; (event, echo record, join command) (SPEC 5.3).

        None for an echo, or at a server (a client announces nothing in this version).
        """
        if o.echo or self.keys.role is not Role.CLIENT:
            return None
        want = add_addr_hmac(self.keys.peer_key64(), self.keys.own_key64(), o.address_id,
                             o.address, o.port)
        if o.hmac is None or not verify(want, o.hmac):
            raise ProtocolViolation(PoisonReason.MALFORMED_RECORD, "ADD_ADDR HMAC mismatch")
        port = o.port if o.port is not None else default_port
        self.peer_addresses[o.address_id] = (str(o.address), port)
        event = AddressAnnounced(now, o.address_id, str(o.address), port)
        echo = control_spec([AddAddr(o.address_id, o.address, o.port, echo=True)])
        join = None
        if self.path_manager.join_announced(o.address_id, (str(o.address), port)):
            join = OpenSubflow((str(o.address), port), None, False, o.address_id)
        return event, echo, join

    def on_remove_addr(self, address_id: int, now: float) -> AddressAnnounced:
        """Forget a withdrawn address; the event reports it (SPEC 5.3)."""
        addr = self.peer_addresses.pop(address_id, None)
        return AddressAnnounced(now, address_id, addr[0] if addr else "",
                                addr[1] if addr else None, removed=True)

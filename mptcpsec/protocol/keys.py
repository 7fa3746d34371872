"""A connection's key state: the mptcpsec key schedule, or RFC 8684 keys in plain mode.

mptcpsec derives everything from the connection secret of the key exchange (SPEC section
6); `plain` and `tls-over-plain` exchange two 64-bit keys in clear, as RFC 8684 does
(SPEC section 7.6). Either way the rest of the engine asks this object for the values it
needs: the 64-bit keys (MP_FASTCLOSE, ADD_ADDR HMACs), the IDSNs and the server's token.
"""

from __future__ import annotations

import os
from dataclasses import replace

from ..crypto import get_backend
from ..crypto.aead import Algorithm, Backend, Opener, Sealer
from ..crypto.keyschedule import ConnectionKeys, DirectionKeys, KeySchedule, Role
from ..crypto.kx import KeyExchange, KeyExchangeResult
from ..crypto.rfc8684 import idsn_from_key, token_from_key
from ..errors import ConfigError
from .config import ConnectionConfig


def make_key_exchange(config: ConnectionConfig, role: Role) -> KeyExchange:
    """The configured key exchange for `role` (SPEC section 7)."""
    kind = config.key_exchange
    if kind == "psk":
        from ..crypto.psk import PskConfig, PskKeyExchange

        if config.psk is None:
            raise ConfigError("key exchange psk needs a pre-shared key (config.psk)")
        return PskKeyExchange(PskConfig(role, config.psk.psk, config.psk.identity,
                                        config.psk.keylog_file))
    if kind == "tls":
        from ..crypto.tls_keys import TlsKeyExchange

        if config.tls is None:
            raise ConfigError("key exchange tls needs certificates (config.tls)")
        return TlsKeyExchange(replace(config.tls, role=role))
    from ..crypto.splitpath import SplitPathConfig, split_path

    sp = config.split_path or SplitPathConfig(role)
    return split_path(replace(sp, role=role))


class KeyState:
    """Keys of one connection, mptcpsec or RFC 8684 (SPEC sections 6 and 7.6)."""

    def __init__(self, role: Role, protected: bool, algorithm: Algorithm) -> None:
        self.role = role
        self.protected = protected
        self.algorithm = algorithm
        self.backend: Backend | None = get_backend() if protected else None
        self.schedule: KeySchedule | None = None
        self.connection: ConnectionKeys | None = None
        #: RFC 8684: this end's random 64-bit key, sent in clear in plain mode.
        self.local_key = int.from_bytes(os.urandom(8), "big")
        self.plain: tuple[int, int] | None = None  # (client key, server key)

    def install(self, result: KeyExchangeResult) -> KeySchedule:
        """The exchange completed: derive the schedule and connection keys (SPEC 6.1)."""
        self.schedule = result.schedule(self.algorithm.value)
        self.connection = self.schedule.connection
        return self.schedule

    def set_plain(self, peer_key: int) -> None:
        """Plain mode: the peer's MP_CAPABLE key arrived (SPEC section 7.6)."""
        if self.role is Role.SERVER:
            self.plain = (peer_key, self.local_key)
        else:
            self.plain = (self.local_key, peer_key)

    def idsns(self) -> tuple[int, int]:
        """(our IDSN, the peer's IDSN): where each data sequence space starts (SPEC 6.1)."""
        client = self.role is Role.CLIENT
        if self.protected:
            assert self.connection is not None
            keys = self.connection
            return ((keys.client_idsn, keys.server_idsn) if client
                    else (keys.server_idsn, keys.client_idsn))
        assert self.plain is not None
        c, s = self.plain
        return ((idsn_from_key(c), idsn_from_key(s)) if client
                else (idsn_from_key(s), idsn_from_key(c)))

    def peer_key64(self) -> int:
        """The peer's 64-bit key (MP_FASTCLOSE receiver key, ADD_ADDR HMAC; SPEC 5.3)."""
        if self.protected and self.connection is not None:
            return int.from_bytes(self.connection.key64(self.role.peer), "big")
        if self.plain is not None:
            c, s = self.plain
            return s if self.role is Role.CLIENT else c
        return 0

    def own_key64(self) -> int:
        """This end's 64-bit key (SPEC section 5.3)."""
        if self.protected and self.connection is not None:
            return int.from_bytes(self.connection.key64(self.role), "big")
        return self.local_key

    def server_token(self) -> int | None:
        """The token that names the connection in a JOIN (SPEC section 5.4)."""
        if self.protected:
            return self.connection.token(Role.SERVER) if self.connection is not None else None
        if self.role is Role.SERVER:
            return token_from_key(self.local_key)
        return token_from_key(self.peer_key64())

    def sealer(self, keys: DirectionKeys) -> Sealer:
        """An AEAD sealer keyed once for one subflow direction (SPEC section 4)."""
        assert self.backend is not None
        return self.backend.sealer(self.algorithm, bytes(keys.key), bytes(keys.iv))

    def opener(self, keys: DirectionKeys) -> Opener:
        """An AEAD opener keyed once for one subflow direction (SPEC section 4)."""
        assert self.backend is not None
        return self.backend.opener(self.algorithm, bytes(keys.key), bytes(keys.iv))

    def wipe(self) -> None:
        """Erase the schedule's secrets (SPEC section 6.4)."""
        if self.schedule is not None:
            self.schedule.wipe()

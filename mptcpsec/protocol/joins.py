"""Join authentication, one class per dialect: mptcpsec (SPEC 5.4, 6.3) and RFC 8684.

A join is three records: the joining end's JOIN SYN, the server's JOIN SYN/ACK, the
joining end's JOIN ACK. `MptcpsecJoin` binds them with MACs keyed from the connection
secret and switches the subflow to its own keys (0-RTT data under early keys until then);
`PlainJoin` is the RFC 8684 MP_JOIN with HMACs over the keys sent in clear, for the plain
comparison modes (SPEC section 7.6). Checks that fail raise ProtocolViolation(JOIN_FAILED);
the server's refusals before any reply are returned as a Refusal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..crypto.keyschedule import DirectionKeys, Role, join_mac
from ..crypto.rfc8684 import join_ack_hmac, join_synack_hmac, verify
from ..errors import ProtocolViolation
from ..wire.options import MpJoinAck, MpJoinSyn, MpJoinSynAck, PoisonReason
from ..wire.records import join_record
from .events import Refusal, RefusalReason
from .keys import KeyState

if TYPE_CHECKING:
    from .subflow import Subflow

JOIN_NONCE_LEN = 32
MAC_LEN = 32


@dataclass
class JoinState:
    """What a join in progress has exchanged so far (empty for the initial subflows)."""

    client_nonce: bytes = b""
    server_nonce: bytes = b""
    fields: bytes = b""  # the JOIN SYN fields both MACs bind (SPEC section 6.3)
    pending_recv: DirectionKeys | None = None  # server: keys for after the JOIN ACK


def join_fields(syn: MpJoinSyn) -> bytes:
    """The JOIN SYN fields both join MACs bind: address ID and backup flag (SPEC 6.3)."""
    return bytes([syn.address_id, int(syn.backup)])


class JoinAuthenticator:
    """One join dialect; `failures` counts failed joins against `max_join_attempts`."""

    def __init__(self, keys: KeyState) -> None:
        self.keys = keys
        self.failures = 0

    def client_syn(self, sub: Subflow) -> None:  # pragma: no cover - abstract
        """Joining end: write the JOIN SYN (SPEC section 5.4)."""
        raise NotImplementedError

    def server_syn(self, sub: Subflow, syn: MpJoinSyn,
                   nonce: bytes) -> Refusal | None:  # pragma: no cover - abstract
        """Server: check a JOIN SYN and answer with a JOIN SYN/ACK (SPEC section 5.4)."""
        raise NotImplementedError

    def client_synack(self, sub: Subflow, synack: MpJoinSynAck,
                      body: bytes) -> None:  # pragma: no cover - abstract
        """Joining end: check the JOIN SYN/ACK and answer with the JOIN ACK (SPEC 5.4)."""
        raise NotImplementedError

    def server_ack(self, sub: Subflow, ack: MpJoinAck,
                   body: bytes) -> None:  # pragma: no cover - abstract
        """Server: check the JOIN ACK that completes the join (SPEC section 5.4)."""
        raise NotImplementedError


class MptcpsecJoin(JoinAuthenticator):
    """Joins authenticated from the connection secret, with 0-RTT data (SPEC 6.3, 10.2)."""

    def __init__(self, keys: KeyState) -> None:
        super().__init__(keys)
        self.nonces: set[bytes] = set()  # client nonces seen: a replayed JOIN is refused

    def _mac(self, role: Role, sub: Subflow, server_nonce: bytes) -> bytes:
        keys = self.keys.connection
        assert keys is not None
        return join_mac(keys.join_key(role), role, keys.token(Role.SERVER), sub.id,
                        sub.join.client_nonce, server_nonce, sub.join.fields)

    def client_syn(self, sub: Subflow) -> None:
        """JOIN SYN with a 32-byte nonce, then seal under the early keys (SPEC 5.4, 10.2)."""
        schedule, keys = self.keys.schedule, self.keys.connection
        assert schedule is not None and keys is not None
        nonce = os.urandom(JOIN_NONCE_LEN)
        sub.join.client_nonce = nonce
        syn = MpJoinSyn(address_id=sub.address_id, token=keys.token(Role.SERVER),
                        nonce=int.from_bytes(nonce[:4], "big"), backup=sub.backup)
        sub.join.fields = join_fields(syn)
        sub.out += join_record(syn, sub.id, nonce)
        early = schedule.early_keys(sub.id, nonce)
        sub.install_send(self.keys.sealer(early), early, early=True)

    def server_syn(self, sub: Subflow, syn: MpJoinSyn, nonce: bytes) -> Refusal | None:
        """Nonce checks and replay refusal, then JOIN SYN/ACK with the server MAC (SPEC 5.4)."""
        if len(nonce) != JOIN_NONCE_LEN or syn.nonce != int.from_bytes(nonce[:4], "big"):
            self.failures += 1
            return Refusal(RefusalReason.MALFORMED_NONCE, "malformed join nonce")
        if nonce in self.nonces:
            self.failures += 1
            return Refusal(RefusalReason.REPLAYED_NONCE,
                           "replayed join (client nonce seen before)")
        self.nonces.add(nonce)
        schedule = self.keys.schedule
        assert schedule is not None
        sub.join.client_nonce = nonce
        sub.join.server_nonce = server_nonce = os.urandom(JOIN_NONCE_LEN)
        sub.join.fields = join_fields(syn)
        mac = self._mac(Role.SERVER, sub, server_nonce)
        ack = MpJoinSynAck(address_id=0, hmac=mac[:8],
                           nonce=int.from_bytes(server_nonce[:4], "big"))
        sub.out += join_record(ack, None, server_nonce + mac)
        keys = schedule.subflow_keys(sub.id, nonce, server_nonce)
        send = keys.send_keys(Role.SERVER)
        sub.install_send(self.keys.sealer(send), send)
        early = schedule.early_keys(sub.id, nonce)
        sub.install_recv(self.keys.opener(early), early, early=True)
        sub.join.pending_recv = keys.c2s
        return None

    def client_synack(self, sub: Subflow, synack: MpJoinSynAck, body: bytes) -> None:
        """Verify the server MAC; JOIN ACK, then the subflow's own keys (SPEC 5.4, 6.3)."""
        schedule = self.keys.schedule
        assert schedule is not None
        if len(body) != JOIN_NONCE_LEN + MAC_LEN:
            raise ProtocolViolation(PoisonReason.JOIN_FAILED, "malformed JOIN SYN/ACK body")
        sn, mac = body[:JOIN_NONCE_LEN], body[JOIN_NONCE_LEN:]
        want = self._mac(Role.SERVER, sub, sn)
        if (not verify(want, mac) or not verify(want[:8], synack.hmac)
                or synack.nonce != int.from_bytes(sn[:4], "big")):
            raise ProtocolViolation(PoisonReason.JOIN_FAILED, "server join MAC mismatch")
        sub.join.server_nonce = sn
        cmac = self._mac(Role.CLIENT, sub, sn)
        sub.out += join_record(MpJoinAck(hmac=cmac[:20]), None, cmac)
        keys = schedule.subflow_keys(sub.id, sub.join.client_nonce, sn)
        send, recv = keys.send_keys(Role.CLIENT), keys.recv_keys(Role.CLIENT)
        sub.install_send(self.keys.sealer(send), send)
        sub.install_recv(self.keys.opener(recv), recv)

    def server_ack(self, sub: Subflow, ack: MpJoinAck, body: bytes) -> None:
        """Verify the client MAC; open with the subflow keys from now on (SPEC 5.4, 10.2)."""
        want = self._mac(Role.CLIENT, sub, sub.join.server_nonce)
        if len(body) != MAC_LEN or not verify(want, body) or not verify(want[:20], ack.hmac):
            self.failures += 1
            raise ProtocolViolation(PoisonReason.JOIN_FAILED, "client join MAC mismatch")
        recv = sub.join.pending_recv
        assert recv is not None
        sub.join.pending_recv = None
        sub.install_recv(self.keys.opener(recv), recv)


class PlainJoin(JoinAuthenticator):
    """RFC 8684 MP_JOIN: truncated HMACs over the 64-bit keys sent in clear (SPEC 7.6)."""

    def client_syn(self, sub: Subflow) -> None:
        """MP_JOIN SYN with the token of the server's key and a 32-bit nonce (RFC 8684).

        SPEC section 7.6.
        """
        nonce = os.urandom(JOIN_NONCE_LEN)
        sub.join.client_nonce = nonce
        syn = MpJoinSyn(address_id=sub.address_id, token=self.keys.server_token() or 0,
                        nonce=int.from_bytes(nonce[:4], "big"), backup=sub.backup)
        sub.out += join_record(syn, sub.id, b"")

    def server_syn(self, sub: Subflow, syn: MpJoinSyn, nonce: bytes) -> Refusal | None:
        """MP_JOIN SYN/ACK with HMAC(server key, client key, nonces) (RFC 8684 3.2).

        SPEC section 7.6.
        """
        sub.join.client_nonce = cn = syn.nonce.to_bytes(4, "big")
        sub.join.server_nonce = sn = os.urandom(4)
        mac = join_synack_hmac(self.keys.local_key, self.keys.peer_key64(), sn, cn)
        sub.out += join_record(MpJoinSynAck(address_id=0, hmac=mac,
                                            nonce=int.from_bytes(sn, "big"), backup=False))
        return None

    def client_synack(self, sub: Subflow, synack: MpJoinSynAck, body: bytes) -> None:
        """Verify the SYN/ACK HMAC, answer with the MP_JOIN ACK HMAC (RFC 8684 3.2).

        SPEC section 7.6.
        """
        sn = synack.nonce.to_bytes(4, "big")
        cn = sub.join.client_nonce[:4]
        want = join_synack_hmac(self.keys.peer_key64(), self.keys.local_key, sn, cn)
        if not verify(want, synack.hmac):
            raise ProtocolViolation(PoisonReason.JOIN_FAILED, "MP_JOIN SYN/ACK HMAC mismatch")
        sub.join.server_nonce = sn
        mac = join_ack_hmac(self.keys.local_key, self.keys.peer_key64(), cn, sn)
        sub.out += join_record(MpJoinAck(hmac=mac))

    def server_ack(self, sub: Subflow, ack: MpJoinAck, body: bytes) -> None:
        """Verify the MP_JOIN ACK HMAC (RFC 8684 section 3.2) (SPEC section 7.6)."""
        want = join_ack_hmac(self.keys.peer_key64(), self.keys.local_key,
                             sub.join.client_nonce, sub.join.server_nonce)
        if not verify(want, ack.hmac):
            raise ProtocolViolation(PoisonReason.JOIN_FAILED, "MP_JOIN ACK HMAC mismatch")


def make_join_authenticator(keys: KeyState) -> JoinAuthenticator:
    """The join dialect of the connection's mode."""
    return MptcpsecJoin(keys) if keys.protected else PlainJoin(keys)

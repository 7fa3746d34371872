"""Keys for offline decryption of a capture, from a key log and the capture's public facts.

A records trace carries a `connection` event (connection id, algorithm, the join nonces of
the key-exchange subflows); JOIN records carry every later subflow's nonces in clear. With
the connection secret from an SSLKEYLOGFILE key log that is enough to rebuild every
subflow's keys, generation by generation, including a join's early (0-RTT) keys.
"""

from __future__ import annotations

from typing import Any

from ..crypto.keylog import KeyLog
from ..crypto.keyschedule import KeySchedule
from ..errors import MptcpsecError
from .header import HEADER_LEN, RecordHeader, RecordType
from .options import MpJoinSyn, MpJoinSynAck, MpsSubflow, decode_options
from .pcap import EARLY

JOIN_NONCE_LEN = 32


class KeylogKeys:
    """A `RecordDecryptor` key lookup backed by a key log; also its record observer."""

    def __init__(self, keylog: KeyLog, info: dict[str, Any]) -> None:
        try:
            self.connection_id = bytes.fromhex(info["connection_id"])
            self.algorithm = str(info["algorithm"])
            self._initial = (bytes.fromhex(info["client_nonce"]),
                             bytes.fromhex(info["server_nonce"]))
            self._kx_subflows = {int(i) for i in info.get("kx_subflows", [0])}
        except (KeyError, ValueError, TypeError) as exc:
            raise MptcpsecError(f"connection event without usable fields: {exc}") from None
        secret = keylog.connection_secret(self.connection_id)
        self._schedule = KeySchedule(secret, self.algorithm)
        secret.wipe()
        self._nonces: dict[int, list[bytes]] = {}  # subflow -> [cn, sn]
        self._pending_join: dict[int, int] = {}  # capture subflow -> protocol subflow id

    def observe(self, subflow_id: int, from_client: bool, record: bytes) -> None:
        """Learn join nonces from JOIN SYN (client nonce) and JOIN SYN/ACK (server nonce)."""
        try:
            header = RecordHeader.unpack(record)
            if header.type != RecordType.JOIN:
                return
            opts = decode_options(record[HEADER_LEN:HEADER_LEN + header.opt_len])
        except MptcpsecError:
            return
        body = record[HEADER_LEN + header.opt_len:header.record_len]
        if opts and isinstance(opts[0], MpJoinSyn) and from_client:
            sid = next((o.subflow_id for o in opts if isinstance(o, MpsSubflow)), subflow_id)
            self._pending_join[subflow_id] = sid
            self._nonces[subflow_id] = [bytes(body[:JOIN_NONCE_LEN]), b""]
        elif opts and isinstance(opts[0], MpJoinSynAck) and not from_client:
            entry = self._nonces.get(subflow_id)
            if entry is not None:
                entry[1] = bytes(body[:JOIN_NONCE_LEN])

    def __call__(self, subflow_id: int, from_client: bool,
                 generation: int) -> tuple[str, bytes, bytes] | None:
        proto_id = self._pending_join.get(subflow_id, subflow_id)
        if subflow_id in self._nonces:
            cn, sn = self._nonces[subflow_id]
        elif subflow_id in self._kx_subflows:
            cn, sn = self._initial
        else:
            return None
        if generation == EARLY:
            if not from_client:
                return None
            keys = self._schedule.early_keys(proto_id, cn)
        else:
            if not sn:
                return None
            pair = self._schedule.subflow_keys(proto_id, cn, sn)
            keys = pair.c2s if from_client else pair.s2c
            for _ in range(generation):
                keys.update()
        return self.algorithm, bytes(keys.key), bytes(keys.iv)

    def close(self) -> None:
        self._schedule.wipe()

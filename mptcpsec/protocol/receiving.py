"""Reading a subflow's receive buffer: clear records, sealed batches, runs of DATA records.

The one per-record path (SPEC sections 2-4): clear HANDSHAKE and JOIN records are framed
and checked here; sealed records are opened in batches by the subflow's opener, which
stops at the first failure; a run of plain DATA records goes to the reassembly buffer in
one call (wire/fastpath.data_run). Each other record goes to `Connection._on_record`,
the dispatch table. A failure raises ProtocolViolation, which `Connection._process`
turns into a poisoned subflow. `Connection` inherits this mixin.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..crypto.aead import OpenedRecord
from ..errors import MptcpsecError, ProtocolViolation, RecordTypeError
from ..wire import fastpath
from ..wire.header import HEADER_LEN, RecordHeader, RecordType, type_mask
from ..wire.options import PoisonReason
from ..wire.records import ALL_TYPES, DEFAULT_MAX_BODY, check_header
from .acks import AckPolicy
from .config import ConnectionConfig
from .poison import FAILURE_TO_POISON, violation
from .states import ConnectionState
from .stream import ReassemblyBuffer
from .subflow import Subflow, SubflowState

_PROTECTED = type_mask([RecordType.DATA, RecordType.CONTROL, RecordType.KEY_UPDATE,
                        RecordType.CLOSE])
_STOP_AFTER = type_mask([RecordType.KEY_UPDATE, RecordType.CLOSE])
_STOP_BEFORE = type_mask([RecordType.HANDSHAKE, RecordType.JOIN])
CLEAR_TYPES = (RecordType.HANDSHAKE, RecordType.JOIN)
#: Records opened per batch call. The opener keeps a result array of this many rows per
#: subflow (12 bytes each) for its lifetime; the default 4096 made it 48 KiB per subflow
#: of every idle connection, and the loop in `_process` takes any number of batches.
_OPEN_BATCH = 256


class RecordReceiving:
    """The receive path of `Connection` (SPEC sections 2-4, 5.2)."""

    config: ConnectionConfig
    protected: bool
    state: ConnectionState
    recvbuf: ReassemblyBuffer | None
    acks: AckPolicy
    early_data_received: int

    @property
    def ended(self) -> bool:  # pragma: no cover - Connection's
        """Connection's: closed or failed (SPEC section 10.5)."""
        raise NotImplementedError

    def _on_record(self, sub: Subflow, rtype: int, flags: int, opts: bytes,
                   pt: bytes | bytearray) -> None:  # pragma: no cover - Connection's
        """Connection's dispatch table (SPEC section 3)."""
        raise NotImplementedError

    def _queue_ack(self, force: bool,
                   via: Subflow | None = None) -> None:  # pragma: no cover - Connection's
        raise NotImplementedError

    def _on_data_ack(self, data_ack: int) -> None:  # pragma: no cover - Connection's
        """Connection's DATA_ACK handler (SPEC section 10.3)."""
        raise NotImplementedError

    def _read_batch(self, sub: Subflow) -> bool:
        """Open and handle the records at the front of sub.rx; False: wait for more bytes."""
        clear_next = len(sub.rx) > 1 and sub.rx[1] in CLEAR_TYPES
        if sub.opener is None or clear_next or not self.protected:
            if (self.protected and not clear_next and self.state is ConnectionState.HANDSHAKE
                    and sub.state is SubflowState.HANDSHAKE):
                # Sealed records right behind the peer's last handshake message on this
                # path, while ours on the other path is still on its way: they open once
                # the keys are installed. Bounded like the receive window.
                if len(sub.rx) > self.config.receive_window + self._max_body():
                    raise ProtocolViolation(PoisonReason.UNEXPECTED_RECORD, "too many records "
                                            "before the key exchange completed")
                return False
            return self._read_clear(sub)
        res = sub.opener.open_records(sub.rx, max_body=self._max_body(),
                                      allowed_types=_PROTECTED, stop_after=_STOP_AFTER,
                                      stop_before=_STOP_BEFORE, max_records=_OPEN_BATCH)
        buf, records = sub.rx, res.records
        i, n = 0, len(records)
        # A handler may end the subflow or the connection (CLOSE, MP_FASTCLOSE, a peer's
        # report): the rest of the batch is then not handled.
        while i < n and not sub.state.ended and not self.ended:
            j = self._data_run(sub, buf, records, i)
            if j > i:
                i = j
                continue
            rec = records[i]
            opts = bytes(buf[rec.opt_offset:rec.pt_offset])
            pt = buf[rec.pt_offset:rec.pt_offset + rec.pt_len]
            sub.records_received += 1
            self._on_record(sub, rec.type, rec.flags, opts, pt)
            i += 1
        del sub.rx[:res.consumed]
        if res.failed:
            reason = (FAILURE_TO_POISON.get(res.reason, PoisonReason.MALFORMED_RECORD)
                      if res.reason is not None else PoisonReason.MALFORMED_RECORD)
            raise ProtocolViolation(reason, f"record {sub.records_received + 1} received on "
                                    f"this subflow failed: "
                                    f"{res.reason.value if res.reason else res.error}")
        return res.consumed > 0 or (len(sub.rx) >= HEADER_LEN and sub.rx[1] in CLEAR_TYPES)

    def _data_run(self, sub: Subflow, buf: bytearray, records: Sequence[OpenedRecord],
                  i: int) -> int:
        """Take the run of plain DATA records from index i on in one go (SPEC 5.2); returns
        the index of the first record left for `_on_record`.

        Plain: our option layout (`fastpath.DATA_OPTS`), no flags, no DATA_FIN, contiguous
        DSNs, inside the receive window. The outcome is what `_on_record` gives record by
        record (data in order, then the DATA_ACKs in order, then the largest window edge);
        anything else, including a record that breaks a rule, ends the run.
        """
        rb = self.recvbuf
        if rb is None or not (sub.state is SubflowState.ESTABLISHED
                              or sub.state is SubflowState.CLOSING
                              or (sub.state is SubflowState.JOINING and sub.early_recv)):
            return i
        run = fastpath.data_run(buf, records, i)
        if run is None:
            return i
        try:
            rb.receive_run(run.first_dsn, run.pieces, run.total)
        except ValueError:
            return i  # past the window: record by record, to poison at the right one
        sub.records_received += len(run.pieces)
        sub.bytes_received += run.total
        if sub.early_recv:
            self.early_data_received += run.total
        self._queue_ack(force=False, via=sub)
        for ack in run.acks:
            self._on_data_ack(ack)
        self.acks.on_peer_window(run.window_edge)
        return run.end

    def _max_body(self) -> int:
        return max(DEFAULT_MAX_BODY, self.config.max_record + 16)

    def _read_clear(self, sub: Subflow) -> bool:
        """Parse one unprotected record (handshake, join, any in plain mode) (SPEC 2, 3)."""
        if len(sub.rx) < HEADER_LEN:
            return False
        try:
            header = RecordHeader.unpack(sub.rx)
            allowed = ALL_TYPES if not self.protected else CLEAR_TYPES
            check_header(header, max_body=self._max_body(), allowed_types=allowed,
                         protected=self.protected)
        except RecordTypeError as exc:
            raise violation(PoisonReason.UNEXPECTED_RECORD, exc) from None
        except MptcpsecError as exc:
            raise violation(PoisonReason.MALFORMED_RECORD, exc) from None
        if len(sub.rx) < header.record_len:
            return False
        opts = bytes(sub.rx[HEADER_LEN:HEADER_LEN + header.opt_len])
        body = bytes(sub.rx[HEADER_LEN + header.opt_len:header.record_len])
        del sub.rx[:header.record_len]
        sub.records_received += 1
        self._on_record(sub, header.type, header.flags, opts, body)
        return True

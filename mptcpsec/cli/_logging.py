"""Operator logging for the long-running commands: one `logging` tree ("mptcpsec"), lines
on stderr and/or in `--log-file`, `-v` for per-record detail, and a rate limit so that a
flood of refused handshakes costs a few lines per second, not one line per attempt."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

LOG = logging.getLogger("mptcpsec")


def setup(verbose: int = 0, log_file: str | None = None, quiet: bool = False) -> None:
    """Configure the "mptcpsec" logger once per process (the CLI's `main`)."""
    LOG.handlers.clear()
    LOG.propagate = False
    LOG.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The library's own loggers (the lab's relays) speak only with -v: a command prints
    # what matters in its own words, and the demo's live view is not interleaved.
    logging.getLogger("mptcpsec.lab").setLevel(logging.NOTSET if verbose else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    if not quiet:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(fmt)
        LOG.addHandler(err)
    if log_file:
        f = logging.FileHandler(log_file, encoding="utf-8")
        f.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        LOG.addHandler(f)
    if not LOG.handlers:
        LOG.addHandler(logging.NullHandler())


class RateLimited:
    """At most `burst` lines per `period` seconds; the rest are counted and summed up in
    the next line that passes ("... and N more refused in the last S s")."""

    def __init__(self, logger: logging.Logger, burst: int = 10, period: float = 1.0,
                 clock: Any = time.monotonic) -> None:
        self.logger, self.burst, self.period, self.clock = logger, burst, period, clock
        self._start = clock()
        self._count = 0
        self.suppressed = 0

    def warning(self, text: str) -> None:
        now = self.clock()
        if now - self._start >= self.period:
            if self.suppressed:
                self.logger.warning("(%d more refused in the last %.0f s, not logged)",
                                    self.suppressed, now - self._start)
            self._start, self._count, self.suppressed = now, 0, 0
        if self._count < self.burst:
            self._count += 1
            self.logger.warning(text)
        else:
            self.suppressed += 1

    def flush(self) -> None:
        if self.suppressed:
            self.logger.warning("(%d more refused, not logged)", self.suppressed)
            self.suppressed = 0


class RecordLog:
    """A capture sink that logs one DEBUG line per record (`-v`): subflow, direction,
    type, flags, lengths and the MPTCP options (header and options are not secret:
    papers/SPEC.md section 2)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def subflow_open(self, subflow_id: int, client: Any, server: Any,
                     ts: float | None = None) -> None:
        self.logger.debug("capture subflow %d: %s:%s <-> %s:%s", subflow_id, *client, *server)

    def record(self, subflow_id: int, from_client: bool, record: bytes,
               ts: float | None = None) -> None:
        if not self.logger.isEnabledFor(logging.DEBUG):
            return
        self.logger.debug("record subflow %d %s %s", subflow_id,
                          "C->S" if from_client else "S->C", describe_record(record))

    def subflow_close(self, subflow_id: int, reset: bool = False,
                      ts: float | None = None) -> None:
        self.logger.debug("capture subflow %d %s", subflow_id, "reset" if reset else "closed")

    def connection_info(self, info: dict[str, Any], ts: float | None = None) -> None:
        return None

    def close(self) -> None:
        return None


def describe_record(record: bytes) -> str:
    from ..errors import MptcpsecError
    from ..wire.header import HEADER_LEN, RecordHeader, RecordType
    from ..wire.options import decode_options, describe

    try:
        h = RecordHeader.unpack(record)
    except MptcpsecError as exc:
        return f"unparsable header ({exc})"
    name = RecordType(h.type).name if h.type in RecordType._value2member_map_ else str(h.type)
    try:
        opts = " ".join(describe(o) for o in
                        decode_options(record[HEADER_LEN:HEADER_LEN + h.opt_len])) or "-"
    except MptcpsecError as exc:
        opts = f"undecodable options ({exc})"
    return f"{name} flags={h.flags:#04x} opt_len={h.opt_len} body_len={h.body_len} {opts}"

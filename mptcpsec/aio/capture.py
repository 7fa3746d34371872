"""Capture files: the adapter opens them and hands the writers of ``mptcpsec.wire.pcap``
open file objects (papers/SPEC.md section 9)."""

from __future__ import annotations

import os
from pathlib import Path

from ..wire.pcap import (
    MultiSink,
    PcapWriter,
    RecordSink,
    RecordTransform,
    TraceWriter,
    replay_trace,
)


def pcap_file(path: str | os.PathLike[str], transform: RecordTransform | None = None
              ) -> PcapWriter:
    """A pcap writer on a new file at ``path`` (closed with the writer)."""
    return PcapWriter(Path(path).open("wb"), transform=transform, close_file=True)


def trace_file(path: str | os.PathLike[str]) -> TraceWriter:
    """A JSON-lines records trace on a new file at ``path`` (closed with the writer)."""
    return TraceWriter(Path(path).open("w", encoding="utf-8"), close_file=True)


def open_sink(pcap: str | os.PathLike[str] | None = None,
              trace: str | os.PathLike[str] | None = None,
              transform: RecordTransform | None = None) -> RecordSink | None:
    """The sink for ``--pcap FILE`` and/or ``--trace FILE``; None when neither is given."""
    sinks: list[RecordSink] = []
    if pcap is not None:
        sinks.append(pcap_file(pcap, transform))
    if trace is not None:
        sinks.append(trace_file(trace))
    if not sinks:
        return None
    return sinks[0] if len(sinks) == 1 else MultiSink(*sinks)


def trace_to_pcap(trace: str | os.PathLike[str], out: str | os.PathLike[str],
                  transform: RecordTransform | None = None) -> int:
    """Convert a JSON-lines records trace file to pcap; returns the number of records."""
    with Path(trace).open(encoding="utf-8") as f, pcap_file(out, transform) as w:
        return replay_trace(f, w)


__all__ = ["open_sink", "pcap_file", "trace_file", "trace_to_pcap"]

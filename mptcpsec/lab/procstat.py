"""What /proc says about a process: resident memory and CPU time; and returning free heap.

Shared by the lab's soak and the benchmarks in ``mptcpsec.perf`` (perf imports lab, never
the reverse). Linux only: /proc and glibc's ``malloc_trim``.
"""

from __future__ import annotations

import contextlib
import os

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc."""
    path = f"/proc/{pid or 'self'}/statm"
    with open(path, encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE


def release_memory() -> int:
    """Collect garbage and hand free heap pages back to the OS; returns the RSS before.

    Without ``malloc_trim`` an RSS after heavy traffic shows mostly glibc keeping freed
    buffers for reuse, not memory a connection holds.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    before = rss_bytes()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)
    return before


def cpu_seconds(pid: int | None = None) -> float:
    """User plus system CPU time of a process (this one by default), from /proc."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_kib(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default) in KiB; 0 if it is gone."""
    path = f"/proc/{pid or 'self'}/status"
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


__all__ = ["cpu_seconds", "release_memory", "rss_bytes", "rss_kib"]

"""Live view of a tunnel or a gateway: a rich table on a terminal, log lines otherwise.

Rows: each connection with its destination, bytes, and per-path bytes and state; a footer
with totals, poisoned subflows and refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..aio.api import MptcpsecStream


def _fmt(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def paths_cell(stream: MptcpsecStream | None) -> str:
    """``1:up 3.2 MB  2:poisoned 10 kB``: each subflow's state and bytes sent."""
    if stream is None:
        return ""
    cells = []
    for s in stream.subflow_stats():
        state = s.get("state", "?")
        sent = s.get("bytes_sent", 0)
        cells.append(f"{s.get('id')}:{state} {_fmt(float(sent or 0))}")  # type: ignore[arg-type]
    return "  ".join(cells)


class StatusView:
    """`log` for events; `run` refreshes a live table until cancelled (terminal only)."""

    def __init__(self, title: str, rows: Callable[[], Iterable[dict[str, Any]]],
                 footer: Callable[[], str], quiet: bool = False,
                 live: bool | None = None) -> None:
        self.title = title
        self._rows = rows
        self._footer = footer
        self.quiet = quiet
        self.live = (sys.stderr.isatty() if live is None else live) and not quiet
        self._console: Any = None
        if self.live:
            from rich.console import Console

            self._console = Console(stderr=True, log_path=False)

    def log(self, text: str) -> None:
        if self.quiet:
            return
        if self._console is not None:
            self._console.log(text, markup=False, highlight=False)
        else:
            print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=self.title, caption=self._footer(), expand=False)
        for col in ("#", "from", "to", "state", "out", "back", "paths"):
            table.add_column(col)
        for r in list(self._rows())[:40]:
            table.add_row(str(r["number"]), r["source"], r["destination"], r["state"],
                          _fmt(r["out"]), _fmt(r["back"]), r["paths"])
        return table

    async def run(self) -> None:
        if not self.live:
            await asyncio.Event().wait()
            return
        from rich.live import Live

        with Live(self._table(), console=self._console, refresh_per_second=4,
                  transient=False) as live, contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(0.5)
                live.update(self._table())

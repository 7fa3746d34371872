"""Results of the system benchmarks: the machine they ran on, JSON files, tables, plots.

Every bench writes ``<out>/<name>.json`` (machine, configuration, rows) and
``<out>/<name>.png``; plots use matplotlib's Agg backend, so no display is needed.
"""

from __future__ import annotations

import json
import os
import platform
import ssl
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MB = 1_000_000


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare figures across machines."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def write_json(out_dir: str | os.PathLike[str], name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus the machine description to ``<out_dir>/<name>.json``."""
    path = Path(out_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"bench": name, "machine": machine_info(), **payload}
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Column:
    """One table column: the dict key, a heading and a format for its values."""

    key: str
    head: str
    fmt: str = "{}"
    width: int = 10
    left: bool = False  # text columns read better left-aligned

    def cell(self, row: dict[str, Any]) -> str:
        value = row.get(self.key)
        if value is None or value == "":
            return "-"
        try:
            return self.fmt.format(value)
        except (ValueError, TypeError):
            return str(value)


def format_table(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table; the first and text columns left-aligned, numbers right-aligned."""
    widths = [max(c.width, len(c.head), *(len(c.cell(r)) for r in rows)) for c in columns]

    def line(cells: list[str]) -> str:
        out = [cell.ljust(w) if i == 0 or c.left else cell.rjust(w)
               for i, (cell, w, c) in enumerate(zip(cells, widths, columns, strict=True))]
        return "  ".join(out).rstrip()
    lines = [line([c.head for c in columns]), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    lines += [line([c.cell(r) for c in columns]) for r in rows]
    return "\n".join(lines)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out_dir: str | os.PathLike[str], name: str) -> Path:
    path = Path(out_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def barh(ax: Any, labels: Sequence[str], values: Sequence[float], xlabel: str,
         highlight: Sequence[bool] | None = None,
         spread: Sequence[tuple[float, float]] | None = None) -> None:
    """Horizontal bars, first label at the top, each bar annotated with its value;
    `spread` (lowest, highest run) is drawn as a whisker."""
    ys = list(range(len(labels)))[::-1]
    colors = ["tab:blue" if not highlight or highlight[i] else "tab:gray"
              for i in range(len(labels))]
    xerr = None
    if spread:
        xerr = [[max(0.0, v - lo) for v, (lo, _) in zip(values, spread, strict=True)],
                [max(0.0, hi - v) for v, (_, hi) in zip(values, spread, strict=True)]]
    ax.barh(ys, values, color=colors, xerr=xerr, ecolor="black", capsize=2)
    ax.set_yticks(ys, labels)
    ax.set_xlabel(xlabel)
    top = max([v for v in values if v == v] + [hi for _, hi in spread or []] or [1.0])
    ends = [max(v, hi) for v, (_, hi) in zip(values, spread, strict=True)] if spread \
        else list(values)
    for y, v, end in zip(ys, values, ends, strict=True):
        if v == v:  # not NaN
            ax.text(end + top * 0.015, y, f"{v:,.0f}" if v >= 10 else f"{v:.2f}",
                    va="center", fontsize=8)
    ax.set_xlim(0, top * 1.15)
    ax.grid(axis="x", alpha=0.3)

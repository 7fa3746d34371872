"""``--plot FILE.png``: per-subflow throughput over time, the attack and its detection marked.

matplotlib with the Agg backend (no display needed); one panel per run, so ``--compare``
shows the three modes one above the other on the same time axis.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..lab.scenarios import ScenarioResult
from .verdict import headline


def throughput_series(res: ScenarioResult,
                      window: float = 0.2) -> dict[int, tuple[list[float], list[float]]]:
    """Per subflow: times and Mbit/s (bytes sent + received by the client, smoothed over
    ``window`` seconds)."""
    out: dict[int, tuple[list[float], list[float]]] = {}
    samples = res.samples
    for i in range(1, len(samples)):
        cur = samples[i]
        j = i - 1
        while j > 0 and cur.t - samples[j].t < window:
            j -= 1
        base = samples[j]
        dt = cur.t - base.t
        if dt <= 0:
            continue
        for sid, n in cur.subflows.items():
            ts, rs = out.setdefault(sid, ([], []))
            ts.append(cur.t)
            rs.append(max(0.0, (n - base.subflows.get(sid, 0)) * 8 / dt / 1e6))
    return out


def _event_time(res: ScenarioResult, kind: str) -> float | None:
    return next((float(e["t"]) for e in res.events if e["event"] == kind), None)


def plot_results(results: Sequence[ScenarioResult], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axes = plt.subplots(n, 1, figsize=(10, 3.2 * n + 0.6), sharex=True, squeeze=False)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
               "tab:gray", "tab:olive"]
    for ax, res in zip(axes[:, 0], results, strict=True):
        series = throughput_series(res)
        for sid, (ts, rs) in sorted(series.items()):
            ax.plot(ts, rs, label=f"subflow {sid} (path {sid + 1})",
                    color=colours[sid % len(colours)], linewidth=1.6)
        if res.attack_time is not None:
            ax.axvline(res.attack_time, color="red", linestyle="--", linewidth=1.4,
                       label=f"attack on path {res.attack_path}")
        detected = _event_time(res, "subflow_poisoned")
        if detected is not None:
            ax.axvline(detected, color="black", linestyle=":", linewidth=1.4,
                       label="poisoned subflow dropped")
        failed = _event_time(res, "connection_terminated") if res.outcome == "aborted" else None
        if failed is not None:
            ax.axvline(failed, color="darkred", linewidth=1.4, label="connection aborted")
        ax.set_ylabel("Mbit/s")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{res.mode} ({res.key_exchange}) - {res.attack or 'no attack'}: "
                     f"{headline(res)}, {res.bytes_echoed:,} of {res.bytes_sent:,} bytes "
                     "echoed", fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("seconds since start")
    fig.suptitle("per-subflow throughput (client: sent + received)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

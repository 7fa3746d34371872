"""Following a scenario as it runs: a rich live view on a terminal, plain lines elsewhere.

Both are ``Observer``s of ``mptcpsec.lab.scenarios``: they are told the phases, every
protocol event of both ends, each strike of the attacker and a progress sample ten times a
second. ``LiveView`` redraws a panel with per-subflow throughput, the transfer and an event
log; ``PlainLines`` prints one line per event and a progress line every ten percent, which
is what CI logs and pipes get.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import IO, Any

from ..lab.attacks import Strike
from ..lab.scenarios import Observer, Sample, Scenario
from ..protocol.events import Event


def describe_event(side: str, event: Event) -> tuple[str, str] | None:
    """(style, text) for the events worth a line; None for the rest."""
    e = event.to_dict()
    k = e["event"]
    if k == "handshake_completed":
        return "green", (f"{side}: key exchange {e['key_exchange']} done ({e['mode']}, "
                         f"{e['algorithm']})")
    if k == "subflow_established":
        return "green", f"{side}: subflow {e['subflow_id']} up {e['local']} -> {e['remote']}"
    if k == "subflow_poisoned":
        if e["reported_by_peer"]:
            return "bold red", (f"{side}: peer reports subflow {e['subflow_id']} poisoned "
                                f"({e['reason']}): dropped")
        return "bold red", (f"{side}: DETECTED on subflow {e['subflow_id']}: {e['detail']} "
                            "-> subflow poisoned and dropped")
    if k == "data_reinjected":
        return "yellow", (f"{side}: re-sending {e['bytes']:,} bytes from subflow "
                          f"{e['from_subflow']} on the clean path(s)")
    if k == "subflow_closed" and not e["clean"]:
        return "yellow", f"{side}: subflow {e['subflow_id']} dropped: {e['reason']}"
    if k == "connection_terminated" and e["error"]:
        return "bold red", f"{side}: CONNECTION FAILED: {e['error']}"
    if k == "stream_ended":
        return "dim", f"{side}: end of stream (DATA_FIN)"
    if k == "key_updated":
        return "dim", f"{side}: key update on subflow {e['subflow_id']} ({e['direction']})"
    return None


def describe_strike(path: int, s: Strike) -> str:
    # Counted from 1, as the receiver counts ("record N received on this subflow failed").
    return (f"ATTACK on path {path} ({s.direction}, record {s.record_index + 1}, "
            f"{s.record_type}): {s.detail}")


class PlainLines(Observer):
    """One line per phase/event/strike, progress every 10 %; no terminal control codes."""

    def __init__(self, sc: Scenario, out: IO[str] | None = None, label: str = "") -> None:
        self.sc = sc
        self.out = out or sys.stdout
        self.label = f"[{label}] " if label else ""
        self._next = 0.1

    def _p(self, text: str) -> None:
        print(f"{self.label}{text}", file=self.out, flush=True)

    def phase(self, text: str) -> None:
        self._p(f"-- {text}")

    def event(self, side: str, t: float, event: Event) -> None:
        d = describe_event(side, event)
        if d is not None:
            self._p(f"{t:7.3f}s  {d[1]}")

    def strike(self, path: int, t: float, strike: Strike) -> None:
        self._p(f"{t:7.3f}s  {describe_strike(path, strike)}")

    def progress(self, sample: Sample, stats: list[dict[str, Any]]) -> None:
        done = sample.echoed / max(1, self.sc.nbytes)
        if done >= self._next:
            while self._next <= done:
                self._next += 0.1
            per = ", ".join(f"subflow {s['id']} {s['state']}" for s in stats)
            self._p(f"{sample.t:7.3f}s  echoed {sample.echoed:,} of {self.sc.nbytes:,} bytes "
                    f"({done:.0%}); {per}")


class LiveView(Observer):
    """A rich panel redrawn ten times a second (use as a context manager)."""

    def __init__(self, sc: Scenario, console: Any = None, title: str = "") -> None:
        from rich.console import Console

        self.sc = sc
        self.console = console or Console()
        self.title = title
        self.phase_text = "starting"
        self.log: deque[tuple[float, str, str]] = deque(maxlen=12)
        self.samples: list[Sample] = []
        self.stats: list[dict[str, Any]] = []
        self.attack_t: float | None = None
        self.detect_t: float | None = None
        self._live: Any = None
        self._t_start = time.monotonic()

    def __enter__(self) -> LiveView:
        from rich.live import Live

        self._live = Live(console=self.console, refresh_per_second=10,
                          get_renderable=self.render, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)
            self._live = None

    # ------------------------------------------------------------ observer
    def phase(self, text: str) -> None:
        self.phase_text = text

    def event(self, side: str, t: float, event: Event) -> None:
        d = describe_event(side, event)
        if d is not None:
            self.log.append((t, d[0], d[1]))
        if event.kind == "subflow_poisoned" and self.detect_t is None:
            self.detect_t = t

    def strike(self, path: int, t: float, strike: Strike) -> None:
        self.attack_t = self.attack_t if self.attack_t is not None else t
        self.log.append((t, "bold magenta", describe_strike(path, strike)))

    def progress(self, sample: Sample, stats: list[dict[str, Any]]) -> None:
        self.samples.append(sample)
        self.stats = stats

    # ------------------------------------------------------------ drawing
    def _rates(self) -> dict[int, float]:
        """Mbit/s per subflow over the last half second."""
        if len(self.samples) < 2:
            return {}
        last = self.samples[-1]
        base = next((s for s in reversed(self.samples) if last.t - s.t >= 0.5),
                    self.samples[0])
        dt = last.t - base.t
        if dt <= 0:
            return {}
        return {sid: (n - base.subflows.get(sid, 0)) * 8 / dt / 1e6
                for sid, n in last.subflows.items()}

    def render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        sc = self.sc
        head = Text.assemble(
            (f"{sc.mode}", "bold cyan"), f" over {sc.paths} paths via proxies "
            f"(delay {sc.delay_ms:g} ms", f", {sc.rate_mbps:g} Mbit/s" if sc.rate_mbps else "",
            "), key exchange ", (sc.key_exchange if sc.mode == "mptcpsec" else "none", "cyan"),
            f", echo {sc.nbytes / 1e6:g} MB\nattack: ",
            (f"{sc.attack.describe()} on path {sc.attack_path}" if sc.attack else "none",
             "magenta"), "\n", (self.phase_text, "dim"))
        rates = self._rates()
        table = Table(box=None, pad_edge=False)
        table.add_column("id", no_wrap=True)
        table.add_column("path", no_wrap=True)
        table.add_column("state", no_wrap=True)
        for col in ("Mbit/s", "bytes", "re-sent"):
            table.add_column(col, justify="right", no_wrap=True, min_width=7)
        for s in self.stats:
            state = str(s["state"])
            style = {"established": "green", "poisoned": "bold red", "failed": "yellow",
                     "closed": "dim"}.get(state, "")
            sid = int(s["id"])
            host = str(s["local"]).rpartition(":")[0]
            remote = str(s["remote"]).rpartition(":")[0]
            why = f" ({s['reason']})" if state == "poisoned" and s["reason"] else ""
            moved = int(s["bytes_sent"]) + int(s["bytes_received"])
            table.add_row(str(sid), f"{host} -> {remote}", Text(state + why, style=style),
                          f"{rates.get(sid, 0.0):.1f}", f"{moved / 1e6:.1f} MB",
                          f"{int(s['reinjected_bytes']) / 1e6:.1f} MB")
        last = self.samples[-1] if self.samples else None
        sent = last.sent if last else 0
        echoed = last.echoed if last else 0
        bars = Table.grid(expand=True)
        bars.add_column(width=8)
        bars.add_column(ratio=1)
        bars.add_column(width=24, justify="right")
        bars.add_row("sent", ProgressBar(total=sc.nbytes, completed=sent),
                     f"{sent:,} B")
        bars.add_row("echoed", ProgressBar(total=sc.nbytes, completed=echoed),
                     f"{echoed:,} B")
        log = Text()
        for t, style, text in self.log:
            log.append(f"{t:7.3f}s  ", style="dim")
            log.append(text + "\n", style=style)
        return Panel(Group(head, Text(""), table, Text(""), bars,
                           Panel(log, title="events", border_style="dim")),
                     title=self.title or "mptcpsec demo", border_style="cyan")

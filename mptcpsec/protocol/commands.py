"""Commands from the engine to its adapter: open or close a subflow's TCP connection."""

from __future__ import annotations

from dataclasses import dataclass

Address = tuple[str, int]


@dataclass(frozen=True)
class OpenSubflow:
    """Command: open a TCP connection to `remote` (from `local` if given) and add it."""

    remote: Address
    local: Address | None = None
    backup: bool = False
    address_id: int = 0


@dataclass(frozen=True)
class CloseSubflow:
    """Command: close (FIN after the queued bytes) or reset the subflow's socket."""

    subflow_id: int
    reset: bool


Command = OpenSubflow | CloseSubflow

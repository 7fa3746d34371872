"""Path managers: which addresses a server announces, which announcements a client joins.

The engine asks its path manager at two moments: when the connection is established (a
server announces addresses with ADD_ADDR) and when an announcement arrives (a client
decides whether to open subflows to it; the adapter opens them from each local address
in use, i.e. full mesh). Register a new one in PATH_MANAGERS.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

Address = tuple[str, int]


class PathManager(abc.ABC):
    name: str = "base"

    def __init__(self, announce: Sequence[Address] = ()) -> None:
        self.announce = list(announce)

    def addresses_to_announce(self) -> list[Address]:
        """Server: (host, port) pairs to send in ADD_ADDR, ids 1, 2, ... in this order.

        SPEC section 10.6.
        """
        return list(self.announce)

    @abc.abstractmethod
    def join_announced(self, address_id: int, address: Address) -> bool:
        """Client: open subflows to an address the server announced? (SPEC section 10.6)."""


class FullMeshPathManager(PathManager):
    """Join every announced address from every local address in use (the default)."""

    name = "fullmesh"

    def join_announced(self, address_id: int, address: Address) -> bool:
        """Always: full mesh (SPEC section 10.6)."""
        return True


class ConfiguredPathManager(PathManager):
    """Use exactly the configured paths: announcements are recorded, never joined."""

    name = "configured"

    def join_announced(self, address_id: int, address: Address) -> bool:
        """Never: only the configured paths are used (SPEC section 10.6)."""
        return False


PATH_MANAGERS: dict[str, type[PathManager]] = {
    cls.name: cls for cls in (FullMeshPathManager, ConfiguredPathManager)
}


def make_path_manager(name: str, announce: Sequence[Address] = ()) -> PathManager:
    try:
        return PATH_MANAGERS[name](announce)
    except KeyError:
        raise ValueError(f"unknown path manager {name!r} (choose one of "
                         f"{', '.join(PATH_MANAGERS)})") from None

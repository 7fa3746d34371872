"""What a gateway lets through (SPEC §Converter, gateway rules): `--allow` rules and bounds.

A rule is ``CIDR[:PORTS]`` (``203.0.113.0/24:80,443``, ``[2001:db8::/32]:1000-2000``,
``127.0.0.1`` for every port). Names are resolved first and only the resolved addresses
that a rule allows are connected to, so a name cannot smuggle in a disallowed address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import PolicyError as PolicyError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class AllowRule:
    network: IPNetwork
    ports: tuple[tuple[int, int], ...] = ((1, 65535),)

    def allows(self, ip: IPAddress, port: int) -> bool:
        if ip.version != self.network.version or ip not in self.network:
            return False
        return any(lo <= port <= hi for lo, hi in self.ports)

    def __str__(self) -> str:
        ports = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ports)
        net = f"[{self.network}]" if self.network.version == 6 else str(self.network)
        return net if self.ports == ((1, 65535),) else f"{net}:{ports}"


def _ports(text: str) -> tuple[tuple[int, int], ...]:
    if text in ("", "*"):
        return ((1, 65535),)
    out = []
    for part in text.split(","):
        lo_s, _, hi_s = part.partition("-")
        try:
            lo, hi = int(lo_s), int(hi_s or lo_s)
        except ValueError:
            raise PolicyError(f"bad port range {part!r}") from None
        if not 1 <= lo <= hi <= 65535:
            raise PolicyError(f"port range {part!r} outside 1..65535")
        out.append((lo, hi))
    return tuple(out)


def parse_allow(text: str) -> AllowRule:
    """``CIDR[:PORTS]``, ``[IPv6-CIDR]:PORTS``; PORTS = ``80``, ``80,443``, ``1-1024``, ``*``."""
    text = text.strip()
    if text.startswith("["):
        net_s, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise PolicyError(f"{text!r}: expected [CIDR]:PORTS")
        port_s = rest[1:]
    elif text.count(":") == 1:
        net_s, _, port_s = text.partition(":")
    else:  # IPv4 CIDR alone, or a bare IPv6 CIDR
        net_s, port_s = text, ""
    try:
        network = ipaddress.ip_network(net_s, strict=False)
    except ValueError:
        raise PolicyError(f"{text!r}: {net_s!r} is not an address or CIDR") from None
    return AllowRule(network, _ports(port_s))


@dataclass(frozen=True)
class Policy:
    rules: tuple[AllowRule, ...]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Policy:
        return cls(tuple(parse_allow(t) for t in texts))

    def allows(self, ip: str | IPAddress, port: int) -> bool:
        addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(r.allows(addr, port) for r in self.rules)

    def filter(self, addresses: Sequence[str], port: int) -> list[str]:
        """The resolved addresses this policy lets us connect to, in their order."""
        return [a for a in addresses if self.allows(a, port)]


@dataclass(frozen=True)
class Limits:
    """A gateway's bounds; every one is enforced (SPEC §Converter, bounds)."""

    max_connections: int = 1024
    max_per_client: int = 256
    connect_timeout: float = 10.0
    #: Time allowed for the CONNECT request after the key exchange.
    request_timeout: float = 60.0
    #: A relay with no byte in either direction for this long is closed.
    idle_timeout: float = 300.0
    dns_timeout: float = 5.0

    def validate(self) -> None:
        if self.max_connections < 1 or self.max_per_client < 1:
            raise PolicyError("connection limits must be >= 1")
        for name in ("connect_timeout", "request_timeout", "idle_timeout", "dns_timeout"):
            if getattr(self, name) <= 0:
                raise PolicyError(f"{name.replace('_', ' ')} must be > 0")


@dataclass
class Counters:
    """Gateway totals for the live view and the `--json` summary."""

    accepted: int = 0
    active: int = 0
    bytes_to_destination: int = 0
    bytes_to_client: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    per_client: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

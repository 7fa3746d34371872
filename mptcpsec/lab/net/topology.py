"""Hosts and routers as network namespaces joined by veth pairs (pyroute2).

One client namespace with one interface per path, one router namespace per path, one server
namespace with one interface per path and a service address (203.0.113.1 on its loopback)
reachable over every path. The client routes by source address (one routing table per
path), so a socket bound to path i's address leaves through router i; the server routes
each client subnet back through the router it came from. Nothing links to the host's
namespace and no namespace has a default route, so no packet can leave the machine.

Addresses (documentation ranges only), for path i = 1..N:

* client ``eth{i}`` 192.0.2.(16i+1)/28, router ``c`` side 192.0.2.(16i+2)/28;
* router ``s`` side 198.51.100.(16i+2)/28, server ``eth{i}`` 198.51.100.(16i+1)/28;
* server service address 203.0.113.1/32.

Names are ``mpsl-<run id>-cli``, ``-srv``, ``-r<i>``: unique per run, with a common prefix so
that ``cleanup_all()`` finds only what this package made.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field

from ...errors import LabError as LabError

PREFIX = "mpsl-"
SERVER_ADDR = "203.0.113.1"
MAX_PATHS = 8
NETNS_DIR = "/run/netns"


@dataclass
class PathSpec:
    """One path: rate limit (tbf, per direction), round trip and jitter (added in user space
    in the router), random loss (nftables in the router), all optional."""

    rate_mbit: float | None = None
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0

    @classmethod
    def parse(cls, text: str) -> PathSpec:
        """``RATE_MBIT:RTT_MS[:LOSS%]`` (rate 0: unlimited), as ``--path 50:10:0.5``."""
        parts = text.split(":")
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"not RATE_MBIT:RTT_MS[:LOSS%]: {text!r}")
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"not RATE_MBIT:RTT_MS[:LOSS%]: {text!r}") from None
        rate = nums[0]
        rtt = nums[1] if len(nums) > 1 else 0.0
        loss = nums[2] if len(nums) > 2 else 0.0
        if rate < 0 or rtt < 0 or not 0 <= loss < 100:
            raise ValueError(f"rate, rtt must be >= 0 and loss in [0, 100): {text!r}")
        return cls(rate_mbit=rate or None, rtt_ms=rtt, loss_pct=loss)

    def label(self) -> str:
        rate = f"{self.rate_mbit:g} Mbit/s" if self.rate_mbit else "unlimited"
        extra = f", {self.loss_pct:g}% loss" if self.loss_pct else ""
        return f"{rate}, {self.rtt_ms:g} ms RTT{extra}"


@dataclass(frozen=True)
class PathAddrs:
    """The four addresses of path ``index`` (from 1)."""

    index: int

    @property
    def client(self) -> str:
        return f"192.0.2.{16 * self.index + 1}"

    @property
    def router_c(self) -> str:
        return f"192.0.2.{16 * self.index + 2}"

    @property
    def router_s(self) -> str:
        return f"198.51.100.{16 * self.index + 2}"

    @property
    def server(self) -> str:
        return f"198.51.100.{16 * self.index + 1}"

    @property
    def client_net(self) -> str:
        return f"192.0.2.{16 * self.index}/28"


@dataclass
class Topology:
    """The namespaces of one run; build with ``build()``, remove with ``destroy()``."""

    paths: list[PathSpec]
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    built: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.paths) <= MAX_PATHS:
            raise LabError(f"1..{MAX_PATHS} paths, not {len(self.paths)}")

    # ---- names ------------------------------------------------------------------------
    @property
    def client(self) -> str:
        return f"{PREFIX}{self.run_id}-cli"

    @property
    def server(self) -> str:
        return f"{PREFIX}{self.run_id}-srv"

    def router(self, i: int) -> str:
        return f"{PREFIX}{self.run_id}-r{i}"

    def namespaces(self) -> list[str]:
        return [self.client, self.server, *(self.router(i) for i in self.indices())]

    def indices(self) -> range:
        return range(1, len(self.paths) + 1)

    def host(self, name: str) -> str:
        """Namespace of ``client``/``cli``, ``server``/``srv``, ``r1``.. or a full name."""
        alias = {"client": self.client, "cli": self.client, "server": self.server,
                 "srv": self.server}
        if name in alias:
            return alias[name]
        if name.startswith("r") and name[1:].isdigit() and int(name[1:]) in self.indices():
            return self.router(int(name[1:]))
        if name in self.namespaces():
            return name
        raise LabError(f"no host {name!r} (client, server, r1..r{len(self.paths)})")

    # ---- build ------------------------------------------------------------------------
    def build(self) -> None:
        """Create every namespace, link, address, route and qdisc; undo all on failure."""
        require_root()
        from pyroute2 import netns

        try:
            for ns in self.namespaces():
                netns.create(ns)
                self.built = True
            self._links()
            for i, spec in zip(self.indices(), self.paths, strict=True):
                self._shape(i, spec)
        except BaseException:
            self.destroy()
            raise

    def _links(self) -> None:
        from pyroute2 import NetNS

        for ns in self.namespaces():
            run_in(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"], check=False)
            with NetNS(ns) as ip:
                ip.link("set", index=ip.link_lookup(ifname="lo")[0], state="up")
        for i in self.indices():
            a = PathAddrs(i)
            with NetNS(self.client) as ip:
                ip.link("add", ifname=f"eth{i}", kind="veth",
                        peer={"ifname": "c", "net_ns_fd": self.router(i)})
            with NetNS(self.server) as ip:
                ip.link("add", ifname=f"eth{i}", kind="veth",
                        peer={"ifname": "s", "net_ns_fd": self.router(i)})
            _addr_up(self.client, f"eth{i}", a.client)
            _addr_up(self.server, f"eth{i}", a.server)
            _addr_up(self.router(i), "c", a.router_c)
            _addr_up(self.router(i), "s", a.router_s)
            run_in(self.router(i), ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
            with NetNS(self.router(i)) as ip:  # for segments the attacker forges
                ip.route("add", dst="203.0.113.0/24", gateway=a.server)
        with NetNS(self.server) as ip:
            ip.addr("add", index=ip.link_lookup(ifname="lo")[0], address=SERVER_ADDR,
                    prefixlen=32)
            for i in self.indices():
                a = PathAddrs(i)
                ip.route("add", dst=a.client_net, gateway=a.router_s)
        with NetNS(self.client) as ip:
            for i in self.indices():
                a = PathAddrs(i)
                # policy routing: path i's source address leaves through router i
                ip.route("add", dst="203.0.113.0/24", gateway=a.router_c, table=100 + i)
                ip.rule("add", src=a.client, src_len=32, table=100 + i, priority=1000 + i)
                ip.route("add", dst=f"198.51.100.{16 * i}/28", gateway=a.router_c)
            ip.route("add", dst="203.0.113.0/24", gateway=PathAddrs(1).router_c)
        for ns in self.namespaces():
            # asymmetric-looking policy routes must not be filtered as spoofed
            run_in(ns, ["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0"], check=False)

    def _shape(self, i: int, spec: PathSpec) -> None:
        """tbf on both egress interfaces of router i; nftables loss in its forward hook."""
        from pyroute2 import NetNS

        if spec.rate_mbit:
            rate_bps = int(spec.rate_mbit * 1_000_000)
            burst = max(15_000, rate_bps // 8 // 250)  # ~4 ms of traffic, at least 10 MTUs
            with NetNS(self.router(i)) as ip:
                for dev in ("c", "s"):
                    ip.tc("add", "tbf", ip.link_lookup(ifname=dev)[0], rate=f"{rate_bps}bit",
                          burst=burst, latency="100ms")
        if spec.loss_pct:
            set_loss(self.router(i), spec.loss_pct)

    def set_link(self, i: int, up: bool) -> None:
        """Take path i's client-side link down or up (both veth ends), at run time."""
        from pyroute2 import NetNS

        state = "up" if up else "down"
        with NetNS(self.router(i)) as ip:
            ip.link("set", index=ip.link_lookup(ifname="c")[0], state=state)
        with NetNS(self.client) as ip:
            ip.link("set", index=ip.link_lookup(ifname=f"eth{i}")[0], state=state)
        if up:  # a link that went down loses its routes; put them back
            a = PathAddrs(i)
            with NetNS(self.client) as ip, contextlib.suppress(Exception):
                ip.route("replace", dst="203.0.113.0/24", gateway=a.router_c, table=100 + i)
                ip.route("replace", dst=f"198.51.100.{16 * i}/28", gateway=a.router_c)
                if i == 1:
                    ip.route("replace", dst="203.0.113.0/24", gateway=a.router_c)

    def destroy(self) -> None:
        """Kill every process in our namespaces, then delete them (idempotent)."""
        for ns in self.namespaces():
            remove_namespace(ns)
        self.built = False


def _addr_up(ns: str, ifname: str, address: str) -> None:
    from pyroute2 import NetNS

    with NetNS(ns) as ip:
        idx = ip.link_lookup(ifname=ifname)[0]
        ip.addr("add", index=idx, address=address, prefixlen=28)
        ip.link("set", index=idx, state="up")


def set_loss(ns: str, loss_pct: float) -> None:
    """Random loss of ``loss_pct`` % of forwarded packets (nftables numgen), both ways."""
    per_mille = round(loss_pct * 10)
    script = (f"add table ip mpsl\n"
              f"add chain ip mpsl loss {{ type filter hook forward priority 0; }}\n"
              f"flush chain ip mpsl loss\n"
              f"add rule ip mpsl loss numgen random mod 1000 < {per_mille} drop\n")
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True,
                   check=True, capture_output=True, timeout=10)


def run_in(ns: str, argv: list[str], check: bool = True, timeout: float = 10,
           ) -> subprocess.CompletedProcess[str]:
    """Run a short command inside namespace ``ns`` and return its output."""
    proc = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} in {ns} failed: {proc.stderr.strip()}")
    return proc


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the namespace lab needs root (network namespaces, veth, qdiscs); "
                       "the loopback lab (`mptcpsec demo` without --net netns) does not")


def namespace_pids(ns: str) -> list[int]:
    """Processes whose network namespace is ``ns`` (as ``ip netns pids``)."""
    try:
        target = os.stat(os.path.join(NETNS_DIR, ns))
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
            pids.append(int(entry))
    return pids


def remove_namespace(ns: str, grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL, every process in ``ns``; then delete it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [p for p in namespace_pids(ns) if p != os.getpid()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
    if os.path.exists(os.path.join(NETNS_DIR, ns)):
        from pyroute2 import netns

        with contextlib.suppress(Exception):
            netns.remove(ns)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def our_namespaces() -> list[str]:
    """Every namespace with our prefix (this run's or a crashed run's)."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(PREFIX))


def cleanup_all() -> list[str]:
    """Remove every namespace of ours (and its processes): ``mptcpsec lab down --all``."""
    gone = our_namespaces()
    for ns in gone:
        remove_namespace(ns)
    return gone


def runs() -> dict[str, list[str]]:
    """Our namespaces grouped by run id."""
    out: dict[str, list[str]] = {}
    for ns in our_namespaces():
        run_id = ns[len(PREFIX):].rsplit("-", 1)[0]
        out.setdefault(run_id, []).append(ns)
    return out

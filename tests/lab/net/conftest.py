"""Namespace-lab fixtures: skip with the reason when the lab cannot run, and check that a
test leaves no namespace, qdisc, iptables rule or process behind."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def lab_unavailable() -> str | None:
    try:
        from mptcpsec.lab.net.env import check_prerequisites
    except ImportError as exc:  # pyroute2 missing is reported by check_prerequisites
        return f"namespace lab not importable: {exc}"
    return check_prerequisites()


def _host_state() -> dict[str, str]:
    out = {}
    for name, argv in (("qdisc", ["tc", "qdisc", "show"]),
                       ("iptables", ["iptables-legacy-save"]),
                       ("nft", ["nft", "list", "ruleset"])):
        if shutil.which(argv[0]):
            res = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            # counters and timestamps change by themselves; compare the rules
            out[name] = "\n".join(ln for ln in res.stdout.splitlines()
                                  if not ln.startswith("#") and not ln.startswith(":"))
    return out


def _our_processes() -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "mptcpsec.lab.net." in cmd or " mpsl-" in cmd:
            found.append(f"{pid}: {cmd[:120]}")
    return found


@pytest.fixture
def netns_lab_ok() -> None:
    why = lab_unavailable()
    if why:
        pytest.skip(f"namespace lab: {why}")


@pytest.fixture
def no_leftovers(netns_lab_ok: None):
    """Fails the test if it left a namespace of ours, a process in one, or changed the
    host namespace's qdiscs, iptables or nftables rules."""
    from mptcpsec.lab.net.topology import our_namespaces

    before_ns = set(our_namespaces())
    before = _host_state()
    yield
    leaked_ns = set(our_namespaces()) - before_ns
    procs = _our_processes()
    after = _host_state()
    from mptcpsec.lab.net.topology import remove_namespace

    for ns in leaked_ns:  # clean up for the next test, then fail
        remove_namespace(ns)
    assert not leaked_ns, f"namespaces left behind: {sorted(leaked_ns)}"
    assert not procs, f"processes left behind: {procs}"
    assert after == before, "the host namespace's qdiscs or firewall rules changed"

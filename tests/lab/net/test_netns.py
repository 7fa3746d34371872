"""The namespace lab on the real kernel (root): topology, CLI, the packet-level attacker
against kernel MPTCP, TLS over it and mptcpsec, transfer and failover. Each test checks
that it leaves nothing behind (``no_leftovers``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mptcpsec.lab.net.attacker import AttackConfig
from mptcpsec.lab.net.capture import read_pcap
from mptcpsec.lab.net.env import NetLab, _stop
from mptcpsec.lab.net.peers import make_cert
from mptcpsec.lab.net.scenarios import AttackPlan, _Ports, run_failover, run_one, run_transfer
from mptcpsec.lab.net.topology import SERVER_ADDR, PathAddrs, PathSpec, our_namespaces

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _tcp_echo(lab: NetLab, path: int, port: int, timeout: float = 4) -> dict:
    srv = lab.popen("server", [sys.executable, "-m", "mptcpsec.lab.net.peers", "serve",
                               "--proto", "tcp", "--listen", f"{SERVER_ADDR}:{port}"],
                    stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if lab.run("server", ["ss", "-Hltn", f"sport = :{port}"]).stdout.strip():
                break
        res = lab.run("client", [sys.executable, "-m", "mptcpsec.lab.net.peers", "client",
                                 "--proto", "tcp", "--connect", f"{SERVER_ADDR}:{port}",
                                 "--bind", PathAddrs(path).client, "--bytes", "100000",
                                 "--timeout", str(timeout)], timeout=timeout * 3)
        return json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        _stop(srv)
        lab.procs.remove(srv)


def test_topology_shapes_isolates_and_tears_down(no_leftovers):
    with NetLab([PathSpec(40, 0), PathSpec(None, 0, loss_pct=1.0)]) as lab:
        names = lab.topo.namespaces()
        assert set(names) <= set(our_namespaces())
        tc = lab.run("r1", ["tc", "qdisc", "show", "dev", "s"]).stdout
        assert "tbf" in tc and "40Mbit" in tc
        assert "numgen random mod 1000 < 10 drop" in lab.run(
            "r2", ["nft", "list", "ruleset"]).stdout
        for ns in ("client", "server", "r1", "r2"):
            assert "default" not in lab.run(ns, ["ip", "route"]).stdout
            links = lab.run(ns, ["ip", "-o", "link"]).stdout
            names_here = {ln.split(":")[1].strip().split("@")[0] for ln in links.splitlines()}
            assert names_here <= {"lo", "eth1", "eth2", "c", "s"}
        for path in (1, 2):
            assert _tcp_echo(lab, path, 6000 + path)["intact"]
        lab.set_link(2, False)
        assert not _tcp_echo(lab, 2, 6100, timeout=2)["intact"]
        lab.set_link(2, True)
        assert _tcp_echo(lab, 2, 6101)["intact"]
    assert not set(names) & set(our_namespaces())


def test_lab_cli_up_status_exec_down_all(no_leftovers):
    mp = [sys.executable, "-m", "mptcpsec", "lab"]
    up = subprocess.run([*mp, "up", "--path", "0:0", "--path", "10:20"], capture_output=True,
                        text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    run_id = up.stdout.strip()
    try:
        st = json.loads(subprocess.run([*mp, "status", "--json"], capture_output=True,
                                       text=True, timeout=30).stdout)
        (lab,) = [x for x in st["labs"] if x["run_id"] == run_id]
        assert len(lab["namespaces"]) == 4 and lab["processes"][f"mpsl-{run_id}-r2"] == 1
        ex = subprocess.run([*mp, "exec", "--run", run_id, "client", "--", "ip", "-br", "addr"],
                            capture_output=True, text=True, timeout=30)
        assert "192.0.2.17" in ex.stdout and "192.0.2.33" in ex.stdout
    finally:
        down = subprocess.run([*mp, "down", "--all"], capture_output=True, text=True,
                              timeout=60)
    assert down.returncode == 0 and run_id in down.stdout
    assert not [n for n in our_namespaces() if run_id in n]


def _bytes_around(frames: list[bytes], src: str, sport: int, seq: int,
                  span: int = 1000) -> dict[int, int]:
    """Subflow seq -> byte of one flow's payload within ``span`` of ``seq``, from Ethernet
    frames (offloads may have merged segments, so go by sequence number)."""
    out: dict[int, int] = {}
    want = (bytes(int(x) for x in src.split(".")), sport.to_bytes(2, "big"))
    for f in frames:
        if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
            continue
        ip = f[14:]
        ihl = (ip[0] & 15) * 4
        if (ip[12:16], ip[ihl:ihl + 2]) != want:
            continue
        doff = (ip[ihl + 12] >> 4) * 4
        start = int.from_bytes(ip[ihl + 4:ihl + 8], "big")
        for i, byte in enumerate(ip[ihl + doff:]):
            if abs(start + i - seq) <= span:
                out[start + i] = byte
    return out


def test_bitflip_kernel_mptcp_corrupts_tls_aborts_mptcpsec_poisons(no_leftovers):
    plan = AttackPlan(nbytes=1_500_000, after_bytes=300_000, timeout=8)
    attack = AttackConfig("bitflip", plan.after_bytes)
    ports = _Ports()
    with NetLab(list(plan.paths), stage_everywhere=True) as lab:
        cert = make_cert(lab.workdir, SERVER_ADDR)
        caps = {d: os.path.join(lab.workdir, f"{d}.pcap") for d in ("c", "s")}
        procs = [lab.capture("r1", d, caps[d], snaplen=65535) for d in ("c", "s")]
        kernel = run_one(lab, "kernel-mptcp", attack, plan, ports, cert)
        for p in procs:
            _stop(p)
        tls = run_one(lab, "tls-over-kernel-mptcp", attack, plan, ports, cert)
        mine = run_one(lab, "mptcpsec", attack, plan, ports, cert)
        frames = {d: read_pcap(caps[d]) for d in caps}
    # the attacker changed exactly one bit of one segment, as seen on both sides of it
    (change,) = kernel.attacker
    assert change["action"] == "bitflip" and change["packet"] > 0
    flow, seq = change["flow"], int(change["detail"].split("subflow seq ")[1].split(")")[0])
    src, sport = flow.split(">")[0].rsplit(":", 1)
    before, after = (_bytes_around(frames[d], src, int(sport), seq) for d in "cs")
    both = before.keys() & after.keys()
    assert seq in both and len(both) > 1000
    diff = [k for k in both if before[k] != after[k]]
    assert diff == [seq] and bin(before[seq] ^ after[seq]).count("1") == 1
    # kernel MPTCP delivered it; TLS over it refused it; mptcpsec dropped the subflow
    assert kernel.outcome == "corrupted" and not kernel.intact and not kernel.detected
    assert kernel.bytes_echoed == plan.nbytes
    assert tls.outcome == "aborted" and tls.detected and not tls.intact
    assert mine.intact and mine.detected and mine.attacker[0]["action"] == "bitflip"
    poisoned = [s for s in mine.subflows if s["state"] == "poisoned"]
    assert len(poisoned) == 1 and poisoned[0]["local"].startswith(PathAddrs(1).client)


def test_mptcp_aware_forgeries_against_the_kernel_and_mptcpsec(no_leftovers):
    plan = AttackPlan(nbytes=1_500_000, after_bytes=300_000, timeout=6)
    ports = _Ports()
    runs = {}
    with NetLab(list(plan.paths), stage_everywhere=True) as lab:
        cert = make_cert(lab.workdir, SERVER_ADDR)
        for name in ("add-addr", "strip-mpc", "data-fin", "mp-fastclose"):
            runs[name] = run_one(lab, "kernel-mptcp", AttackConfig(name, plan.after_bytes),
                                 plan, ports, cert)
        mine = run_one(lab, "mptcpsec", AttackConfig("mp-fastclose", plan.after_bytes), plan,
                       ports, cert)
    add = runs["add-addr"]
    assert add.attacker[0]["action"] == "add-addr"
    assert any(ln.startswith("[ANNOUNCED]") and "203.0.113.66" in ln
               for ln in add.kernel["monitor"])  # the kernel took the forged address
    strip = runs["strip-mpc"]
    assert strip.attacker[0]["packet"] == 1 and strip.intact  # silently plain TCP
    assert not any(ln.startswith("[CREATED]") for ln in strip.kernel["monitor"])
    fin = runs["data-fin"]
    # the forged DATA_FIN was injected; what the kernel makes of it depends on where it
    # lands against the data in flight: the echo cut short, the connection killed, or (when
    # the receiver has moved past the forged data sequence number) nothing; all three were
    # seen. The row must report whichever it was consistently.
    assert fin.attacker[0]["action"] == "data-fin"
    assert fin.outcome in ("truncated", "killed", "completed")
    assert fin.intact == (fin.outcome == "completed")
    assert (fin.bytes_echoed < plan.nbytes) == (fin.outcome != "completed")
    fc = runs["mp-fastclose"]
    assert fc.attacker[0]["action"] == "mp-fastclose" and not fc.intact
    assert fc.outcome == "killed"
    assert mine.intact and mine.attacker[0]["action"] == "nothing"


def test_transfer_and_failover_over_namespaced_paths(no_leftovers):
    paths = [PathSpec(20, 4), PathSpec(10, 8)]
    rows, meta = run_transfer(paths, nbytes=3_000_000, peers=("mptcpsec", "kernel-mptcp"))
    by = {r.peer: r for r in rows}
    assert meta["sum_MBps"] == pytest.approx(3.75)
    for peer in ("mptcpsec", "kernel-mptcp"):
        assert by[peer].MBps and by[peer].MBps > 0, by[peer].error
        assert by[peer].aggregation == pytest.approx(by[peer].MBps / 3.75, rel=0.01)
    assert by["mptcpsec"].aggregation > 0.5  # both paths carry data (one alone is 0.67)
    assert meta["stages"]["r1"]["packets"] > 1000


def _failover(peer: str):
    (row,) = run_failover([PathSpec(20, 4), PathSpec(20, 4)], nbytes=2_000_000, timeout=15,
                          peers=(peer,))
    return row


def test_failover_kernel_mptcp_survives_link_down(no_leftovers):
    # One run in several times out in this lab (the kernel's subflow re-establishment after
    # the link returns is not always prompt): the kernel must survive in one of two runs.
    row = _failover("kernel-mptcp")
    if not row.intact:
        row = _failover("kernel-mptcp")
    assert row.intact and row.bytes_lost == 0
    assert row.stall_s is not None and 0 < row.stall_s < 10


@pytest.mark.xfail(reason="a black-holed path stalls the connection-level DATA_ACK, so the "
                   "clean subflow also shows no progress and both hit subflow_timeout "
                   "(see EXPERIMENTS.md, netns failover)", strict=False)
def test_failover_mptcpsec_survives_link_down(no_leftovers):
    row = _failover("mptcpsec")
    assert row.intact and row.bytes_lost == 0


_HOLD_LAB = """
import sys, time
from mptcpsec.lab.net.env import NetLab
from mptcpsec.lab.net.topology import PathSpec
with NetLab([PathSpec(10, 10), PathSpec(10, 10)]) as lab:
    print(lab.topo.run_id, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_signals_and_crashes_leave_nothing_or_down_all_cleans(no_leftovers, sig):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LAB], stdout=subprocess.PIPE,
                            text=True)
    run_id = proc.stdout.readline().strip()
    assert run_id and [n for n in our_namespaces() if run_id in n]
    proc.send_signal(getattr(signal, sig))
    proc.wait(30)
    left = [n for n in our_namespaces() if run_id in n]
    if sig == "SIGKILL":  # nothing can run on SIGKILL: `lab down --all` is the remedy
        assert len(left) == 4
        down = subprocess.run([sys.executable, "-m", "mptcpsec", "lab", "down", "--all"],
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        time.sleep(0.2)
    assert not [n for n in our_namespaces() if run_id in n]


def test_demo_net_netns_compare_json(no_leftovers):
    res = subprocess.run([sys.executable, "-m", "mptcpsec", "demo", "--net", "netns",
                          "--compare", "--attack", "bitflip", "--bytes", "1000000", "--after",
                          "200000", "--json", "-q"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = {r["mode"]: r for r in json.loads(res.stdout)["runs"]}
    assert set(runs) == {"kernel-mptcp", "tls-over-kernel-mptcp", "mptcpsec"}
    assert runs["kernel-mptcp"]["outcome"] == "corrupted"
    assert runs["mptcpsec"]["intact"] and runs["mptcpsec"]["detected"]
    for r in runs.values():
        assert {"intact", "outcome", "detected", "attacker"} <= r.keys()
        assert r["attacker"][0]["action"] == "bitflip"

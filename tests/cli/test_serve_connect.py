"""`mptcpsec serve` and `mptcpsec connect` as separate processes over two paths."""

from __future__ import annotations

import json
import re

from .conftest import Processes, free_port, run_cli, wait_listening


def test_verify_over_two_paths_split_path(procs: Processes) -> None:
    server, port = procs.serve()
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-b", "127.0.0.1",
                  "-c", f"127.0.0.2:{port}", "-b", "127.0.0.2", "--verify", "4MB", "--json",
                  "--scheduler", "round-robin")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["intact"] and summary["outcome"] == "completed"
    assert summary["bytes_sent"] == summary["bytes_echoed"] == 4_000_000
    assert summary["sha256_sent"] == summary["sha256_echoed"]
    assert summary["key_exchange"] == "split-path"
    subflows = {s["id"]: s for s in summary["subflows"]}
    assert subflows[0]["local"].startswith("127.0.0.1:")
    assert subflows[1]["local"].startswith("127.0.0.2:")
    assert all(int(s["bytes_sent"]) > 0 for s in subflows.values())
    code, out, err = Processes.interrupt(server)
    assert code == 0, err
    line = json.loads(out.splitlines()[0])
    assert line["bytes_received"] == 4_000_000 and line["error"] is None


def test_a_proxy_attacking_path_2_is_survived(procs: Processes) -> None:
    server, port = procs.serve()
    pport = free_port("127.0.0.2", ())
    proxy = procs.start("proxy", "--listen", f"127.0.0.2:{pport}", "--upstream",
                        f"127.0.0.2:{port}", "--delay-ms", "2", "--attack", "bitflip-data",
                        "--after", "500k", "--json")
    wait_listening("127.0.0.2", pport)
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-b", "127.0.0.1",
                  "-c", f"127.0.0.2:{pport}", "-b", "127.0.0.2", "--no-join",
                  "--scheduler", "round-robin", "--verify", "4MB", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["intact"] and summary["detected"]
    poisoned = [e for e in summary["events"] if e["event"] == "subflow_poisoned"]
    assert poisoned and poisoned[0]["subflow_id"] == 1 and poisoned[0]["reported_by_peer"]
    code, out, err = Processes.interrupt(proxy)
    assert code == 0 and "Traceback" not in err
    stats = json.loads(out)
    assert len(stats["strikes"]) == 1 and stats["strikes"][0]["record_type"] == "DATA"
    strike = stats["strikes"][0]  # seconds since the proxy started; counted from 1
    assert "time" not in strike and 0 < strike["t"] < 60
    assert strike["record_number"] == strike["record_index"] + 1
    Processes.interrupt(server)


def test_tls_with_the_printed_fingerprint(procs: Processes) -> None:
    server, port = procs.serve("-k", "tls", hosts=("127.0.0.1",))
    fingerprint = None
    assert server.stderr is not None
    for _ in range(20):
        m = re.search(r"fingerprint: ([0-9a-f]{64})", server.stderr.readline())
        if m:
            fingerprint = m.group(1)
            break
    assert fingerprint
    bad = run_cli("connect", "-c", f"127.0.0.1:{port}", "-k", "tls", "--pin", "ab" * 32,
                  "--verify", "1MB")
    assert bad.returncode == 1 and "fingerprint mismatch" in bad.stderr
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-k", "tls", "--pin", fingerprint,
                  "--verify", "1MB", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["key_exchange"] == "tls"


def test_psk_netcat_mode(procs: Processes) -> None:
    env = {"MPTCPSEC_PSK": "42" * 32}
    _, port = procs.serve("-k", "psk", hosts=("127.0.0.1",), env=env)
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-k", "psk", input="hello, world\n",
                  env=env, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "hello, world\n"


def test_discard_server_and_send(procs: Processes) -> None:
    server, port = procs.serve("--discard")
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-c", f"127.0.0.2:{port}",
                  "--send", "2MB", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["bytes_sent"] == 2_000_000
    _, out, _ = Processes.interrupt(server)
    assert json.loads(out.splitlines()[0])["bytes_received"] == 2_000_000


def test_split_path_identity_is_remembered(procs: Processes, tmp_path) -> None:
    ident, known = tmp_path / "server.id", tmp_path / "known_hosts"
    first, port = procs.serve("--identity", str(ident))
    args = ["connect", "-c", f"127.0.0.1:{port}", "-c", f"127.0.0.2:{port}",
            "--known-hosts", str(known), "--verify", "100k", "-q"]
    assert run_cli(*args).returncode == 0
    assert known.read_text().startswith(f"127.0.0.1:{port} ed25519 ")
    assert (ident.stat().st_mode & 0o777) == 0o600
    first.wait(10)
    # Another server (another identity) at the same name is refused.
    procs.serve("--identity", str(tmp_path / "other.id"), port=port)
    res = run_cli(*args)
    assert res.returncode == 1 and "identity" in res.stderr.lower()


def test_errors_say_what_to_do() -> None:
    res = run_cli("connect", "-c", "127.0.0.1:9", "--verify", "1MB")
    assert res.returncode == 1 and "split-path needs two paths" in res.stderr
    res = run_cli("connect", "-c", "127.0.0.1:1", "-c", "127.0.0.2:1", "--verify", "1MB")
    assert res.returncode == 1 and "is `mptcpsec serve` running" in res.stderr
    res = run_cli("connect", "-c", "127.0.0.1:1", "-k", "tls", "--verify", "1MB")
    assert res.returncode == 1 and "--pin" in res.stderr
    res = run_cli("connect", "-c", "nonsense", "--verify", "1MB")
    assert res.returncode == 2 and "HOST:PORT" in res.stderr
    res = run_cli("proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1",
                  "--attack", "bitflip-option", "--option", "dss", "--field", "colour")
    assert res.returncode == 1 and "no field 'colour'" in res.stderr
    for cmd in ("demo", "proxy", "serve", "connect"):
        help_text = run_cli(cmd, "--help").stdout
        assert "examples:" in help_text

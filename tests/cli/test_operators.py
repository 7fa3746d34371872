"""What an operator running `mptcpsec serve` needs: a log of what was refused and why,
joins and closes, -v and --log-file, a clean Ctrl-C, --stdio, --config and --version."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from .conftest import CMD, Processes, free_port, run_cli, wait_listening

PSK = "ab" * 32


def test_version() -> None:
    res = run_cli("--version")
    assert res.returncode == 0 and re.match(r"mptcpsec \d+\.\d+", res.stdout)


def test_server_logs_refused_handshakes_with_address_and_reason(procs: Processes,
                                                                tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    server, port = procs.serve("-k", "psk", "--log-file", str(log), env={"MPTCPSEC_PSK": PSK})
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-k", "psk", "--verify", "1k",
                  "--timeout", "5", env={"MPTCPSEC_PSK": "cd" * 32})
    assert res.returncode == 1
    # Garbage, not a record:
    with socket.create_connection(("127.0.0.2", port), source_address=("127.0.0.2", 0)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        assert s.recv(100) == b""  # reset or closed, nothing answered
    time.sleep(0.3)
    code, _, err = Processes.interrupt(server)
    assert code == 0
    refused = [line for line in err.splitlines() if " refused " in line]
    assert any("refused 127.0.0.1:" in line and "psk" in line for line in refused), err
    assert any("refused 127.0.0.2:" in line and "first record" in line for line in refused), err
    text = log.read_text()
    assert "refused 127.0.0.1:" in text and "refused 127.0.0.2:" in text


def test_refusals_are_rate_limited_under_a_flood(procs: Processes) -> None:
    server, port = procs.serve()
    for _ in range(60):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"\x07" * 64)
    time.sleep(0.5)
    _, _, err = Processes.interrupt(server)
    lines = [line for line in err.splitlines() if "refused" in line]
    assert 1 <= len([x for x in lines if "refused 127.0.0.1:" in x]) <= 20, err
    assert any("more refused" in line for line in lines), err


def test_joins_closes_and_per_record_detail(procs: Processes, tmp_path: Path) -> None:
    server, port = procs.serve("-v")
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-b", "127.0.0.1",
                  "-c", f"127.0.0.2:{port}", "-b", "127.0.0.2",
                  "-c", f"127.0.0.2:{port}", "-b", "127.0.0.2", "--verify", "200k")
    assert res.returncode == 0, res.stderr
    _, _, err = Processes.interrupt(server)
    assert re.search(r"connection 1: subflow 2 joined from 127\.0\.0\.2:\d+", err), err
    assert re.search(r"connection 1: subflow \d closed", err)
    assert re.search(r"record subflow \d+ C->S DATA .*dss", err, re.IGNORECASE), err


def test_ctrl_c_closes_live_clients_cleanly(procs: Processes) -> None:
    port = free_port()
    server = procs.start("serve", "-l", f"127.0.0.1:{port}", "-l", f"127.0.0.2:{port}")
    wait_listening("127.0.0.1", port, proc=server)
    wait_listening("127.0.0.2", port, proc=server)
    client = subprocess.Popen([*CMD, "connect", "-c", f"127.0.0.1:{port}", "-c",
                               f"127.0.0.2:{port}"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    procs.procs.append(client)  # type: ignore[arg-type]
    assert client.stdin is not None
    client.stdin.write(b"still talking\n")  # stdin stays open for now
    client.stdin.flush()
    time.sleep(1.5)
    server.send_signal(signal.SIGINT)
    assert server.stderr is not None
    seen = []
    for _ in range(50):  # the server's DATA_FIN is out: the client finishes its side
        seen.append(server.stderr.readline())
        if "shutting down" in seen[-1]:
            break
    client.stdin.close()
    _, err = server.communicate(timeout=20)
    err = "".join(seen) + err
    assert server.returncode == 0, err
    assert "shutting down: closing 1 live connection" in err
    assert "error" not in err.lower() and "failed" not in err.lower(), err
    code = client.wait(20)
    cerr = client.stderr.read().decode() if client.stderr else ""
    assert code == 0 and "connection failed" not in cerr, cerr


def test_serve_stdio_moves_a_file_both_ways(tmp_path: Path) -> None:
    port = free_port()
    blob = bytes(range(256)) * 4000  # ~1 MB, binary
    (tmp_path / "up").write_bytes(blob)
    (tmp_path / "down").write_bytes(b"from the server\n")
    with open(tmp_path / "down", "rb") as sin, open(tmp_path / "got_up", "wb") as sout:
        server = subprocess.Popen([*CMD, "serve", "-l", f"127.0.0.1:{port}", "-l",
                                   f"127.0.0.2:{port}", "--stdio"], stdin=sin, stdout=sout,
                                  stderr=subprocess.PIPE)
        try:
            wait_listening("127.0.0.1", port, proc=server)  # type: ignore[arg-type]
            with open(tmp_path / "up", "rb") as cin:
                client = subprocess.run([*CMD, "connect", "-c", f"127.0.0.1:{port}", "-c",
                                         f"127.0.0.2:{port}", "-q"], stdin=cin,
                                        capture_output=True, timeout=60)
            code = server.wait(30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert client.returncode == 0, client.stderr
    assert code == 0, server.stderr.read() if server.stderr else ""
    assert client.stdout == b"from the server\n"
    assert (tmp_path / "got_up").read_bytes() == blob


def test_config_file_gives_options_to_every_command(procs: Processes, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "k").write_text(PSK + "\n")
    conf = tmp_path / "mptcpsec.toml"
    conf.write_text(f"""
key-exchange = "psk"
psk-file = "{tmp_path / 'k'}"
[serve]
listen = ["127.0.0.1:{port}"]
once = true
json = true
[connect]
connect = ["127.0.0.1:1"]
""")
    server = procs.start("serve", "--config", str(conf))
    wait_listening("127.0.0.1", port, proc=server)
    # --connect on the command line replaces the file's list (which would fail: port 1).
    res = run_cli("connect", "--config", str(conf), "-c", f"127.0.0.1:{port}",
                  "--verify", "100k", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["key_exchange"] == "psk"
    out, _ = server.communicate(timeout=20)
    assert json.loads(out.splitlines()[0])["key_exchange"] == "psk"
    conf.write_text('[connect]\ncolour = "blue"\n')
    res = run_cli("connect", "--config", str(conf))
    assert res.returncode == 2 and "no option --colour" in res.stderr and str(conf) in res.stderr
    conf.write_text("[connect\n")
    res = run_cli("connect", "--config", str(conf))
    assert res.returncode == 2 and "not valid TOML" in res.stderr
    res = run_cli("connect", "--config", str(tmp_path / "missing.toml"))
    assert res.returncode == 2 and "cannot read config file" in res.stderr

"""What a new user meets first: credentials are never silently ignored, bad files are named
before any socket exists, and every mistake is an exit status and a sentence, not a
traceback (each test runs the real command)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from mptcpsec.aio.stores import write_certificate
from mptcpsec.crypto.certs import generate_self_signed

from .conftest import Processes, run_cli

PIN = "0" * 64


def no_traceback(res) -> None:
    assert "Traceback" not in res.stderr, res.stderr


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("certs")
    srv, cli = generate_self_signed("localhost"), generate_self_signed("client")
    write_certificate(srv, d / "srv.pem", d / "srv.key")
    write_certificate(cli, d / "cli.pem", d / "cli.key")
    (d / "junk").write_text("junk\n")
    return {"dir": str(d), "srv_fp": srv.fingerprint, "cli_fp": cli.fingerprint,
            **{n: str(d / n) for n in ("srv.pem", "srv.key", "cli.pem", "cli.key", "junk")}}


# ------------------------------------------------------------------ ignored credentials

@pytest.mark.parametrize("extra, flag, right", [
    (["-k", "split-path", "--pin", PIN], "--pin", "-k tls"),
    (["-k", "split-path", "--cafile", "ca.pem"], "--cafile", "-k tls"),
    (["-k", "psk", "--cert", "c.pem", "--key", "c.key"], "--cert", "-k tls"),
    (["-k", "tls", "--pin", PIN, "--psk-file", "k"], "--psk-file", "-k psk"),
    (["-k", "tls", "--pin", PIN, "--known-hosts", "kh"], "--known-hosts", "-k split-path"),
])
def test_connect_refuses_credentials_of_another_key_exchange(extra, flag, right) -> None:
    res = run_cli("connect", "-c", "127.0.0.1:9", "-c", "127.0.0.2:9", "--verify", "1k",
                  *extra)
    assert res.returncode == 1, res.stderr
    assert flag in res.stderr and right in res.stderr
    no_traceback(res)


def test_serve_refuses_credentials_of_another_key_exchange(certs) -> None:
    for extra, flag in ((["-k", "split-path", "--pin", PIN], "--pin"),
                        (["-k", "psk", "--cert", certs["srv.pem"], "--key", certs["srv.key"]],
                         "--cert"),
                        (["--mode", "plain", "--identity", "x.id"], "--identity")):
        res = run_cli("serve", "-l", "127.0.0.1:9", *extra, timeout=30)
        assert res.returncode == 1 and flag in res.stderr, res.stderr
        assert "listening" not in res.stderr
    res = run_cli("serve", "-l", "127.0.0.1:9", "--pin", PIN, "--psk-file", "k")
    assert res.returncode == 1 and "several key exchanges" in res.stderr


def test_credentials_alone_select_their_key_exchange(procs: Processes) -> None:
    """`--pin` without -k means tls (said in --help), not split-path with the pin dropped."""
    server, port = procs.serve("-k", "tls", hosts=("127.0.0.1",))
    assert server.stderr is not None
    fp = None
    for _ in range(20):
        line = server.stderr.readline()
        if "fingerprint:" in line:
            fp = line.split("fingerprint:")[1].split()[0]
            break
    assert fp
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "--pin", fp, "--verify", "100k",
                  "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["key_exchange"] == "tls"
    assert "whose options are given" in " ".join(run_cli("connect", "--help").stdout.split())


# ------------------------------------------------------------------ files checked at start

def test_junk_certificate_and_key_are_refused_at_start(certs) -> None:
    res = run_cli("serve", "-l", "127.0.0.1:9", "-k", "tls", "--cert", certs["junk"],
                  "--key", certs["junk"])
    assert res.returncode == 1 and certs["junk"] in res.stderr
    assert "not a PEM certificate" in res.stderr and "fingerprint" not in res.stderr
    res = run_cli("serve", "-l", "127.0.0.1:9", "-k", "tls", "--cert", certs["srv.pem"],
                  "--key", certs["junk"])
    assert res.returncode == 1 and "not a PEM private key" in res.stderr
    res = run_cli("serve", "-l", "127.0.0.1:9", "-k", "tls", "--cert", certs["srv.pem"],
                  "--key", certs["cli.key"])
    assert res.returncode == 1 and "does not belong to certificate" in res.stderr
    assert certs["cli.key"] in res.stderr


def test_missing_cafile_fails_before_connecting(certs) -> None:
    with socket.socket() as listener:  # a port that would accept: nothing may reach it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0)
        port = listener.getsockname()[1]
        res = run_cli("connect", "-c", f"127.0.0.1:{port}", "--cafile", "/nonexistent/ca.pem",
                      "--verify", "1k")
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert res.returncode == 1 and "/nonexistent/ca.pem" in res.stderr
    no_traceback(res)
    res = run_cli("connect", "-c", "127.0.0.1:9", "--cafile", certs["junk"])
    assert res.returncode == 1 and "not a PEM certificate" in res.stderr


def test_missing_client_certificate_is_named(procs: Processes, certs) -> None:
    server, port = procs.serve("-k", "tls", "--cert", certs["srv.pem"], "--key",
                               certs["srv.key"], "--pin", certs["cli_fp"],
                               hosts=("127.0.0.1",))
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-k", "tls", "--pin", certs["srv_fp"],
                  "--verify", "10k")
    assert res.returncode == 1
    assert "the server requires a client certificate" in res.stderr
    assert "--cert" in res.stderr
    _, _, err = Processes.interrupt(server)
    assert "refused 127.0.0.1:" in err and "did not return a certificate" in err
    # ...and with the certificate the server pinned, it works.
    server, port = procs.serve("-k", "tls", "--cert", certs["srv.pem"], "--key",
                               certs["srv.key"], "--pin", certs["cli_fp"],
                               hosts=("127.0.0.1",))
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "--pin", certs["srv_fp"],
                  "--cert", certs["cli.pem"], "--key", certs["cli.key"], "--verify", "10k")
    assert res.returncode == 0, res.stderr


# ------------------------------------------------------------------ arguments

@pytest.mark.parametrize("addr, message", [
    ("127.0.0.1:70000", "port 70000 out of range"),
    ("127.0.0.1:0", "port 0 out of range"),
    ("127.0.0.1:17000:5", "expected HOST:PORT"),
    ("127.0.0.1:http", "is not a number"),
])
def test_bad_addresses(addr: str, message: str) -> None:
    res = run_cli("connect", "-c", addr, "-k", "psk")
    assert res.returncode == 2 and message in res.stderr, res.stderr


@pytest.mark.parametrize("args, message", [
    (["demo", "--plot", "x.txt"], ".png"),
    (["demo", "--plot", "/nonexistent/d/x.png"], "does not exist"),
    (["demo", "--pcap", "/nonexistent/x.pcap"], "/nonexistent/x.pcap"),
    (["demo", "--trace", "/proc/x.jsonl"], "/proc/x.jsonl"),
    (["connect", "-c", "127.0.0.1:9", "-c", "127.0.0.2:9", "--pcap", "/nonexistent/x"],
     "cannot write"),
    (["serve", "-l", "127.0.0.1:9", "--trace", "/nonexistent/x"], "cannot write"),
    (["connect", "-c", "127.0.0.1:9", "-c", "127.0.0.2:9", "--keylog", "/nonexistent/k"],
     "cannot write"),
])
def test_unwritable_outputs_fail_before_running(args: list[str], message: str) -> None:
    t0 = time.monotonic()
    res = run_cli(*args)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert time.monotonic() - t0 < 20
    no_traceback(res)


def test_ipv6_path_with_pcap_is_captured(procs: Processes, tmp_path: Path) -> None:
    """--pcap over an IPv6 path: IPv6/TCP segments that tshark decodes (was refused)."""
    import shutil
    import subprocess

    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    server = procs.start("serve", "-l", f"[::1]:{port}", "-k", "psk", "--once",
                         env={"MPTCPSEC_PSK": "ab" * 32})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and server.poll() is None:
        with socket.socket(socket.AF_INET6) as s:
            if s.connect_ex(("::1", port)) == 0:
                break
        time.sleep(0.05)
    pcap = tmp_path / "v6.pcap"
    res = run_cli("connect", "-c", f"[::1]:{port}", "-k", "psk", "--pcap", str(pcap),
                  "--verify", "64K", env={"MPTCPSEC_PSK": "ab" * 32})
    assert res.returncode == 0, res.stderr
    if shutil.which("tshark") is None:
        return
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "ipv6.src",
                          "-e", "tcp.dstport", "-e", "tcp.options.mptcp.rawdataseqno",
                          "-Y", "tcp.options.mptcp.rawdataseqno"],
                         capture_output=True, text=True, timeout=60)
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert rows and all(r[0] == "::1" for r in rows), out.stdout + out.stderr
    assert any(r[1] == str(port) for r in rows)  # client -> server segments with a DSN
    bad = subprocess.run(["tshark", "-r", str(pcap), "-o", "tcp.check_checksum:TRUE", "-Y",
                          "tcp.checksum.status == 0 or _ws.malformed"],
                         capture_output=True, text=True, timeout=60)
    assert bad.stdout.strip() == "", bad.stdout


# ------------------------------------------------------------------ connecting

def test_timeout_bounds_a_silent_server() -> None:
    """A server that accepts TCP and never answers: --timeout, not the built-in 10 s."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        t0 = time.monotonic()
        res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-k", "psk", "--timeout", "1",
                      "--verify", "1k", env={"MPTCPSEC_PSK": "ab" * 32})
        elapsed = time.monotonic() - t0
    assert res.returncode == 1 and "within --timeout 1 s" in res.stderr, res.stderr
    assert elapsed < 8
    assert "(default: 15)" in " ".join(run_cli("connect", "--help").stdout.split())


def test_unresolvable_host_and_bind_failure_are_named() -> None:
    env = {"MPTCPSEC_PSK": "ab" * 32}
    res = run_cli("connect", "-c", "no-such-host.invalid:7000", "-k", "psk", env=env)
    assert res.returncode == 1 and "cannot resolve no-such-host.invalid" in res.stderr
    assert "mptcpsec serve" not in res.stderr
    res = run_cli("connect", "-c", "127.0.0.1:9", "-b", "192.0.2.7", "-k", "psk", env=env)
    assert res.returncode == 1 and "cannot bind the local address (192.0.2.7)" in res.stderr
    res = run_cli("serve", "-l", "192.0.2.7:7000")
    assert res.returncode == 1 and "cannot listen on 192.0.2.7:7000" in res.stderr


def test_mode_mismatch_names_the_local_settings(procs: Processes) -> None:
    server, port = procs.serve()
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-c", f"127.0.0.2:{port}",
                  "--mode", "plain", "--verify", "10k", "--timeout", "5")
    assert res.returncode == 1
    assert "the server does not run --mode plain" in res.stderr
    assert "local settings: --mode plain" in res.stderr
    _, _, err = Processes.interrupt(server)
    assert "refused 127.0.0.1:" in err and "handshake failed" in err
    assert "this server: --mode mptcpsec, -k split-path, --algorithm aes-128-gcm" in err


def test_send_to_an_echo_server_says_so(procs: Processes) -> None:
    _, port = procs.serve()
    t0 = time.monotonic()
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-c", f"127.0.0.2:{port}",
                  "--send", "300k", "--json", "--timeout", "5")
    assert time.monotonic() - t0 < 20
    doc = json.loads(res.stdout)
    assert doc["check"] == "delivery" and doc["sha256_echoed"] is None
    assert doc["bytes_sent"] == 300_000
    assert "it echoes" in doc["note"] and "--discard" in doc["note"]


# ------------------------------------------------------------------ netcat mode output

def test_stdout_full_ends_with_an_error(procs: Processes) -> None:
    _, port = procs.serve()
    with open("/dev/full", "w") as full:
        import subprocess

        from .conftest import CMD
        res = subprocess.run([*CMD, "connect", "-c", f"127.0.0.1:{port}", "-c",
                              f"127.0.0.2:{port}"], input=b"hello\n" * 1000, stdout=full,
                             stderr=subprocess.PIPE, timeout=60)
    err = res.stderr.decode()
    assert res.returncode == 1 and "cannot write stdout" in err, err
    assert "Traceback" not in err


def test_closed_pipe_ends_with_an_error(procs: Processes) -> None:
    import subprocess

    from .conftest import CMD
    _, port = procs.serve()
    p = subprocess.Popen([*CMD, "connect", "-c", f"127.0.0.1:{port}", "-c",
                          f"127.0.0.2:{port}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdin is not None and p.stdout is not None and p.stderr is not None
    p.stdout.close()  # like `| head` that has read its lines

    def feed() -> None:
        try:
            for _ in range(200):
                p.stdin.write(b"x" * 65536)
            p.stdin.close()
        except OSError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    code = p.wait(60)
    err = p.stderr.read().decode()
    assert code == 1 and "cannot write stdout" in err, err
    assert "connection failed" not in err and "Traceback" not in err


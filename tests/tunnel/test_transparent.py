"""Transparent mode: iptables/ip6tables REDIRECT inside a network namespace this test
creates (loopback only, documentation addresses, no link to anything), the destination
read back with SO_ORIGINAL_DST. Needs root, iptables and ip; skipped cleanly without."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import sha256_file

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespace, iptables)"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "iptables", "ip6tables", "curl")),
                       reason="needs ip, iptables, ip6tables and curl"),
]

SERVER4, CLIENT4 = "198.51.100.7", "192.0.2.1"
SERVER6, CLIENT6 = "2001:db8::7", "2001:db8::1"
LISTEN = 1234


def _ns(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=30, check=check)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"mptcpsec-tp-{os.getpid()}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {res.stderr.strip()}")
    try:
        _ns(name, "ip", "link", "set", "lo", "up")
        for addr in (f"{SERVER4}/32", f"{CLIENT4}/32", f"{SERVER6}/128", f"{CLIENT6}/128"):
            _ns(name, "ip", "addr", "add", addr, "dev", "lo")
        # Only the client's connections to the server's port 80 are redirected; the
        # gateway's own connection to the same destination is not (another source).
        for tool, src, dst in (("iptables", CLIENT4, SERVER4), ("ip6tables", CLIENT6, SERVER6)):
            res = _ns(name, tool, "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-s", src, "-d", dst,
                      "--dport", "80", "-j", "REDIRECT", "--to-ports", str(LISTEN), check=False)
            if res.returncode != 0:
                pytest.skip(f"{tool} REDIRECT unavailable: {res.stderr.strip()}")
        yield name
    finally:
        # The rules, addresses and sockets go with the namespace.
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"exited: {path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"no {text!r} in {path}")


def test_transparent_redirect_ipv4_and_ipv6(netns: str, www: Path, tmp_path: Path) -> None:
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"{name}.log"
        p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-u", *args],
                             stdout=log.open("wb"), stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=tmp_path)
        procs.append(p)
        return p, log

    key = os.urandom(32).hex()
    (tmp_path / "clients.psk").write_text(f"cpe {key}\n")
    (tmp_path / "cpe.psk").write_text(key + "\n")
    try:
        for name, host in (("http4", SERVER4), ("http6", SERVER6)):
            p, log = start(name, "-m", "http.server", "--bind", host, "--directory", str(www),
                           "80")
            _wait_for(log, "Serving HTTP", p)
        gw, gwlog = start("gateway", "-m", "mptcpsec", "gateway", "-l", "127.0.0.1:7000",
                          "-l", "127.0.0.2:7000", "-k", "psk", "--psk-clients", "clients.psk",
                          "--allow", f"{SERVER4}:80", "--allow", f"[{SERVER6}]:80", "--no-live")
        _wait_for(gwlog, "gateway listening", gw)
        tun, tunlog = start("tunnel", "-m", "mptcpsec", "tunnel", "-c", "127.0.0.1:7000",
                            "-b", "127.0.0.1", "-c", "127.0.0.2:7000", "-b", "127.0.0.2",
                            "-k", "psk", "--psk-file", "cpe.psk", "--psk-identity", "cpe",
                            "--transparent", f"127.0.0.1:{LISTEN}",
                            "--transparent", f"[::1]:{LISTEN}", "--no-live", "--no-join")
        _wait_for(tunlog, "gateway paths", tun)
        want = sha256_file(www / "mid.bin")
        for src, url in ((CLIENT4, f"http://{SERVER4}/mid.bin"),
                         (CLIENT6, f"http://[{SERVER6}]/mid.bin")):
            res = subprocess.run(["ip", "netns", "exec", netns, "curl", "-sS", "-g",
                                  "--max-time", "30", "--interface", src, url],
                                 capture_output=True, timeout=40)
            assert res.returncode == 0, (url, res.stderr, tunlog.read_text()[-2000:])
            assert hashlib.sha256(res.stdout).hexdigest() == want
        text = tunlog.read_text()
        assert f"-> {SERVER4}:80:" in text and f"-> [{SERVER6}]:80:" in text, text
        gwtext = gwlog.read_text()
        assert f"client 'cpe' -> {SERVER4}:80" in gwtext
        # A connection that was not redirected (straight to the listener) is closed, not
        # sent back to the listener in a loop.
        res = _ns(netns, "curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{LISTEN}/",
                  check=False)
        assert res.returncode != 0
        assert "not redirected" in tunlog.read_text()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)

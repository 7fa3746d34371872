"""The converter end to end: real curl and python-socks through `mptcpsec tunnel` and
`mptcpsec gateway` processes to `python -m http.server` on 127.0.0.3."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import BIG, CMD, DEST, Rig, curl, free_port, needs_curl, sha256_file, wait_listening

pytestmark = [pytest.mark.network, needs_curl]

GW_HOSTS = ("127.0.0.1", "127.0.0.2")


def _gw_paths(port: int) -> list[tuple[str, int]]:
    return [(h, port) for h in GW_HOSTS]


def _json_line(text: str, key: str) -> dict:
    for line in text.splitlines():
        if line.startswith("{") and key in line:
            return json.loads(line)[key]
    raise AssertionError(f"no {key} summary in {text!r}")


def test_50mb_through_socks5_hostname_and_forward(rig: Rig, www: Path, tmp_path: Path) -> None:
    hport = rig.http(www)
    gw, gport = rig.gateway("--scheduler", "round-robin")
    tun, sport, fport = rig.tunnel(_gw_paths(gport), forward=f"{DEST}:{hport}")
    want = sha256_file(www / "big.bin")
    out = tmp_path / "via-socks.bin"
    res = curl("--socks5-hostname", f"127.0.0.1:{sport}", f"http://{DEST}:{hport}/big.bin",
               "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size == BIG and sha256_file(out) == want
    out2 = tmp_path / "via-forward.bin"
    res = curl(f"http://127.0.0.1:{fport}/big.bin", "-o", str(out2))
    assert res.returncode == 0, res.stderr
    assert sha256_file(out2) == want
    assert tun.stop() == 0 and gw.stop() == 0
    g = _json_line(gw.stdout, "gateway")
    assert g["accepted"] == 2 and g["refused_total"] == 0
    assert g["bytes_to_client"] > 2 * BIG
    assert "client 'laptop' -> 127.0.0.3" in gw.stderr


def test_names_resolved_by_the_gateway(rig: Rig, www: Path) -> None:
    """`socks5h://localhost`: the name travels in the request; the gateway resolves it."""
    port = free_port("127.0.0.1")
    p = rig.start("http-lo", "--bind", "127.0.0.1", "--directory", str(www), str(port),
                  python_module="http.server")
    wait_listening("127.0.0.1", port, p.popen)
    gw, gport = rig.gateway(allow=(f"127.0.0.1:{port}",))
    _, sport, _ = rig.tunnel(_gw_paths(gport))
    res = curl("--proxy", f"socks5h://127.0.0.1:{sport}", f"http://localhost:{port}/small.bin")
    assert res.returncode == 0, res.stderr
    assert hashlib.sha256(res.stdout).hexdigest() == sha256_file(www / "small.bin")
    gw.stop()
    assert "-> localhost:" in gw.stderr


def _http_get(sock: socket.socket, host: str, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    chunks = []
    while data := sock.recv(1 << 16):
        chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head[:100]
    return body


def test_python_socks_client_with_username_password(rig: Rig, www: Path) -> None:
    from python_socks import ProxyError
    from python_socks.sync import Proxy

    hport = rig.http(www)
    _, gport = rig.gateway()
    _, sport, _ = rig.tunnel(_gw_paths(gport), "--socks-user", "alice:s3cret")
    proxy = Proxy.from_url(f"socks5://alice:s3cret@127.0.0.1:{sport}", rdns=True)
    sock = proxy.connect(dest_host=DEST, dest_port=hport, timeout=20)
    try:
        body = _http_get(sock, DEST, "/mid.bin")
    finally:
        sock.close()
    assert hashlib.sha256(body).hexdigest() == sha256_file(www / "mid.bin")
    bad = Proxy.from_url(f"socks5://alice:wrong@127.0.0.1:{sport}", rdns=True)
    with pytest.raises(ProxyError):
        bad.connect(dest_host=DEST, dest_port=hport, timeout=20).close()
    # Through this independent client too, a refused destination is a SOCKS error.
    with pytest.raises(ProxyError, match="not allowed"):
        proxy.connect(dest_host="127.0.0.4", dest_port=hport, timeout=20).close()
    # SOCKS4 gets SOCKS4's rejection, anything else is closed without a reply.
    res = curl("--socks4", f"127.0.0.1:{sport}", f"http://{DEST}:{hport}/small.bin")
    assert res.returncode == 97 and not res.stdout, res.stderr
    with socket.create_connection(("127.0.0.1", sport), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100) == b""
    sock = proxy.connect(dest_host=DEST, dest_port=hport, timeout=20)  # still serving
    try:
        assert hashlib.sha256(_http_get(sock, DEST, "/small.bin")).hexdigest() == \
            sha256_file(www / "small.bin")
    finally:
        sock.close()


@pytest.mark.parametrize("attack", ["bitflip-data", "rst", "inject", "replay"])
def test_download_survives_an_attack_on_path_2(rig: Rig, www: Path, tmp_path: Path,
                                               attack: str) -> None:
    """Path 2 through `mptcpsec proxy --attack`, gateway to tunnel, 300 kB into the path's
    records: the 4 MB download is intact."""
    hport = rig.http(www)
    gw, gport = rig.gateway("--scheduler", "round-robin")
    pport = free_port("127.0.0.2")
    proxy = rig.start("proxy", "proxy", "--listen", f"127.0.0.2:{pport}", "--upstream",
                      f"127.0.0.2:{gport}", "--attack", attack, "--direction", "s2c",
                      "--after", "300k", "--json")
    wait_listening("127.0.0.2", pport, proxy.popen)
    # path 2 joins at once (not after the first answer), so that it carries its share of
    # the download however fast path 1 is
    tun, sport, _ = rig.tunnel([("127.0.0.1", gport), ("127.0.0.2", pport)], "--eager-join")
    out = tmp_path / "4m.bin"
    res = curl("--socks5-hostname", f"127.0.0.1:{sport}", f"http://{DEST}:{hport}/4m.bin",
               "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert sha256_file(out) == sha256_file(www / "4m.bin")
    proxy.stop()
    strikes = json.loads(proxy.stdout)["strikes"]
    assert len(strikes) == 1, proxy.stderr
    assert tun.stop() == 0
    t = _json_line(tun.stdout, "tunnel")
    if attack != "rst":  # a forged, flipped or replayed record poisons path 2 at the tunnel
        assert t["poisoned_subflows"] == 1, tun.stderr
        assert "subflow 1 POISONED" in tun.stderr
    # (an RST without an authenticated CLOSE is a path failure: dropped, data re-sent)
    assert gw.stop() == 0


def test_tls_end_to_end_through_the_tunnel(rig: Rig, www: Path) -> None:
    """curl speaks TLS 1.3 to a local HTTPS server; the converter only carries the bytes."""
    from mptcpsec.crypto.certs import generate_self_signed

    bundle = generate_self_signed("localhost")
    (rig.tmp / "srv.pem").write_bytes(bundle.cert_pem)
    (rig.tmp / "srv.key").write_bytes(bundle.key_pem)
    port = free_port(DEST)
    script = rig.tmp / "https.py"
    script.write_text(
        "import http.server, ssl, sys, functools\n"
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
        "ctx.minimum_version = ssl.TLSVersion.TLSv1_3\n"
        "ctx.load_cert_chain('srv.pem', 'srv.key')\n"
        "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])\n"
        "s = http.server.ThreadingHTTPServer(('127.0.0.3', int(sys.argv[1])), h)\n"
        "s.socket = ctx.wrap_socket(s.socket, server_side=True)\n"
        "s.serve_forever()\n")
    sub = subprocess.Popen([sys.executable, str(script), str(port), str(www)], cwd=rig.tmp,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(DEST, port)
        _, gport = rig.gateway()
        _, sport, _ = rig.tunnel(_gw_paths(gport))
        res = curl("-k", "--tlsv1.3", "--socks5-hostname", f"127.0.0.1:{sport}",
                   f"https://{DEST}:{port}/mid.bin")
        assert res.returncode == 0, res.stderr
        assert hashlib.sha256(res.stdout).hexdigest() == sha256_file(www / "mid.bin")
    finally:
        sub.kill()
        sub.wait()


def _refusal(args: list[str], url: str) -> tuple[int, str]:
    res = curl(*args, url, timeout=20)
    return res.returncode, res.stderr.decode(errors="replace")


def test_every_refusal_is_a_socks_error_and_the_gateway_keeps_serving(rig: Rig,
                                                                      www: Path) -> None:
    hport = rig.http(www)
    closed = free_port(DEST)  # nothing listens there
    gw, gport = rig.gateway(allow=(f"{DEST}/32",))
    good, sport, _ = rig.tunnel(_gw_paths(gport))
    _, wrong_key, _ = rig.tunnel(_gw_paths(gport), name="wrong-key",
                                 auth=rig.psk_args(key="11" * 32))
    _, wrong_id, _ = rig.tunnel(_gw_paths(gport), name="wrong-id",
                                auth=rig.psk_args(identity="mallory"))
    unreachable = free_port(*GW_HOSTS)
    _, no_gw, _ = rig.tunnel(_gw_paths(unreachable), name="no-gateway")
    long_name = "a" * 64 + ".example"
    cases = [  # (socks port, url, SOCKS reply code curl reports)
        (wrong_key, f"http://{DEST}:{hport}/small.bin", 2),  # unauthenticated client
        (wrong_id, f"http://{DEST}:{hport}/small.bin", 2),  # unknown psk identity
        (sport, f"http://127.0.0.4:{hport}/small.bin", 2),  # outside --allow
        (sport, f"http://{DEST}:{closed}/", 5),  # destination refused
        (sport, f"http://{long_name}:{hport}/", 4),  # DNS failure (no query leaves)
        (no_gw, f"http://{DEST}:{hport}/small.bin", 1),  # gateway unreachable
    ]
    for port, url, code in cases:
        rc, err = _refusal(["--socks5-hostname", f"127.0.0.1:{port}"], url)
        assert rc == 97, (url, err)  # curl: "Can't complete SOCKS5 connection"
        assert f"({code})" in err, (url, code, err)
        res = curl("--socks5-hostname", f"127.0.0.1:{sport}", f"http://{DEST}:{hport}/small.bin")
        assert res.returncode == 0 and len(res.stdout) == 200_000, res.stderr
    assert gw.stop() == 0
    g = _json_line(gw.stdout, "gateway")
    refused = g["refused"]
    assert refused.get("authentication failed") == 2, (refused, gw.stderr)
    assert refused.get("not allowed") == 1
    assert refused.get("connection refused") == 1
    assert refused.get("dns failure") == 1
    assert "client 'laptop': refused 127.0.0.4" in gw.stderr
    assert good.stop() == 0


def test_gateway_refuses_to_be_an_open_proxy(rig: Rig) -> None:
    port = free_port("127.0.0.1")
    runs = {
        "no allow": ["-k", "psk", "--psk-clients", str(rig.clients_file())],
        "split-path": ["--allow", "127.0.0.1"],
        "tls without client certs": ["-k", "tls", "--allow", "127.0.0.1"],
        "psk without clients": ["-k", "psk", "--allow", "127.0.0.1"],
    }
    for what, extra in runs.items():
        res = subprocess.run([*CMD, "gateway", "-l", f"127.0.0.1:{port}", *extra],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode != 0, what
        assert "error" in res.stderr and "Traceback" not in res.stderr, (what, res.stderr)


def _fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.slow
def test_100_concurrent_curls_and_back_to_baseline(rig: Rig, www: Path, tmp_path: Path) -> None:
    hport = rig.http(www)
    gw, gport = rig.gateway()
    _, sport, _ = rig.tunnel(_gw_paths(gport))
    url = f"http://{DEST}:{hport}/small.bin"
    want = sha256_file(www / "small.bin")
    for _ in range(3):  # warm up: first connections allocate pools and caches
        assert curl("--socks5-hostname", f"127.0.0.1:{sport}", url).returncode == 0
    time.sleep(1.0)
    fds0, rss0 = _fds(gw.popen.pid), _rss(gw.popen.pid)
    outs = [tmp_path / f"{i}.bin" for i in range(100)]
    curls = [subprocess.Popen(["curl", "-sS", "--max-time", "60", "--socks5-hostname",
                               f"127.0.0.1:{sport}", url, "-o", str(o)],
                              stderr=subprocess.PIPE) for o in outs]
    codes = [c.wait(90) for c in curls]
    errors = [c.stderr.read().decode() for c in curls if c.returncode]  # type: ignore[union-attr]
    assert codes.count(0) == 100, errors[:3]
    assert all(sha256_file(o) == want for o in outs)
    peak = _rss(gw.popen.pid)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _fds(gw.popen.pid) > fds0:
        time.sleep(0.2)
    fds1, rss1 = _fds(gw.popen.pid), _rss(gw.popen.pid)
    print(f"gateway fds {fds0} -> {fds1}; rss {rss0 / 1e6:.1f} MB -> peak {peak / 1e6:.1f} "
          f"-> {rss1 / 1e6:.1f} MB")
    assert fds1 <= fds0, (fds0, fds1)
    assert rss1 <= rss0 + 40e6, (rss0, peak, rss1)


class _Dest:
    """A destination that records what it sees (plain sockets, one thread)."""

    def __init__(self, mode: str) -> None:
        self.sock = socket.create_server((DEST, 0))
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.seen: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(20)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.settimeout(20)
        try:
            if self.mode == "half-close":
                # Read to EOF (the client's FIN), then answer on the still-open direction.
                got = b""
                while data := conn.recv(65536):
                    got += data
                self.seen.append(f"eof after {len(got)}")
                conn.sendall(b"got %d bytes" % len(got))
                conn.close()
            elif self.mode == "reset":
                conn.recv(100)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                conn.close()  # RST
            elif self.mode == "watch":
                try:
                    while conn.recv(65536):
                        pass
                    self.seen.append("fin")
                except ConnectionResetError:
                    self.seen.append("reset")
        except OSError as exc:
            self.seen.append(repr(exc))
        finally:
            self.done.set()

    def close(self) -> None:
        self.sock.close()


def _forward_rig(rig: Rig, dest: _Dest) -> int:
    _, gport = rig.gateway()
    _, _, fport = rig.tunnel(_gw_paths(gport), socks=False, forward=f"{DEST}:{dest.port}")
    assert fport is not None
    return fport


def test_half_close_reaches_the_destination_as_fin(rig: Rig) -> None:
    dest = _Dest("half-close")
    try:
        fport = _forward_rig(rig, dest)
        with socket.create_connection(("127.0.0.1", fport), timeout=20) as s:
            s.sendall(b"x" * 300_000)
            s.shutdown(socket.SHUT_WR)  # our FIN; the reply must still come back
            reply = b""
            while data := s.recv(65536):
                reply += data
        assert reply == b"got 300000 bytes"
        assert dest.done.wait(10) and dest.seen == ["eof after 300000"]
    finally:
        dest.close()


def test_a_destination_reset_reaches_the_client_as_reset(rig: Rig) -> None:
    dest = _Dest("reset")
    try:
        fport = _forward_rig(rig, dest)
        with socket.create_connection(("127.0.0.1", fport), timeout=20) as s:
            s.sendall(b"hello")
            with pytest.raises(ConnectionResetError):
                for _ in range(100):
                    if not s.recv(65536):
                        break
    finally:
        dest.close()


def test_a_client_reset_reaches_the_destination_as_reset(rig: Rig) -> None:
    dest = _Dest("watch")
    try:
        fport = _forward_rig(rig, dest)
        s = socket.create_connection(("127.0.0.1", fport), timeout=20)
        s.sendall(b"hello")
        time.sleep(0.5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        s.close()
        assert dest.done.wait(10)
        assert dest.seen == ["reset"]
    finally:
        dest.close()


def test_stdio_for_ssh_proxycommand(rig: Rig, www: Path) -> None:
    hport = rig.http(www)
    _, gport = rig.gateway()
    args = [a for h in GW_HOSTS for a in ("-c", f"{h}:{gport}", "-b", h)]
    res = subprocess.run([*CMD, "tunnel", *args, *rig.psk_args(), "--no-join",
                          "--stdio", f"{DEST}:{hport}"],
                         input=f"GET /small.bin HTTP/1.0\r\nHost: {DEST}\r\n\r\n".encode(),
                         capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
    head, _, body = res.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert hashlib.sha256(body).hexdigest() == sha256_file(www / "small.bin")


def test_pool_and_early_reply_serve_from_ready_connections(rig: Rig, www: Path) -> None:
    hport = rig.http(www)
    _, gport = rig.gateway()
    tun, sport, _ = rig.tunnel(_gw_paths(gport), "--pool", "2", "--socks-early-reply")
    time.sleep(1.0)  # the pool fills in the background
    want = sha256_file(www / "small.bin")
    for _ in range(3):
        res = curl("--socks5-hostname", f"127.0.0.1:{sport}", f"http://{DEST}:{hport}/small.bin")
        assert res.returncode == 0 and hashlib.sha256(res.stdout).hexdigest() == want
    # Early reply: a refusal can no longer be a SOCKS error; it is a reset, never data.
    res = curl("--socks5-hostname", f"127.0.0.1:{sport}", f"http://127.0.0.4:{hport}/")
    assert res.returncode != 0 and not res.stdout
    assert tun.stop() == 0
    t = _json_line(tun.stdout, "tunnel")
    assert t["pool_hits"] >= 3 and t["refused"] == {"not allowed": 1}


def test_a_refused_forward_is_a_reset(rig: Rig) -> None:
    closed = free_port(DEST)
    _, gport = rig.gateway()
    _, _, fport = rig.tunnel(_gw_paths(gport), socks=False, forward=f"{DEST}:{closed}")
    with socket.create_connection(("127.0.0.1", fport), timeout=20) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")  # pipelined behind the request
        with pytest.raises(ConnectionResetError):
            for _ in range(100):
                if not s.recv(65536):
                    break


def test_max_per_client_and_idle_timeout(rig: Rig) -> None:
    """A second connection of the same client is refused (resource exhausted, SOCKS 1);
    an idle relay is reset after --idle-timeout and the slot is free again."""
    holder = _Dest("watch")
    try:
        _, gport = rig.gateway("--max-per-client", "1", "--idle-timeout", "1.5",
                               allow=(f"{DEST}/32",))
        _, sport, fport = rig.tunnel(_gw_paths(gport), forward=f"{DEST}:{holder.port}")
        s = socket.create_connection(("127.0.0.1", fport), timeout=20)
        s.sendall(b"hold")
        time.sleep(0.5)
        rc, err = _refusal(["--socks5-hostname", f"127.0.0.1:{sport}"],
                           f"http://{DEST}:{holder.port}/")
        assert rc == 97 and "(1)" in err, err
        assert holder.done.wait(10)  # idle for 1.5 s: the gateway reset the relay
        assert holder.seen == ["reset"]
        s.close()
    finally:
        holder.close()


def test_ctrl_c_ends_connections_with_fin(rig: Rig) -> None:
    dest = _Dest("watch")
    try:
        _, gport = rig.gateway()
        tun, _, fport = rig.tunnel(_gw_paths(gport), socks=False,
                                   forward=f"{DEST}:{dest.port}")
        s = socket.create_connection(("127.0.0.1", fport), timeout=20)
        s.sendall(b"x" * 1000)
        time.sleep(0.5)
        assert tun.stop() == 0  # SIGINT
        assert dest.done.wait(10)
        assert dest.seen == ["fin"]  # DATA_FIN reached the destination as a FIN
        s.close()
    finally:
        dest.close()


def test_tls_gateway_takes_client_certificates_from_its_ca(rig: Rig, www: Path) -> None:
    from mptcpsec.aio.stores import write_certificate
    from mptcpsec.crypto.certs import generate_ca, issue_certificate

    ca = generate_ca()
    write_certificate(ca, rig.tmp / "ca.pem", rig.tmp / "ca.key")
    write_certificate(issue_certificate(ca, "gateway"), rig.tmp / "gw.pem", rig.tmp / "gw.key")
    client = issue_certificate(ca, "laptop", client=True)
    write_certificate(client, rig.tmp / "c.pem", rig.tmp / "c.key")
    hport = rig.http(www)
    gw, gport = rig.gateway("-k", "tls", "--cert", "gw.pem", "--key", "gw.key",
                            "--client-cert", "--cafile", "ca.pem")
    verify = ["-k", "tls", "--cafile", "ca.pem", "--server-name", "localhost"]
    _, sport, _ = rig.tunnel(_gw_paths(gport), auth=[*verify, "--cert", "c.pem",
                                                     "--key", "c.key"])
    _, anon, _ = rig.tunnel(_gw_paths(gport), auth=verify, name="no-cert")
    res = curl("--socks5-hostname", f"127.0.0.1:{sport}", f"http://{DEST}:{hport}/small.bin")
    assert res.returncode == 0, res.stderr
    assert hashlib.sha256(res.stdout).hexdigest() == sha256_file(www / "small.bin")
    rc, err = _refusal(["--socks5-hostname", f"127.0.0.1:{anon}"],
                       f"http://{DEST}:{hport}/small.bin")
    assert rc == 97 and "(2)" in err, err
    assert gw.stop() == 0
    assert f"client '{client.fingerprint}' -> {DEST}" in gw.stderr
    assert _json_line(gw.stdout, "gateway")["refused"] == {"authentication failed": 1}


def test_split_path_gateway_allows_listed_client_identities(rig: Rig, www: Path) -> None:
    from mptcpsec.crypto.splitpath import generate_identity_seed, identity_public_key

    seed = generate_identity_seed()
    (rig.tmp / "me.id").write_text(seed.hex() + "\n")
    (rig.tmp / "clients.keys").write_text(
        f"laptop ed25519 {identity_public_key(seed).hex()}\n")
    hport = rig.http(www)
    gw, gport = rig.gateway("-k", "split-path", "--allowed-clients", "clients.keys")
    _, sport, _ = rig.tunnel(_gw_paths(gport), auth=["-k", "split-path",
                                                     "--client-identity", "me.id"])
    _, other, _ = rig.tunnel(_gw_paths(gport), name="stranger",
                             auth=["-k", "split-path", "--client-identity", "other.id"])
    res = curl("--socks5-hostname", f"127.0.0.1:{sport}", f"http://{DEST}:{hport}/small.bin")
    assert res.returncode == 0, res.stderr
    assert hashlib.sha256(res.stdout).hexdigest() == sha256_file(www / "small.bin")
    rc, err = _refusal(["--socks5-hostname", f"127.0.0.1:{other}"],
                       f"http://{DEST}:{hport}/small.bin")
    assert rc == 97 and "(2)" in err, err
    assert (rig.tmp / "other.id").exists()  # created 0600 on first use
    assert gw.stop() == 0
    assert f"client 'laptop' -> {DEST}" in gw.stderr
    assert "is not allowed" in gw.stderr


def test_bench_tunnel_smoke(tmp_path: Path) -> None:
    """`mptcpsec bench tunnel` end to end at a tiny size: every row present and intact."""
    res = subprocess.run([*CMD, "bench", "tunnel", "--repeats", "1", "--bytes", "2MB",
                          "--parallel", "5", "--batches", "1", "--json", "--no-plot",
                          "--out", str(tmp_path), "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert len(doc["ttfb"]) == 6 and all(r["median_ms"] > 0 for r in doc["ttfb"])
    assert all(b["intact"] for b in doc["bulk"])
    assert doc["bulk"][0]["ratio_to_connect_send"] > 0
    assert {r["connections"] for r in doc["rate"].values()} == {5}
    assert (tmp_path / "tunnel.json").exists()


def test_gateway_ctrl_c_ends_relays_with_data_fin(rig: Rig) -> None:
    dest = _Dest("watch")
    try:
        gw, gport = rig.gateway()
        _, _, fport = rig.tunnel(_gw_paths(gport), socks=False, forward=f"{DEST}:{dest.port}")
        with socket.create_connection(("127.0.0.1", fport), timeout=20) as s:
            s.sendall(b"y" * 1000)
            time.sleep(0.5)
            assert gw.stop() == 0
            assert s.recv(100) == b""  # a FIN (from the gateway's DATA_FIN), not a reset
        assert _json_line(gw.stdout, "gateway")["accepted"] == 1
    finally:
        dest.close()

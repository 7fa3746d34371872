"""A real converter on loopback: `python -m http.server` on 127.0.0.3, `mptcpsec gateway`
on 127.0.0.1/127.0.0.2, `mptcpsec tunnel` with SOCKS5 and a forward, each its own process."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CMD = [sys.executable, "-m", "mptcpsec"]
DEST = "127.0.0.3"
BIG = 50_000_000


def free_port(*hosts: str) -> int:
    """A port free on every one of ``hosts`` (at this moment)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for other in hosts[1:]:
                with socket.socket() as t:
                    t.bind((other, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


def wait_listening(host: str, port: int, proc: subprocess.Popen[bytes] | None = None,
                   timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening {err}")
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path
    out: Path

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    @property
    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")


@dataclass
class Rig:
    """Processes started by a test, and the addresses they listen on."""

    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    psk_hex: str = field(default_factory=lambda: secrets.token_hex(32))
    identity: str = "laptop"

    def start(self, name: str, *args: str, python_module: str | None = None) -> Proc:
        """``mptcpsec ARGS`` (or ``python -m MODULE ARGS``); output in NAME.err/NAME.out."""
        log, out = self.tmp / f"{name}.err", self.tmp / f"{name}.out"
        cmd = [sys.executable, "-m", python_module, *args] if python_module else [*CMD, *args]
        p = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=log.open("wb"),
                             stdin=subprocess.DEVNULL, cwd=self.tmp)
        proc = Proc(p, log, out)
        self.procs.append(proc)
        return proc

    @staticmethod
    def wait_log(proc: Proc, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in proc.stderr:
                return
            if proc.popen.poll() is not None:
                raise RuntimeError(f"process exited: {proc.stderr[-2000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"no {text!r} in {proc.stderr[-2000:]}")

    def wait(self, proc: Proc, host: str, port: int) -> None:
        try:
            wait_listening(host, port, proc.popen)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {proc.stderr[-2000:]}") from None

    def http(self, root: Path) -> int:
        port = free_port(DEST)
        p = self.start("http", "--bind", DEST, "--directory", str(root), str(port),
                       python_module="http.server")
        wait_listening(DEST, port, p.popen)
        return port

    def clients_file(self, *extra: tuple[str, str]) -> Path:
        path = self.tmp / "clients.psk"
        lines = [f"{self.identity} {self.psk_hex}", *(f"{n} {k}" for n, k in extra)]
        path.write_text("# identity key\n" + "\n".join(lines) + "\n")
        return path

    def gateway(self, *extra: str, allow: tuple[str, ...] = (f"{DEST}/32",),
                hosts: tuple[str, ...] = ("127.0.0.1", "127.0.0.2")) -> tuple[Proc, int]:
        port = free_port(*hosts)
        args = [a for h in hosts for a in ("-l", f"{h}:{port}")]
        args += [a for rule in allow for a in ("--allow", rule)]
        if "-k" not in extra:
            args += ["-k", "psk", "--psk-clients", str(self.clients_file())]
        p = self.start("gateway", "gateway", *args, "--json", "--no-live", *extra)
        for h in hosts:
            self.wait(p, h, port)
        return p, port

    def psk_args(self, key: str | None = None, identity: str | None = None) -> list[str]:
        keyfile = self.tmp / f"client-{secrets.token_hex(4)}.psk"
        keyfile.write_text((key or self.psk_hex) + "\n")
        return ["-k", "psk", "--psk-file", str(keyfile), "--psk-identity",
                identity if identity is not None else self.identity]

    def tunnel(self, gw_paths: list[tuple[str, int]], *extra: str, socks: bool = True,
               forward: str | None = None, auth: list[str] | None = None,
               name: str = "tunnel") -> tuple[Proc, int, int | None]:
        """`mptcpsec tunnel` (SOCKS5 on 127.0.0.1 and maybe a forward); its ports."""
        args: list[str] = []
        for host, port in gw_paths:
            args += ["-c", f"{host}:{port}", "-b", host]
        sport = free_port("127.0.0.1")
        if socks:
            args += ["--socks", f"127.0.0.1:{sport}"]
        fport = None
        if forward is not None:
            fport = free_port("127.0.0.1")
            args += ["--forward", f"127.0.0.1:{fport}={forward}"]
        args += auth if auth is not None else self.psk_args()
        p = self.start(name, "tunnel", *args, "--json", "--no-live", "--no-join", *extra)
        if socks:
            self.wait(p, "127.0.0.1", sport)
        if fport is not None:  # not by connecting: a forward opens a gateway connection
            self.wait_log(p, f"forward 127.0.0.1:{fport}")
        return p, sport, fport

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()

    def tracebacks(self) -> list[str]:
        """stderr of every mptcpsec process that printed a traceback (a bug, always)."""
        return [p.stderr[-3000:] for p in self.procs if "Traceback" in p.stderr]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()
    assert not r.tracebacks(), r.tracebacks()[0]


@pytest.fixture(scope="session")
def www(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files to download: big.bin (50 MB), mid.bin (8 MB), 4m.bin, small.bin (200 kB)."""
    root = tmp_path_factory.mktemp("www")
    with (root / "big.bin").open("wb") as f:
        for _ in range(BIG // (1 << 20)):
            f.write(os.urandom(1 << 20))
        f.write(os.urandom(BIG % (1 << 20)))
    (root / "mid.bin").write_bytes(os.urandom(8_000_000))
    (root / "4m.bin").write_bytes(os.urandom(4_000_000))
    (root / "small.bin").write_bytes(os.urandom(200_000))
    return root


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--max-time", str(int(timeout)), *args],
                          capture_output=True, timeout=timeout + 5)


needs_curl = pytest.mark.skipif(
    subprocess.run(["sh", "-c", "command -v curl"], capture_output=True).returncode != 0,
    reason="curl is not installed")

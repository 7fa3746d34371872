"""Running `mptcpsec` subcommands as real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

CMD = [sys.executable, "-m", "mptcpsec"]


def free_port(host: str = "127.0.0.1", also: tuple[str, ...] = ("127.0.0.2",)) -> int:
    """A port free on ``host`` and on every address in ``also`` (at this moment)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        try:
            for other in also:
                with socket.socket() as t:
                    t.bind((other, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


def run_cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, input=input)


def wait_listening(host: str, port: int, timeout: float = 15.0,
                   proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ProcessExited(proc.stderr.read() if proc.stderr else "")
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port}")


class ProcessExited(RuntimeError):
    """The server process ended before it listened (e.g. the port was taken meanwhile)."""


class Processes:
    """Background `mptcpsec` processes, stopped (SIGINT, then SIGKILL) at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        p = subprocess.Popen([*CMD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, **(env or {})})
        self.procs.append(p)
        return p

    def serve(self, *extra: str, hosts: tuple[str, ...] = ("127.0.0.1", "127.0.0.2"),
              env: dict[str, str] | None = None,
              port: int | None = None) -> tuple[subprocess.Popen[str], int]:
        """`mptcpsec serve --once --json` on ``hosts``; a fresh port if one was taken."""
        for _ in range(5):
            p = port or free_port(hosts[0], hosts[1:])
            args = [a for h in hosts for a in ("--listen", f"{h}:{p}")]
            proc = self.start("serve", *args, "--once", "--json", *extra, env=env)
            try:
                for h in hosts:
                    wait_listening(h, p, proc=proc)
                return proc, p
            except ProcessExited as exc:
                if port is not None or "cannot listen" not in str(exc):
                    raise
        raise RuntimeError("could not start a server")

    @staticmethod
    def interrupt(p: subprocess.Popen[str], timeout: float = 10) -> tuple[int, str, str]:
        # A `--once` server may be exiting on its own right now; a SIGINT that lands after
        # its handler is gone kills it with the signal. Give it a moment first.
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(2)
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)


@pytest.fixture
def procs() -> Iterator[Processes]:
    ps = Processes()
    try:
        yield ps
    finally:
        ps.close()

"""Benchmark servers in their own process.

On a two-core machine a client and a server in one Python process share one core and one
event loop, which measures neither. `ServerProcess` runs ``python -m mptcpsec.perf.server``
(see that module) and talks to it with JSON lines over its stdin/stdout: the first line it
prints says where it listens; every command gets one reply line. Closing its stdin ends it,
so a crashed benchmark never leaves a server behind. What /proc says about a process
(RSS, CPU time) lives in ``mptcpsec.lab.procstat``, which the lab's soak shares; perf
depends on lab, never the other way round.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import IO, Any

from ..errors import ServerError as ServerError
from ..lab.procstat import cpu_seconds, release_memory, rss_bytes

#: Pins TLS 1.3 to TLS_AES_128_GCM_SHA256 in a process started with OPENSSL_CONF pointing
#: here: the standard `ssl` module cannot choose TLS 1.3 suites, and its server would pick
#: AES-256-GCM, which would not compare like with like.
OPENSSL_AES128_CONF = """\
openssl_conf = mptcpsec_bench
[mptcpsec_bench]
ssl_conf = ssl_sect
[ssl_sect]
system_default = tls13_sect
[tls13_sect]
Ciphersuites = TLS_AES_128_GCM_SHA256
"""


class ServerProcess:
    """``python -m mptcpsec.perf.server`` with a JSON spec; see the module docstring."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str] | None = None,
                 start_timeout: float = 60.0) -> None:
        self.spec = spec
        self.env = env
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> dict[str, Any]:
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mptcpsec.perf.server", json.dumps(self.spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        self.ready = self._reply(self.start_timeout)
        if not self.ready.get("ready"):
            self.stop()
            raise ServerError(f"benchmark server did not start: {self.ready}")
        return self.ready

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def _reply(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerError("benchmark server did not answer in time")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.poll() if self.proc is not None else None
                raise ServerError(f"benchmark server exited (status {code})")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)

    def request(self, command: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """Send one command; returns the server's one-line JSON reply."""
        if self.proc is None or self.proc.stdin is None:
            raise ServerError("benchmark server not running")
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._reply(timeout)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["OPENSSL_AES128_CONF", "ServerError", "ServerProcess", "cpu_seconds",
           "release_memory", "rss_bytes"]

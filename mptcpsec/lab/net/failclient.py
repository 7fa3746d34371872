"""The failover client of ``mptcpsec bench failover --net netns`` (run in the client host).

It writes ``--chunk`` bytes every ``--interval-ms`` (a paced stream, so a stall shows as a
gap and not as a slower bulk transfer), reads the echo and reports the longest gap between
two echoed chunks, bytes missing and whether the echo is intact. ``--mode kernel-mptcp``
uses an IPPROTO_MPTCP socket (the kernel opens the second subflow from its endpoint);
``--mode mptcpsec`` one subflow per path through the public asyncio API.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import sys
import threading
import time
from typing import Any

from .peers import IPPROTO_MPTCP
from .topology import SERVER_ADDR, PathAddrs


class Gaps:
    """The longest pause between two echoed chunks; writes ``ready`` once a quarter of the
    data came back (the moment the bench takes the link down)."""

    def __init__(self, ready: str | None = None, quarter: int = 0) -> None:
        self.last: float | None = None
        self.max_gap = 0.0
        self.ready, self.quarter, self.got = ready, quarter, 0

    def tick(self, n: int = 0) -> None:
        self.got += n
        if self.ready and self.got >= self.quarter:
            with open(self.ready, "w") as f:
                f.write("ok")
            self.ready = None
        now = time.monotonic()
        if self.last is not None:
            self.max_gap = max(self.max_gap, now - self.last)
        self.last = now


def kernel(args: argparse.Namespace, data: bytes, gaps: Gaps) -> dict[str, Any]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    s.settimeout(args.timeout)
    s.bind((PathAddrs(1).client, 0))
    s.connect((SERVER_ADDR, args.port))
    err: dict[str, Any] = {}

    def writer() -> None:
        try:
            for off in range(0, len(data), args.chunk):
                s.sendall(data[off:off + args.chunk])
                time.sleep(args.interval_ms / 1000)
        except OSError as exc:
            err["w"] = str(exc)

    threading.Thread(target=writer, daemon=True).start()
    got = bytearray()
    try:
        while len(got) < len(data):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
            gaps.tick(len(chunk))
    except OSError as exc:
        err["r"] = f"{type(exc).__name__}: {exc}"
    s.close()
    return _result(data, bytes(got), err.get("r") or err.get("w"))


def mptcpsec(args: argparse.Namespace, data: bytes, gaps: Gaps) -> dict[str, Any]:
    from ...aio.api import Path, connect
    from ...protocol.config import ConnectionConfig

    async def main() -> dict[str, Any]:
        cfg = ConnectionConfig(mode="mptcpsec", key_exchange="split-path",  # type: ignore
                               scheduler="round-robin", join_announced=False,
                               subflow_timeout=args.subflow_timeout)
        paths = [Path((SERVER_ADDR, args.port), local=PathAddrs(i).client)
                 for i in range(1, args.paths + 1)]
        stream = await asyncio.wait_for(connect(paths, cfg), args.timeout)

        async def writer() -> None:
            for off in range(0, len(data), args.chunk):
                stream.write(data[off:off + args.chunk])
                await stream.drain()
                await asyncio.sleep(args.interval_ms / 1000)

        w = asyncio.ensure_future(writer())
        got = bytearray()
        error = None
        try:
            while len(got) < len(data):
                chunk = await asyncio.wait_for(stream.read(1 << 16), args.timeout)
                if not chunk:
                    break
                got += chunk
                gaps.tick(len(chunk))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        w.cancel()
        res = _result(data, bytes(got), error or stream.error)
        res["subflows"] = [{"id": s.get("id"), "state": s.get("state"),
                            "reason": s.get("reason")} for s in stream.subflow_stats()]
        stream.abort("done")
        return res

    return asyncio.run(main())


def _result(data: bytes, got: bytes, error: str | None) -> dict[str, Any]:
    return {"intact": got == data, "bytes_echoed": len(got), "error": error,
            "sha256_echoed": hashlib.sha256(got).hexdigest()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mptcpsec.lab.net.failclient")
    ap.add_argument("--mode", choices=("kernel-mptcp", "mptcpsec"), required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--paths", type=int, default=2)
    ap.add_argument("--bytes", type=int, default=4_000_000)
    ap.add_argument("--chunk", type=int, default=16_384)
    ap.add_argument("--interval-ms", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--subflow-timeout", type=float, default=30.0,
                    help="mptcpsec: seconds without progress before a subflow is declared "
                    "failed (ConnectionConfig.subflow_timeout; its default is 30)")
    ap.add_argument("--ready", help="written once a quarter of the echo came back")
    args = ap.parse_args(argv)
    data = os.urandom(args.bytes)
    gaps = Gaps(args.ready, args.bytes // 4)
    t0 = time.monotonic()
    res = (kernel if args.mode == "kernel-mptcp" else mptcpsec)(args, data, gaps)
    res["duration_s"] = round(time.monotonic() - t0, 3)
    print(json.dumps({"result": res, "max_gap_s": round(gaps.max_gap, 3)}), flush=True)
    return 0 if res["intact"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""The mptcpsec sender of ``mptcpsec bench transfer --net netns`` (run in the client host).

One connection, one subflow per path (public asyncio API), ``--bytes`` written in 64 KiB
blocks, then DATA_FIN and the wait for the server's: the time runs from before the
connection is opened until the server has acknowledged everything (as the kernel peers'
time runs from ``connect()`` to the server's acknowledgement). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from .topology import SERVER_ADDR, PathAddrs


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from ...aio.api import Path, connect
    from ...protocol.config import ConnectionConfig

    cfg = ConnectionConfig(mode="mptcpsec", key_exchange=args.key_exchange,  # type: ignore
                           scheduler=args.scheduler, join_announced=False)
    paths = [Path((SERVER_ADDR, args.port), local=PathAddrs(i).client)
             for i in range(1, args.paths + 1)]
    block = os.urandom(1 << 16)
    t0 = time.monotonic()
    stream = await asyncio.wait_for(connect(paths, cfg), args.timeout)
    sent = 0
    error = None
    try:
        while sent < args.bytes:
            n = min(len(block), args.bytes - sent)
            stream.write(block[:n])
            sent += n
            await asyncio.wait_for(stream.drain(), args.timeout)
        stream.close()
        await stream.wait_closed(args.timeout)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    secs = time.monotonic() - t0
    return {"intact": error is None and stream.error is None, "error": error or stream.error,
            "bytes_sent": sent, "duration_s": round(secs, 3),
            "MBps": round(sent / 1e6 / secs, 3),
            "subflows": [{"id": s.get("id"), "bytes_sent": s.get("bytes_sent"),
                          "state": s.get("state")} for s in stream.subflow_stats()]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mptcpsec.lab.net.bulkclient")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--paths", type=int, default=2)
    ap.add_argument("--bytes", type=int, default=40_000_000)
    ap.add_argument("--scheduler", default="lowest-rtt")
    ap.add_argument("--key-exchange", default="split-path")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    res = asyncio.run(run(args))
    print(json.dumps(res), flush=True)
    return 0 if res["intact"] else 1


if __name__ == "__main__":
    sys.exit(main())

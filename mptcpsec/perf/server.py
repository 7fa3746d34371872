"""``python -m mptcpsec.perf.server SPEC``: benchmark servers in a process of their own.

SPEC is JSON::

    {"handler": "sink" | "echo", "psk": "<hex>",
     "servers": [{"name": "...", "peer": "mptcpsec" | "tls" | "tcp" | "kernel-mptcp",
                  "hosts": ["127.0.0.1", ...], "options": {MptcpsecOptions fields}}, ...]}

The first line on stdout is ``{"ready": true, "addresses": {name: [[host, port], ...]},
"keys": {...}, "unavailable": {name: why}}``. Then each JSON line on stdin is a command
answered by one line: ``{"cmd": "stats"}`` (RSS, CPU seconds, open connections),
``{"cmd": "collect"}`` (the same after a garbage collection) or ``{"cmd": "trim"}`` (after
a garbage collection and ``malloc_trim``). EOF on stdin ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
from typing import Any

from .peers import MptcpsecOptions, PeerKeys, kernel_mptcp_available, start_server
from .procs import cpu_seconds, release_memory, rss_bytes


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run(spec: dict[str, Any]) -> None:
    keys = PeerKeys.generate(bytes.fromhex(spec.get("psk", "42" * 32)))
    handler = spec.get("handler", "sink")
    addresses: dict[str, list[tuple[str, int]]] = {}
    unavailable: dict[str, str] = {}
    closers = []
    mservers = []
    for entry in spec["servers"]:
        name, peer = entry["name"], entry["peer"]
        if peer == "kernel-mptcp" and not kernel_mptcp_available():
            unavailable[name] = "the kernel has no MPTCP (IPPROTO_MPTCP) or it is disabled"
            continue
        opts = MptcpsecOptions.from_dict(entry["options"]) if "options" in entry else None
        try:
            addrs, close, mserver = await start_server(peer, handler, entry["hosts"], keys, opts)
        except OSError as exc:
            unavailable[name] = str(exc)
            continue
        addresses[name] = addrs
        closers.append(close)
        if mserver is not None:
            mservers.append(mserver)
    _reply({"ready": True, "addresses": addresses, "keys": keys.public(),
            "unavailable": unavailable})

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                cmd = json.loads(line)
            except ValueError:
                _reply({"error": "not JSON"})
                continue
            what = cmd.get("cmd")
            if what == "collect":
                gc.collect()
            raw = release_memory() if what == "trim" else rss_bytes()
            _reply({"rss": rss_bytes(), "rss_untrimmed": raw, "cpu": cpu_seconds(),
                    "connections": sum(len(s.drivers) for s in mservers),
                    "finished": sum(len(s.finished) for s in mservers)})
    finally:
        for close in closers:
            with contextlib.suppress(Exception):
                close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(run(json.loads(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

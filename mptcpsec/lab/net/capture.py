"""A packet capture inside a namespace (AF_PACKET, pcap out), independent of the stage.

The lab uses it to show what the attacker changed: captured on a router's client-side
interface (``c``, before the stage) and server-side interface (``s``, after it), the same
segment differs exactly where the attacker says. No scapy on this path, so it keeps up::

    ip netns exec mpsl-…-r1 python -m mptcpsec.lab.net.capture --iface s --out s.pcap

SIGTERM ends it; ``--max-packets`` and ``--max-seconds`` bound it.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

ETH_P_ALL = 0x0003


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mptcpsec.lab.net.capture")
    ap.add_argument("--iface", required=True)
    ap.add_argument("--out", required=True, help="pcap file (Ethernet)")
    ap.add_argument("--snaplen", type=int, default=256)
    ap.add_argument("--max-packets", type=int, default=200_000)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    ap.add_argument("--ready", help="file written once the socket is bound")
    args = ap.parse_args(argv)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    stop = {"now": False}

    def on_term(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("ok")
    deadline = time.monotonic() + args.max_seconds
    n = 0
    with open(args.out, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, args.snaplen, 1))
        while not stop["now"] and n < args.max_packets and time.monotonic() < deadline:
            r, _, _ = select.select([sock], [], [], 0.2)
            if not r:
                continue
            data, addr = sock.recvfrom(65535)
            if addr[2] == socket.PACKET_OUTGOING and args.iface == "c":
                continue  # on c: what arrives from the client only
            t = time.time()
            cut = data[:args.snaplen]
            out.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(cut), len(data)))
            out.write(cut)
            n += 1
    return 0


def read_pcap(path: str) -> list[bytes]:
    """The frames of a pcap written by ``main`` (or the stage's raw-IP evidence file)."""
    frames = []
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return frames
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                break
            incl = struct.unpack("<IIII", rec)[2]
            frames.append(f.read(incl))
    return frames


if __name__ == "__main__":
    sys.exit(main())

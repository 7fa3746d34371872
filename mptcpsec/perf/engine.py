"""The engine alone: a client and a server connection joined in memory (mptcpsec.testing).

What the protocol code costs per byte on each side, without the kernel and the event loop:
the client engine seals N bytes of application data over its subflows, the server
endpoint routes and opens them, its application reads them, and the acknowledgements go
back. Each side's share is timed separately (CPU of this one process), in the same
pattern as over sockets: 1 MiB writes, 256 KiB reads, acknowledgement timers run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

from ..crypto.keyschedule import Role, Secret
from ..crypto.psk import PskConfig
from ..protocol.config import ConnectionConfig
from ..testing import EnginePair
from ..wire.header import MAX_PLAINTEXT
from .peers import payload_block

READ = 256 * 1024  # what asyncio hands over per socket read


@dataclass(frozen=True)
class EngineResult:
    nbytes: int
    client_seconds: float
    server_seconds: float

    @property
    def client_s_per_GB(self) -> float:
        return self.client_seconds / self.nbytes * 1e9

    @property
    def server_s_per_GB(self) -> float:
        return self.server_seconds / self.nbytes * 1e9


def engine_transfer(nbytes: int, subflows: int = 2, algorithm: str = "aes-128-gcm",
                    max_record: int = 16384, write_size: int = 1 << 20) -> EngineResult:
    """One-way transfer of `nbytes` between two engines; raises if anything is lost."""
    cfg = ConnectionConfig(key_exchange="psk", algorithm=algorithm, max_record=max_record)
    cfg.psk = PskConfig(Role.CLIENT, Secret(b"\x5a" * 32))
    pair = EnginePair(cfg)
    client = pair.client
    for i in range(subflows):
        pair.open_path(i)
        pair.pump()
    server = pair.server
    if server is None or not client.established or not server.established:
        raise RuntimeError("the engines did not connect")
    block = memoryview(payload_block(max(write_size, 1 << 20)))
    links = pair.links
    back = {link.server_sid: link for link in links.values()}
    tc = ts = 0.0
    sent = got = 0
    clock = time.process_time
    for _ in range(1_000_000):  # bounded: every pass moves data or advances the clock
        if got >= nbytes:
            break
        pair.set_paths()
        t0 = clock()
        while client.send_buffer_space > 0 and sent < nbytes:
            k = min(write_size, nbytes - sent)
            client.send(block[:k])
            sent += k
        out = client.data_to_send(pair.now)
        tc += clock() - t0
        for csid, data in out:
            for i in range(0, len(data), READ):
                piece = data[i:i + READ]
                t0 = clock()
                pair.to_server(links[csid], piece)
                while server.readable:
                    got += len(server.read(1 << 20))
                acks = server.data_to_send(pair.now)
                t1 = clock()
                ts += t1 - t0
                for ssid, ack in acks:
                    pair.to_client(back[ssid], ack)
                tc += clock() - t1
        pair.now += 0.01
        t0 = clock()
        server.handle_timer(pair.now)
        acks = server.data_to_send(pair.now)
        t1 = clock()
        ts += t1 - t0
        for ssid, ack in acks:
            pair.to_client(back[ssid], ack)
        tc += clock() - t1
    if got != nbytes:
        raise RuntimeError(f"the server engine delivered {got} of {nbytes} bytes")
    return EngineResult(nbytes, tc, ts)


#: The cases of EXPERIMENTS.md section 2.3: (subflows, record size).
CASES = ((1, 16384), (2, 16384), (2, MAX_PLAINTEXT))


def median_case(nbytes: int, subflows: int, max_record: int, runs: int,
                algorithm: str = "aes-128-gcm") -> tuple[float, float]:
    """Median sender and receiver s/GB over `runs` transfers."""
    results = [engine_transfer(nbytes, subflows, algorithm, max_record) for _ in range(runs)]
    return (statistics.median(r.client_s_per_GB for r in results),
            statistics.median(r.server_s_per_GB for r in results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mptcpsec.perf.engine",
        description="CPU per GB of the protocol engine alone: two engines joined in memory "
                    "(no sockets, no event loop), each side's process time measured "
                    "separately. Prints sender and receiver s/GB, median of --runs.")
    parser.add_argument("--bytes", type=int, default=200_000_000,
                        help="bytes per transfer (default 200 MB)")
    parser.add_argument("--runs", type=int, default=3, help="transfers per case (default 3)")
    parser.add_argument("--algorithm", default="aes-128-gcm",
                        help="AEAD algorithm (default aes-128-gcm)")
    args = parser.parse_args(argv)
    if args.bytes < 1 or args.runs < 1:
        parser.error("--bytes and --runs must be positive")
    print(f"{'case':<22} {'sender s/GB':>12} {'receiver s/GB':>14}")
    for subflows, record in CASES:
        snd, rcv = median_case(args.bytes, subflows, record, args.runs, args.algorithm)
        print(f"{f'{subflows} subflow(s), {record // 1024} KiB':<22} {snd:>12.3f} {rcv:>14.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

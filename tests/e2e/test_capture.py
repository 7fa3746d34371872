"""Captures of real connections: pcap/trace sinks, and offline decryption with a key log."""

from __future__ import annotations

import asyncio
import os

import pytest
from scapy.all import TCP, rdpcap  # type: ignore[attr-defined]

from mptcpsec.aio.api import Path, connect, serve
from mptcpsec.aio.capture import open_sink
from mptcpsec.cli import main as cli
from mptcpsec.protocol.config import ConnectionConfig

from .harness import echo_handler, free_port


@pytest.mark.parametrize("key_exchange", ["split-path", "psk"])
def test_trace_then_pcap_with_keylog_shows_plaintext(tmp_path, monkeypatch, key_exchange) -> None:
    keylog = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))
    trace = tmp_path / "run.jsonl"
    marker = b"THE-PLAINTEXT-MARKER-" + os.urandom(4).hex().encode()
    payload = marker * 2000  # ~60 KB, several records, some on the joined subflow

    async def main():
        cfg = ConnectionConfig(key_exchange=key_exchange, scheduler="round-robin",
                               key_update_records=3)
        if key_exchange == "psk":
            from mptcpsec.crypto.keyschedule import Role, Secret
            from mptcpsec.crypto.psk import PskConfig

            cfg.psk = PskConfig(Role.CLIENT, Secret(b"\x5a" * 32))
        port = free_port()
        srv = await serve(echo_handler, [("127.0.0.1", port), ("127.0.0.2", port)], cfg)
        sink = open_sink(trace=str(trace))
        try:
            stream = await connect([Path(("127.0.0.1", port), "127.0.0.1"),
                                    Path(("127.0.0.2", port), "127.0.0.2")], cfg, sink=sink)
            stream.write(payload)
            await stream.drain()
            got = await stream.readexactly(len(payload))
            stream.close()
            await stream.wait_closed(10)
            return got
        finally:
            sink.close()
            srv.close()

    got = asyncio.run(asyncio.wait_for(main(), 30))
    assert got == payload
    raw = tmp_path / "raw.pcap"
    dec = tmp_path / "dec.pcap"
    assert cli(["pcap", "--trace", str(trace), "-o", str(raw)]) == 0
    assert cli(["pcap", "--trace", str(trace), "--keylog", str(keylog), "-o", str(dec)]) == 0
    raw_bytes = b"".join(bytes(p[TCP].payload) for p in rdpcap(str(raw)) if TCP in p)
    dec_bytes = b"".join(bytes(p[TCP].payload) for p in rdpcap(str(dec)) if TCP in p)
    assert marker not in raw_bytes  # encrypted on the wire
    # Decrypted: the payload in clear, both directions, both subflows, across key updates
    # (a marker cut by a record boundary is not counted, hence the small allowance).
    assert payload[:8000] in dec_bytes
    assert dec_bytes.count(marker) >= 2 * payload.count(marker) - 40


def test_keylog_without_trace_is_a_clear_usage_error(tmp_path, capsys) -> None:
    assert cli(["pcap", "--sample", "--keylog", str(tmp_path / "k"), "-o",
                str(tmp_path / "x.pcap")]) == 2
    assert "--keylog needs --trace" in capsys.readouterr().err

"""The asyncio stream API: back-pressure on a slow reader, IPv6, readexactly, JSON trace."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket

import pytest

from mptcpsec.aio.api import Path, connect, serve
from mptcpsec.protocol.config import ConnectionConfig
from mptcpsec.protocol.events import TraceWriter

from .harness import free_port

MB = 1_000_000


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_slow_reader_keeps_the_senders_memory_bounded() -> None:
    window = send_buffer = 512 * 1024
    peaks = {"unacked": 0, "server_buffered": 0}
    received = bytearray()

    async def slow(stream) -> None:
        while True:
            await asyncio.sleep(0.02)  # a reader much slower than the network
            data = await stream.read(64 * 1024)
            if not data:
                return
            received.extend(data)
            rb = stream.connection.recvbuf
            peaks["server_buffered"] = max(peaks["server_buffered"], rb.buffered)

    async def main():
        cfg = ConnectionConfig(key_exchange="split-path", receive_window=window,
                               send_buffer=send_buffer)
        port = free_port()
        srv = await serve(slow, [("127.0.0.1", port), ("127.0.0.2", port)], cfg)
        try:
            stream = await connect([Path(("127.0.0.1", port), "127.0.0.1"),
                                    Path(("127.0.0.2", port), "127.0.0.2")], cfg)
            payload = os.urandom(6 * MB)
            for i in range(0, len(payload), 64 * 1024):
                stream.write(payload[i:i + 64 * 1024])
                await stream.drain()  # waits while the peer does not read
                sb = stream.connection.sendbuf
                peaks["unacked"] = max(peaks["unacked"], sb.unacked)
            stream.close()
            await stream.wait_closed(30)
            return payload
        finally:
            srv.close()

    payload = run(main())
    assert bytes(received) == payload
    # drain() returns only with room left: at most one write beyond the limit is held.
    assert peaks["unacked"] <= send_buffer + 64 * 1024
    assert peaks["server_buffered"] <= window


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 support in this Python")
def test_ipv6_path_and_readexactly() -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")

    async def echo(stream) -> None:
        data = await stream.readexactly(5)
        stream.write(data.upper())
        await stream.drain()

    async def main():
        cfg = ConnectionConfig(key_exchange="split-path")
        port = free_port()
        srv = await serve(echo, [("::1", port), ("127.0.0.1", port)], cfg)
        try:
            stream = await connect([Path(("::1", port)), Path(("127.0.0.1", port))], cfg)
            stream.write(b"hello")
            await stream.drain()
            reply = await stream.readexactly(5)
            with pytest.raises(asyncio.IncompleteReadError):
                await stream.readexactly(1)  # the server closed after its reply
            stats = stream.subflow_stats()
            stream.close()
            await stream.wait_closed(10)
            return reply, stats
        finally:
            srv.close()

    reply, stats = run(main())
    assert reply == b"HELLO"
    assert stats[0]["remote"].startswith("[::1]:")


def test_events_as_json_lines_trace() -> None:
    buf = io.StringIO()

    async def echo(stream) -> None:
        stream.write(await stream.read(100))
        await stream.drain()

    async def main():
        cfg = ConnectionConfig(key_exchange="split-path")
        port = free_port()
        srv = await serve(echo, [("127.0.0.1", port), ("127.0.0.2", port)], cfg)
        try:
            stream = await connect([Path(("127.0.0.1", port), "127.0.0.1"),
                                    Path(("127.0.0.2", port), "127.0.0.2")], cfg,
                                   trace=TraceWriter(buf, side="client"))
            stream.write(b"x" * 100)
            assert await stream.readexactly(100) == b"x" * 100
            stream.close()
            await stream.wait_closed(10)
        finally:
            srv.close()

    run(main())
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    kinds = [x["event"] for x in lines]
    assert kinds[0] == "handshake_completed" and kinds[-1] == "connection_terminated"
    assert kinds.count("subflow_established") == 2
    assert all(x["side"] == "client" and isinstance(x["time"], float) for x in lines)
    assert lines[0]["key_exchange"] == "split-path" and lines[-1]["error"] is None


def test_client_joins_addresses_the_server_announces() -> None:
    async def echo(stream) -> None:
        stream.write(await stream.readexactly(3))
        await stream.drain()

    async def main():
        port = free_port()
        cfg = ConnectionConfig(key_exchange="psk", announce=[("127.0.0.3", port)])
        from mptcpsec.crypto.keyschedule import Role, Secret
        from mptcpsec.crypto.psk import PskConfig

        cfg.psk = PskConfig(Role.CLIENT, Secret(b"\x33" * 32))
        srv = await serve(echo, [("127.0.0.1", port), ("127.0.0.3", port)], cfg)
        try:
            stream = await connect([Path(("127.0.0.1", port), "127.0.0.1")], cfg)
            for _ in range(100):
                if len(stream.subflow_stats()) == 2:
                    break
                await asyncio.sleep(0.02)
            stream.write(b"abc")
            assert await stream.readexactly(3) == b"abc"
            stats = stream.subflow_stats()
            kinds = [e.kind for e in stream.events]
            stream.close()
            await stream.wait_closed(10)
            return stats, kinds
        finally:
            srv.close()

    stats, kinds = run(main())
    assert "address_announced" in kinds
    assert [s["remote"] for s in stats] == [stats[0]["remote"], stats[1]["remote"]]
    assert stats[1]["remote"].startswith("127.0.0.3:") and stats[1]["state"] != "failed"


def test_rtt_comes_from_tcp_info() -> None:
    from mptcpsec.aio.driver import tcp_rtt

    with socket.create_server(("127.0.0.1", 0)) as srv, \
            socket.create_connection(srv.getsockname()) as c:
        rtt = tcp_rtt(c)
    assert rtt is not None and 0 <= rtt < 1.0


def test_add_path_joins_a_running_connection() -> None:
    async def main():
        port = free_port()
        cfg = ConnectionConfig(key_exchange="split-path")
        from .harness import echo_handler

        srv = await serve(echo_handler, [("127.0.0.1", port), ("127.0.0.2", port),
                                         ("127.0.0.3", port)], cfg)
        try:
            stream = await connect([Path(("127.0.0.1", port), "127.0.0.1"),
                                    Path(("127.0.0.2", port), "127.0.0.2")], cfg)
            sid = await stream.add_path(Path(("127.0.0.3", port), "127.0.0.3"))
            stream.write(b"z" * 1000)
            assert await stream.readexactly(1000) == b"z" * 1000
            states = {s["id"]: s["state"] for s in stream.subflow_stats()}
            stream.close()
            await stream.wait_closed(10)
            return sid, states
        finally:
            srv.close()

    sid, states = run(main())
    assert sid == 2 and states[2] == "established"

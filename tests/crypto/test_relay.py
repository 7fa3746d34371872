"""The lab TCP relay: passthrough, rewriting, record reassembly, injection, shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

from mptcpsec.aio.kx import frame_handshake, read_handshake_message
from mptcpsec.lab.relay import Direction, HookContext, Recorder, RecordHook, Relay


async def echo_server() -> tuple[asyncio.Server, tuple[str, int]]:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        finally:
            w.close()

    srv = await asyncio.start_server(echo, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[:2]


async def roundtrip(relay: Relay, payload: bytes) -> bytes:
    r, w = await asyncio.open_connection(*relay.address)
    w.write(payload)
    await w.drain()
    w.write_eof()
    data = await asyncio.wait_for(r.read(), 3)  # until EOF
    w.close()
    return data


def test_passthrough_and_recording(kx: Any) -> None:
    async def body() -> None:
        srv, addr = await echo_server()
        rec = Recorder()
        async with Relay(("127.0.0.1", 0), addr, c2s=rec, s2c=rec) as relay:
            payload = bytes(range(256)) * 1000
            assert await roundtrip(relay, payload) == payload
            assert rec.data[Direction.C2S] == payload and rec.data[Direction.S2C] == payload
            assert relay.flows[0].bytes_in[Direction.C2S] == len(payload)
        srv.close()

    kx.run(body())


def test_active_rewrite_and_drop(kx: Any) -> None:
    async def body() -> None:
        srv, addr = await echo_server()
        async with Relay(("127.0.0.2", 0), addr,
                         c2s=lambda d, ctx: d.replace(b"secret", b"XXXXXX"),
                         s2c=lambda d, ctx: d.upper()) as relay:
            assert relay.address[0] == "127.0.0.2"
            assert await roundtrip(relay, b"my secret data") == b"MY XXXXXX DATA"
        srv.close()

    kx.run(body())


def test_record_hook_reassembles_split_records(kx: Any) -> None:
    seen: list[bytes] = []

    def on_record(record: bytes, ctx: HookContext) -> bytes:
        seen.append(record)
        if b"drop" in record:
            return b""
        return record

    async def body() -> None:
        srv, addr = await echo_server()
        async with Relay(("127.0.0.1", 0), addr, c2s=RecordHook(on_record)) as relay:
            r, w = await asyncio.open_connection(*relay.address)
            stream = frame_handshake(b"one") + frame_handshake(b"drop me") + \
                frame_handshake(b"x" * 5000)
            for i in range(0, len(stream), 7):  # dribble it in tiny pieces
                w.write(stream[i:i + 7])
                await w.drain()
                await asyncio.sleep(0)
            assert await asyncio.wait_for(read_handshake_message(r), 3) == b"one"
            assert await asyncio.wait_for(read_handshake_message(r), 3) == b"x" * 5000
            w.close()
        srv.close()

    kx.run(body())
    assert [len(x) for x in seen] == [9, 13, 5006]


def test_inject_and_clean_shutdown(kx: Any) -> None:
    def answer_locally(data: bytes, ctx: HookContext) -> bytes:
        ctx.reply(b"relay says: " + data)
        return b""

    async def body() -> None:
        srv, addr = await echo_server()
        relay = Relay(("127.0.0.1", 0), addr, c2s=answer_locally)
        await relay.start()
        r, w = await asyncio.open_connection(*relay.address)
        w.write(b"ping")
        assert await asyncio.wait_for(r.readexactly(16), 3) == b"relay says: ping"
        await asyncio.wait_for(relay.close(), 3)
        assert await asyncio.wait_for(r.read(), 3) == b""  # the relay closed our socket
        assert all(f.closed.is_set() for f in relay.flows)
        w.close()
        srv.close()

    kx.run(body())


def test_hook_error_closes_only_that_flow(kx: Any) -> None:
    def bad_records(record: bytes, ctx: HookContext) -> bytes:
        return record

    async def body() -> None:
        srv, addr = await echo_server()
        async with Relay(("127.0.0.1", 0), addr, c2s=RecordHook(bad_records)) as relay:
            r, w = await asyncio.open_connection(*relay.address)
            w.write(b"\x09" + b"\x00" * 10)  # record version 9: not a record
            assert await asyncio.wait_for(r.read(), 3) == b""
            assert relay.flows[0].error is not None
            w.close()
            # the relay still serves new connections
            r2, w2 = await asyncio.open_connection(*relay.address)
            w2.write(frame_handshake(b"ok"))
            assert await asyncio.wait_for(read_handshake_message(r2), 3) == b"ok"
            w2.close()
        srv.close()

    kx.run(body())


def test_upstream_down_closes_client(kx: Any) -> None:
    async def body() -> None:
        srv, addr = await echo_server()
        srv.close()
        await srv.wait_closed()
        async with Relay(("127.0.0.1", 0), addr, connect_timeout=1.0) as relay:
            r, w = await asyncio.open_connection(*relay.address)
            assert await asyncio.wait_for(r.read(), 3) == b""
            w.close()

    kx.run(body())

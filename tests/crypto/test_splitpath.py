"""``split-path`` mode over real sockets (127.0.0.1 and 127.0.0.2) with relays in the paths."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from typing import Any

import nacl.bindings
import pytest

from mptcpsec.aio.kx import frame_handshake, parse_handshake_record
from mptcpsec.aio.stores import FileKnownHosts
from mptcpsec.crypto import splitpath as sp
from mptcpsec.crypto.keyschedule import Role
from mptcpsec.crypto.known_hosts import MemoryKnownHosts, format_known_host, parse_known_hosts
from mptcpsec.crypto.kx import derive_handshake_secrets
from mptcpsec.crypto.splitpath import (
    IdentityMismatchError,
    SplitPathClient,
    SplitPathConfig,
    SplitPathServer,
    generate_identity_seed,
    identity_public_key,
    peek_session_id,
)
from mptcpsec.errors import KeyExchangeError
from mptcpsec.lab.relay import Direction, HookContext, Recorder, RecordHook

P = sp._PREFIX  # type / version / session id


def pair(server_seed: bytes | None = None, **client_kw: Any) -> tuple[SplitPathClient,
                                                                      SplitPathServer]:
    return (SplitPathClient(SplitPathConfig(Role.CLIENT, **client_kw)),
            SplitPathServer(SplitPathConfig(Role.SERVER, identity_seed=server_seed)))


def rewrite(mtype: int, fn: Any) -> RecordHook:
    """A record hook that rewrites the body of handshake messages of one type."""

    def on_record(record: bytes, ctx: HookContext) -> bytes:
        body = parse_handshake_record(record)
        if body[0] == mtype:
            body = fn(bytearray(body))
        return frame_handshake(bytes(body))

    return RecordHook(on_record)


def run_split(kx: Any, hooks: dict[int, Any] | None = None, client: Any = None,
              server: Any = None) -> tuple[Any, Any]:
    if client is None or server is None:
        client, server = pair()

    async def body() -> tuple[Any, Any]:
        paths = await kx.open_paths(2, hooks)
        try:
            return await kx.run_pair(client, server, paths, timeout=4.0)
        finally:
            await paths.close()

    return kx.run(body())


def test_in_memory_success_and_flow(kx: Any) -> None:
    client, server = pair()
    sent: list[tuple[str, int, int]] = []

    def watch(direction: str, path: int, msg: bytes) -> bytes:
        sent.append((direction, path, msg[0]))
        return msg

    c, s = kx.pump_in_memory(client, server, tamper=watch)
    assert c.connection_secret == s.connection_secret
    assert c.connection_id == s.connection_id == client.session_id
    assert (c.client_nonce, c.server_nonce) == (s.client_nonce, s.server_nonce)
    assert sent == [("c2s", 0, sp.CLIENT_SHARE), ("c2s", 1, sp.CLIENT_NONCE),
                    ("s2c", 0, sp.SERVER_SHARE), ("s2c", 1, sp.SERVER_NONCE),
                    ("c2s", 0, sp.CLIENT_FINISHED), ("c2s", 1, sp.CLIENT_FINISHED)]


def test_one_round_trip_for_the_client() -> None:
    """The client's key is ready after one reply per path; the server needs no more input
    from the client than its first two messages to answer both paths."""
    client, server = pair()
    first = client.start()
    assert [p for p, _ in first.send] == [0, 1]
    server.start()
    replies = [server.receive(p, m) for p, m in first.send]
    assert replies[0].send == [] and [p for p, _ in replies[1].send] == [0, 1]
    done = [client.receive(p, m) for p, m in replies[1].send]
    assert done[-1].result is not None  # key after 1 RTT; CLIENT_FINISHED rides with data
    assert [p for p, _ in done[-1].send] == [0, 1]


def test_success_over_sockets(kx: Any) -> None:
    c, s = run_split(kx)
    assert not isinstance(c, BaseException) and not isinstance(s, BaseException), (c, s)
    assert c.connection_secret == s.connection_secret
    ck = c.schedule("aes-256-gcm").subflow_keys(0, c.client_nonce, c.server_nonce)
    sk = s.schedule("aes-256-gcm").subflow_keys(0, s.client_nonce, s.server_nonce)
    assert ck.c2s.key == sk.c2s.key


def assert_both_abort(c: Any, s: Any, detector: str, phrase: str) -> None:
    assert isinstance(c, KeyExchangeError) and isinstance(s, KeyExchangeError), (c, s)
    found, other = (s, c) if detector == "server" else (c, s)
    assert phrase in str(found) and "peer aborted" not in str(found), found
    assert "peer aborted" in str(other) and phrase in str(other), other


def test_client_share_replaced_on_path0(kx: Any) -> None:
    mallory = nacl.bindings.crypto_scalarmult_base(secrets.token_bytes(32))

    def swap(body: bytearray) -> bytearray:
        body[P:P + 32] = mallory
        return body

    c, s = run_split(kx, {0: (rewrite(sp.CLIENT_SHARE, swap), None)})
    assert_both_abort(c, s, "server", "client share received on path 0 does not match its hash")


def test_server_share_replaced_on_path0(kx: Any) -> None:
    mallory = nacl.bindings.crypto_scalarmult_base(secrets.token_bytes(32))

    def swap(body: bytearray) -> bytearray:
        body[P:P + 32] = mallory
        return body

    c, s = run_split(kx, {0: (None, rewrite(sp.SERVER_SHARE, swap))})
    assert_both_abort(c, s, "client", "transcript hash received on path 1 does not match")


def flip(offset: int) -> Any:
    def fn(body: bytearray) -> bytearray:
        body[offset] ^= 0x01
        return body
    return fn


def test_client_nonce_rewritten_on_path1(kx: Any) -> None:
    c, s = run_split(kx, {1: (rewrite(sp.CLIENT_NONCE, flip(P + 3)), None)})
    assert_both_abort(c, s, "client", "transcript hash received on path 1 does not match")


def test_share_hash_rewritten_on_path1(kx: Any) -> None:
    c, s = run_split(kx, {1: (rewrite(sp.CLIENT_NONCE, flip(P + 32 + 5)), None)})
    assert_both_abort(c, s, "server", "does not match its hash received on path 1")


def test_transcript_hash_rewritten_on_path1(kx: Any) -> None:
    c, s = run_split(kx, {1: (None, rewrite(sp.SERVER_NONCE, flip(P + 32 + 1 + 4)))})
    assert_both_abort(c, s, "client", "transcript hash received on path 1 does not match")


def test_coherent_rewrite_on_path1_fails_key_confirmation(kx: Any) -> None:
    """Mallory sees path 0 (passive) and rewrites path 1 consistently: she replaces the
    server nonce and recomputes the transcript hash, which she can; the confirmations
    then fail because she cannot compute them without the X25519 secret."""
    seen = Recorder()
    state: dict[str, bytes] = {}

    def note_client_nonce(body: bytearray) -> bytearray:
        state["cn"] = bytes(body)
        return body

    def forge(body: bytearray) -> bytearray:
        stream = bytes(seen.data[Direction.C2S]), bytes(seen.data[Direction.S2C])
        client_share = parse_handshake_record(stream[0][:6 + 66])
        server_share = parse_handshake_record(stream[1][:6 + 98])
        body[P:P + 32] = secrets.token_bytes(32)  # new server nonce
        sid = bytes(body[2:P])
        th = sp._transcript_hash(client_share, state["cn"], server_share[:P + 32],
                                 sp._server_nonce_core(sid, bytes(body[P:P + 32]), b""))
        body[P + 33:P + 65] = th
        return body

    c, s = run_split(kx, {0: (seen, seen),
                          1: (rewrite(sp.CLIENT_NONCE, note_client_nonce),
                              rewrite(sp.SERVER_NONCE, forge))})
    assert_both_abort(c, s, "client", "server key confirmation on path 0 (shares) failed")


def test_client_finished_rewritten(kx: Any) -> None:
    c, s = run_split(kx, {1: (rewrite(sp.CLIENT_FINISHED, flip(P + 1)), None)})
    assert isinstance(s, KeyExchangeError)
    assert "client key confirmation on path 1 (nonces) failed" in str(s)
    assert not isinstance(c, BaseException)  # the client already finished; see THREATS.md


class TwoPathMitm:
    """Mallory active on both paths: a fake server to the client, a fake client to the
    server, each a full split-path exchange."""

    def __init__(self, fake_seed: bytes | None = None) -> None:
        self.to_client = SplitPathServer(SplitPathConfig(Role.SERVER, identity_seed=fake_seed))
        self.to_server = SplitPathClient(SplitPathConfig(Role.CLIENT))
        self.to_client.start()
        self.flows: dict[int, Any] = {}
        self.started = False
        self.results: dict[str, Any] = {}

    def hook(self, path: int, direction: Direction) -> RecordHook:
        async def on_record(record: bytes, ctx: HookContext) -> bytes:
            self.flows[path] = ctx.flow
            for _ in range(100):  # both relayed flows must exist before injecting
                if len(self.flows) == 2:
                    break
                await asyncio.sleep(0.01)
            body = parse_handshake_record(record)
            if direction is Direction.C2S:
                if not self.started:
                    self.started = True
                    self.emit(self.to_server.start(), Direction.C2S)
                step = self.to_client.receive(path, body)
                self.emit(step, Direction.S2C, "client side")
            else:
                step = self.to_server.receive(path, body)
                self.emit(step, Direction.C2S, "server side")
            return b""  # nothing passes through unchanged

        return RecordHook(on_record)

    def emit(self, step: Any, direction: Direction, side: str = "") -> None:
        for p, msg in step.send:
            self.flows[p].inject(direction, frame_handshake(msg))
        if step.result is not None:
            self.results[side] = step.result


def test_active_on_both_paths_succeeds_documented_limit(kx: Any) -> None:
    mitm = TwoPathMitm()
    hooks = {p: (mitm.hook(p, Direction.C2S), mitm.hook(p, Direction.S2C)) for p in (0, 1)}
    c, s = run_split(kx, hooks)
    assert not isinstance(c, BaseException) and not isinstance(s, BaseException), (c, s)
    # both ends "succeed", but with different secrets that Mallory both holds
    assert c.connection_secret != s.connection_secret
    assert mitm.results["client side"].connection_secret == c.connection_secret
    assert mitm.results["server side"].connection_secret == s.connection_secret


def test_tofu_identity_stops_the_two_path_mitm(kx: Any, tmp_path: Any) -> None:
    seed = generate_identity_seed()
    known = tmp_path / "known_hosts"
    name = "server.example:4433"
    # first use: the key is learnt
    client, server = pair(seed, known_hosts=FileKnownHosts(known), server_name=name)
    c, s = run_split(kx, client=client, server=server)
    assert not isinstance(c, BaseException), c
    assert c.peer_identity == identity_public_key(seed).hex()
    assert FileKnownHosts(known).load() == {name: identity_public_key(seed)}
    # second use: the same server is accepted
    client, server = pair(seed, known_hosts=FileKnownHosts(known), server_name=name)
    c, s = run_split(kx, client=client, server=server)
    assert not isinstance(c, BaseException) and not isinstance(s, BaseException)
    # Mallory on both paths with her own key (or none): the client refuses
    for fake_seed in (generate_identity_seed(), None):
        mitm = TwoPathMitm(fake_seed)
        hooks = {p: (mitm.hook(p, Direction.C2S), mitm.hook(p, Direction.S2C)) for p in (0, 1)}
        client, server = pair(seed, known_hosts=FileKnownHosts(known), server_name=name)
        c, s = run_split(kx, hooks, client=client, server=server)
        assert isinstance(c, IdentityMismatchError), c
        assert "possible man-in-the-middle" in str(c)


def test_identity_signature_is_checked_and_required(kx: Any) -> None:
    seed = generate_identity_seed()

    def corrupt_signature(direction: str, path: int, msg: bytes) -> bytes:
        if msg[0] == sp.SERVER_NONCE:
            b = bytearray(msg)
            b[-sp.CONFIRM_LEN - 10] ^= 1
            return bytes(b)
        return msg

    c, s = kx.pump_in_memory(*pair(seed), tamper=corrupt_signature)
    assert isinstance(c, KeyExchangeError) and "identity signature" in str(c)
    assert isinstance(s, KeyExchangeError) and "peer aborted" in str(s)
    c, s = kx.pump_in_memory(*pair(None, require_identity=True))
    assert isinstance(c, KeyExchangeError) and "did not prove an identity key" in str(c)


def test_malformed_and_misplaced_messages(kx: Any) -> None:
    client, server = pair()
    first = client.start()
    server.start()
    share = first.send[0][1]
    assert peek_session_id(share) == client.session_id
    step = server.receive(1, share)  # a share on the nonce path
    assert isinstance(step.error, KeyExchangeError) and "expected path 0" in str(step.error)
    assert [p for p, _ in step.send] == [0, 1]  # the abort goes out on both paths
    for junk in (b"", b"\x11", b"\x11\x01" + b"x" * 10, b"\x99\x01" + b"x" * 64,
                 b"\x11\x02" + b"x" * 64, b"x" * 1000):
        srv = SplitPathServer(SplitPathConfig(Role.SERVER))
        srv.start()
        assert isinstance(srv.receive(0, junk).error, KeyExchangeError)
    # a low-order share is refused
    client, server = pair()
    server.start()
    msgs = client.start().send
    bad = bytearray(msgs[0][1])
    bad[P:P + 32] = bytes(32)
    nonce = bytearray(msgs[1][1])
    nonce[P + 32:] = hashlib.sha256(bytes(bad)).digest()
    server.receive(0, bytes(bad))
    step = server.receive(1, bytes(nonce))
    assert isinstance(step.error, KeyExchangeError) and "low order" in str(step.error)


def test_close_wipes_secrets(kx: Any) -> None:
    client, server = pair()
    c, s = kx.pump_in_memory(client, server)
    buf = c.connection_secret.buffer
    assert any(buf)
    client.close()
    server.close()
    assert buf == bytearray(32) and s.connection_secret.wiped
    assert not any(client._private) and not any(server._private)


def test_passive_on_both_paths_learns_nothing(kx: Any) -> None:
    rec = {0: Recorder(), 1: Recorder()}
    c, s = run_split(kx, {p: (rec[p], rec[p]) for p in (0, 1)})
    assert not isinstance(c, BaseException) and not isinstance(s, BaseException), (c, s)
    wire = rec[0].all_bytes() + rec[1].all_bytes()
    assert len(wire) > 300
    secret = bytes(c.connection_secret.buffer)
    keys = c.schedule().subflow_keys(0, c.client_nonce, c.server_nonce)
    for value in (secret, bytes(keys.c2s.key), bytes(keys.s2c.key), bytes(keys.c2s.iv)):
        assert value not in wire and value[:8] not in wire
    # Everything public is on the wire, yet recombining it does not give the secret.
    c0, s0 = rec[0].data[Direction.C2S], rec[0].data[Direction.S2C]
    client_share = bytes(c0[6 + P:6 + P + 32])
    server_share = bytes(s0[6 + P:6 + P + 32])
    sn = bytes(rec[1].data[Direction.S2C][6:])
    th = sn[P + 33:P + 65]
    eve = secrets.token_bytes(32)
    guesses = [nacl.bindings.crypto_scalarmult(eve, client_share),
               nacl.bindings.crypto_scalarmult(eve, server_share),
               client_share, server_share, hashlib.sha256(client_share + server_share).digest()]
    for ikm in guesses:
        assert derive_handshake_secrets(sp.MODE, ikm, th).connection_secret != c.connection_secret


def test_known_hosts_stores(kx: Any, tmp_path: Any) -> None:
    """The in-memory store and the file store behave alike; the format is checked."""
    seed = generate_identity_seed()
    key = identity_public_key(seed)
    name = "server.example:4433"
    memory = MemoryKnownHosts()
    client, server = pair(seed, known_hosts=memory, server_name=name)
    c, _ = kx.pump_in_memory(client, server)
    assert not isinstance(c, BaseException) and memory.get(name) == key
    # a server that stops signing is refused, in memory as on disk
    path = tmp_path / "known_hosts"
    path.write_text(f"# comment\n\n{format_known_host(name, key)}")
    for store in (memory, FileKnownHosts(path)):
        client, server = pair(None, known_hosts=store, server_name=name)
        c, _ = kx.pump_in_memory(client, server)
        assert isinstance(c, IdentityMismatchError) and "did not prove" in str(c), c
    # the file store appends, and re-reads what another process added
    other = FileKnownHosts(path)
    other.remember("b:1", bytes(32))
    assert FileKnownHosts(path).load() == {name: key, "b:1": bytes(32)}
    assert MemoryKnownHosts(path.read_text()).hosts == FileKnownHosts(path).load()
    assert FileKnownHosts(tmp_path / "absent").get(name) is None
    for bad in ("name ed25519 zz", "name rsa " + "00" * 32, "name ed25519 00"):
        with pytest.raises(KeyExchangeError, match="known_hosts line 1"):
            parse_known_hosts(bad)
    with pytest.raises(KeyExchangeError, match="invalid known_hosts name"):
        memory.remember("has space", key)
    with pytest.raises(KeyExchangeError, match="takes a store"):
        SplitPathConfig(Role.CLIENT, known_hosts=str(path))  # type: ignore[arg-type]

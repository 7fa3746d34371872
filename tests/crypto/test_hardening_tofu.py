"""Split-path trust on first use against an attacker active on path 1 only (SPEC 7.3, THREATS 4)."""

from __future__ import annotations

import threading
from typing import Any

import nacl.signing
import pytest

from mptcpsec.aio.stores import FileKnownHosts
from mptcpsec.crypto import splitpath as sp
from mptcpsec.crypto.keyschedule import Role
from mptcpsec.crypto.known_hosts import KnownHostsConflictError, MemoryKnownHosts
from mptcpsec.crypto.splitpath import (
    SplitPathClient,
    SplitPathConfig,
    SplitPathServer,
    generate_identity_seed,
    identity_public_key,
)

P = sp._PREFIX
NAME = "server.example:4433"


class IdentitySubstitution:
    """Passive on path 0, active on path 1: swaps the server's Ed25519 key in SERVER_NONCE
    for its own, recomputes the transcript hash from the public messages and signs it."""

    def __init__(self) -> None:
        self.signer = nacl.signing.SigningKey(generate_identity_seed())
        self.seen: dict[int, bytes] = {}
        self.rewritten = False

    def __call__(self, direction: str, path: int, msg: bytes) -> bytes:
        self.seen.setdefault(msg[0], msg)
        if direction != "s2c" or path != sp.NONCE_PATH or msg[0] != sp.SERVER_NONCE:
            return msg
        sid = msg[2:P]
        nonce = msg[P:P + sp.NONCE_LEN]
        confirm = msg[-sp.CONFIRM_LEN:]
        fake = bytes(self.signer.verify_key)
        share_core = self.seen[sp.SERVER_SHARE][:P + sp.SHARE_LEN]
        nonce_core = sp._server_nonce_core(sid, nonce, fake)
        th = sp._transcript_hash(self.seen[sp.CLIENT_SHARE], self.seen[sp.CLIENT_NONCE],
                                 share_core, nonce_core)
        sig = self.signer.sign(sp.SIGNATURE_CONTEXT + th).signature
        self.rewritten = True
        return nonce_core + th + bytes([len(sig)]) + sig + confirm


def _pair(seed: bytes, store: Any) -> tuple[SplitPathClient, SplitPathServer]:
    return (SplitPathClient(SplitPathConfig(Role.CLIENT, known_hosts=store, server_name=NAME)),
            SplitPathServer(SplitPathConfig(Role.SERVER, identity_seed=seed)))


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_substituted_identity_is_never_pinned(kx: Any, tmp_path: Any, kind: str) -> None:
    seed = generate_identity_seed()
    store = MemoryKnownHosts() if kind == "memory" else FileKnownHosts(tmp_path / "kh")
    attack = IdentitySubstitution()
    client, server = _pair(seed, store)
    c, _ = kx.pump_in_memory(client, server, tamper=attack)
    assert attack.rewritten
    assert isinstance(c, sp.KeyExchangeError) and "confirmation" in str(c), c
    assert store.get(NAME) is None
    # the next, clean connection learns the genuine key
    client, server = _pair(seed, store)
    c, s = kx.pump_in_memory(client, server)
    assert not isinstance(c, BaseException) and not isinstance(s, BaseException), (c, s)
    assert store.get(NAME) == identity_public_key(seed)


def test_file_store_refuses_a_second_entry_and_writes_atomically(tmp_path: Any) -> None:
    path = tmp_path / "known_hosts"
    store = FileKnownHosts(path)
    store.remember(NAME, bytes(32))
    before = path.read_bytes()
    with pytest.raises(KnownHostsConflictError, match="already holds"):
        store.remember(NAME, bytes([1]) * 32)
    assert path.read_bytes() == before and store.get(NAME) == bytes(32)
    mem = MemoryKnownHosts(before.decode())
    with pytest.raises(KnownHostsConflictError):
        mem.remember(NAME, bytes([1]) * 32)
    with pytest.raises(KnownHostsConflictError, match="second entry"):
        MemoryKnownHosts(before.decode() * 2)
    # concurrent writers: every name lands once, no line is torn, no temp file is left
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            FileKnownHosts(path).remember(f"host{i}:1", bytes([i]) * 32)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(1, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors
    loaded = store.load()
    assert len(loaded) == 17 and all(loaded[f"host{i}:1"] == bytes([i]) * 32
                                      for i in range(1, 17))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["known_hosts", "known_hosts.lock"]


def test_two_clients_first_use_race_keeps_one_key(kx: Any, tmp_path: Any) -> None:
    """Another client stored a key for the name between this client's lookup and its
    store: the same key is accepted, a different one is refused and stays out."""
    seed = generate_identity_seed()

    class Racing(FileKnownHosts):
        def __init__(self, path: Any, winner: bytes) -> None:
            super().__init__(path)
            self.winner = winner
            self.looked = False

        def get(self, name: str) -> bytes | None:
            if not self.looked:  # the lookup before the signature check sees nothing
                self.looked = True
                FileKnownHosts(self.path).remember(name, self.winner)
                return None
            return super().get(name)

    same = Racing(tmp_path / "a", identity_public_key(seed))
    c, _ = kx.pump_in_memory(*_pair(seed, same))
    assert not isinstance(c, BaseException), c
    other = Racing(tmp_path / "b", bytes(32))
    c, _ = kx.pump_in_memory(*_pair(seed, other))
    assert isinstance(c, sp.IdentityMismatchError) and "possible man-in-the-middle" in str(c), c
    assert other.load() == {NAME: bytes(32)}


def test_abort_from_a_path_that_sent_nothing_valid_is_ignored(kx: Any) -> None:
    """A passive observer of path 0 learns the session id, claims path 1 with an ABORT
    before the client's CLIENT_NONCE arrives: the server ignores it and completes."""
    client = SplitPathClient(SplitPathConfig(Role.CLIENT))
    server = SplitPathServer(SplitPathConfig(Role.SERVER))
    server.start()
    first = client.start().send
    share = dict(first)[sp.SHARE_PATH]
    assert server.receive(sp.SHARE_PATH, share).error is None
    forged = sp.encode_abort(sp.VERSION, "bye")
    assert server.receive(sp.NONCE_PATH, forged).error is None and server.ignored_aborts == 1
    reply = server.receive(sp.NONCE_PATH, dict(first)[sp.NONCE_PATH])
    assert reply.error is None and len(reply.send) == 2
    done = [client.receive(p, m) for p, m in reply.send][-1]
    assert done.result is not None
    steps = [server.receive(p, m) for p, m in done.send]
    assert steps[-1].result is not None
    assert steps[-1].result.connection_secret == done.result.connection_secret


def test_abort_from_a_path_that_spoke_still_counts(kx: Any) -> None:
    client = SplitPathClient(SplitPathConfig(Role.CLIENT))
    server = SplitPathServer(SplitPathConfig(Role.SERVER))
    server.start()
    share = dict(client.start().send)[sp.SHARE_PATH]
    server.receive(sp.SHARE_PATH, share)
    step = server.receive(sp.SHARE_PATH, sp.encode_abort(sp.VERSION, "client gave up"))
    assert step.error is not None and "peer aborted" in str(step.error)

"""split-path client identities (a gateway's clients, SPEC section 7.3): the proof in
CLIENT_FINISHED on path 1, checked against the allowed keys, bound to the key."""

from __future__ import annotations

from mptcpsec.crypto.keyschedule import Role
from mptcpsec.crypto.splitpath import (
    NONCE_PATH,
    SplitPathConfig,
    generate_identity_seed,
    identity_public_key,
    split_path,
)


def _run(client: SplitPathConfig, server: SplitPathConfig, tamper=None) -> dict:  # type: ignore[no-untyped-def]
    c, s = split_path(client), split_path(server)
    s.start()
    queue = [("s", m) for m in c.start().send]
    out: dict = {}
    for _ in range(20):
        if not queue:
            break
        to, (path, msg) = queue.pop(0)
        if tamper is not None and to == "s":
            msg = tamper(path, msg)
        step = (s if to == "s" else c).receive(path, msg)
        if step.error:
            out[to + "_error"] = str(step.error)
        if step.result:
            out[to] = step.result.peer_identity
        queue += [("c" if to == "s" else "s", m) for m in step.send]
    return out


SEED = generate_identity_seed()
PUB = identity_public_key(SEED)
ALLOWED = {PUB: "laptop"}


def test_an_allowed_client_is_named_by_the_server() -> None:
    out = _run(SplitPathConfig(Role.CLIENT, client_identity_seed=SEED),
               SplitPathConfig(Role.SERVER, allowed_clients=ALLOWED))
    assert out == {"c": None, "s": "laptop"}


def test_unknown_or_missing_identities_are_refused() -> None:
    out = _run(SplitPathConfig(Role.CLIENT, client_identity_seed=generate_identity_seed()),
               SplitPathConfig(Role.SERVER, allowed_clients=ALLOWED))
    assert "is not allowed" in out["s_error"] and "s" not in out
    out = _run(SplitPathConfig(Role.CLIENT),
               SplitPathConfig(Role.SERVER, allowed_clients=ALLOWED))
    assert "did not prove an identity" in out["s_error"] and "s" not in out


def test_a_server_without_a_list_still_learns_a_proved_key() -> None:
    out = _run(SplitPathConfig(Role.CLIENT, client_identity_seed=SEED),
               SplitPathConfig(Role.SERVER))
    assert out["s"] == PUB.hex()


def test_the_proof_cannot_be_swapped_or_stripped_on_path_1() -> None:
    """An attacker on path 1 who is an allowed client himself puts his own proof in place
    of the client's: the confirmation covers the proof, so the server refuses."""
    mallory = generate_identity_seed()
    allowed = {PUB: "laptop", identity_public_key(mallory): "mallory"}
    own = _run(SplitPathConfig(Role.CLIENT, client_identity_seed=mallory),
               SplitPathConfig(Role.SERVER, allowed_clients=allowed))
    assert own["s"] == "mallory"

    def swap(path: int, msg: bytes) -> bytes:
        if path == NONCE_PATH and msg[0] == 0x13:
            return msg[:66] + identity_public_key(mallory) + bytes(64)
        return msg

    out = _run(SplitPathConfig(Role.CLIENT, client_identity_seed=SEED),
               SplitPathConfig(Role.SERVER, allowed_clients=allowed), tamper=swap)
    assert "confirmation on path 1" in out["s_error"] and "s" not in out

    def strip(path: int, msg: bytes) -> bytes:
        return msg[:66] if path == NONCE_PATH and msg[0] == 0x13 else msg

    out = _run(SplitPathConfig(Role.CLIENT, client_identity_seed=SEED),
               SplitPathConfig(Role.SERVER, allowed_clients=allowed), tamper=strip)
    assert "s" not in out and "s_error" in out

"""Hypothesis properties on the attack bench: whatever one path does to its bytes, nothing
forged is delivered and the transfer completes over the other path; re-segmenting a clean
path changes nothing at all."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from mptcpsec.wire.header import RecordType

from .tamperbench import C2S, SCENARIOS, Verdict


def byte_attack(direction: str, offset: int, mask: int, insert: bytes):
    """XOR `mask` into the byte at `offset` of one direction of path 1 (or insert bytes)."""
    state = {"pos": 0, "done": False, "type": 0}

    def fn(d: str, idx: int, rec: bytes) -> Verdict:
        if d != direction or state["done"]:
            return rec
        start = state["pos"]
        state["pos"] += len(rec)
        if not start <= offset < state["pos"]:
            return rec
        state["done"] = True
        state["type"] = rec[1]
        k = offset - start
        if insert:
            return rec[:k] + insert + rec[k:]
        return rec[:k] + bytes([rec[k] ^ mask]) + rec[k + 1:]

    fn.state = state  # type: ignore[attr-defined]
    return fn


@settings(max_examples=80, deadline=None)
@given(scenario=st.sampled_from(["psk-join", "split-path"]),
       direction=st.sampled_from(["c2s", "s2c"]),
       offset=st.integers(min_value=0, max_value=40_000),
       mask=st.integers(min_value=1, max_value=255),
       insert=st.one_of(st.just(b""), st.binary(min_size=1, max_size=40)))
def test_any_byte_changed_on_one_path_is_never_delivered(scenario, direction, offset, mask,
                                                         insert) -> None:
    attack = byte_attack(direction, offset, mask, insert)
    r = SCENARIOS[scenario].make(attack).run()  # checks every read: nothing unsent delivered
    assert not r.stuck
    if r.client_error or r.server_error:
        # Only a change to the key exchange itself (split-path runs on both paths) may end
        # the connection, and then at both ends.
        assert attack.state["type"] == RecordType.HANDSHAKE, (r.client_error, r.server_error)
        assert r.client_error and r.server_error
        return
    assert r.intact


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=70), min_size=1, max_size=8))
def test_resegmenting_a_path_changes_nothing(cuts: list[int]) -> None:
    def fn(d: str, idx: int, rec: bytes) -> Verdict:
        pieces: list[bytes | object] = []
        pos, i = 0, idx
        while pos < len(rec):
            n = cuts[i % len(cuts)]
            pieces.append(rec[pos:pos + n])
            pos += n
            i += 1
        return pieces  # type: ignore[return-value]

    r = SCENARIOS["psk-join"].make(fn).run()
    assert r.intact and r.client_error is None and r.server_error is None
    assert not r.poisoned("client") and not r.poisoned("server")
    assert all(d in (C2S, "s2c") for _, d in r.records)

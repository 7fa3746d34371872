"""Every proxy attack against mptcpsec: detected, the subflow dropped, the echo intact."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from mptcpsec.lab.attacks import (
    ATTACKS,
    EXPECTED_REASON,
    OPTION_NAMES,
    Attack,
    AttackError,
    AttackSpec,
    option_fields,
)
from mptcpsec.lab.relay import Direction
from mptcpsec.lab.scenarios import Scenario, first_difference, run_scenario
from mptcpsec.wire.header import HEADER_LEN, RecordHeader, RecordType
from mptcpsec.wire.options import Dss, decode_options
from mptcpsec.wire.records import build_record, data_dss

KB = 1000


def scenario(kind: str, direction: str = "c2s", **kw) -> Scenario:
    spec = AttackSpec(kind, after_bytes=300 * KB, direction=direction)
    return Scenario(nbytes=kw.pop("nbytes", 2_000_000), attack=spec, delay_ms=1, **kw)


def run(sc: Scenario):
    return asyncio.run(asyncio.wait_for(run_scenario(sc), 60))


@pytest.mark.parametrize("kind", ATTACKS)
def test_attack_on_path_2_is_survived_by_mptcpsec(kind: str) -> None:
    res = run(scenario(kind))
    assert len(res.strikes) == 1, "the attack never fired"
    assert res.outcome == "completed" and res.error is None
    assert res.intact and res.bytes_echoed == res.bytes_sent == 2_000_000
    stats = {s["id"]: s for s in res.subflows}
    assert stats[0]["state"] == "closed"  # the clean path carried the rest, closed cleanly
    server = [e for e in res.events if e["side"] == "server"]
    client = [e for e in res.events if e["side"] == "client"]
    reason = EXPECTED_REASON[kind]
    if reason is None:  # a reset is a path failure: dropped and re-sent, not "tampering"
        assert not res.detected
        assert stats[1]["state"] == "failed" and "reset" in str(stats[1]["reason"])
    else:
        poisoned = [e for e in server if e["event"] == "subflow_poisoned"]
        assert [(e["subflow_id"], e["reason"], e["reported_by_peer"]) for e in poisoned] \
            == [(1, reason, False)]
        told = [e for e in client if e["event"] == "subflow_poisoned"]
        assert [(e["subflow_id"], e["reason"], e["reported_by_peer"]) for e in told] \
            == [(1, reason, True)]
        assert stats[1]["state"] == "poisoned"
    assert any(e["event"] == "data_reinjected" for e in client)


def test_attack_on_the_echo_direction_is_detected_by_the_client() -> None:
    res = run(scenario("bitflip-data", direction="s2c"))
    assert res.strikes and res.strikes[0]["direction"] == "s2c"
    assert res.intact and res.outcome == "completed"
    poisoned = [(e["side"], e["reported_by_peer"]) for e in res.events
                if e["event"] == "subflow_poisoned"]
    assert ("client", False) in poisoned and ("server", True) in poisoned


@pytest.mark.parametrize("key_exchange", ["tls", "psk"])
def test_other_key_exchanges_survive_too(key_exchange: str) -> None:
    res = run(scenario("bitflip-data", key_exchange=key_exchange))
    assert res.strikes and res.detected and res.intact and res.key_exchange == key_exchange


def test_plain_delivers_the_flipped_byte_without_noticing() -> None:
    res = run(scenario("bitflip-data", mode="plain"))
    assert res.strikes and res.outcome == "completed" and not res.detected
    assert res.bytes_echoed == res.bytes_sent and not res.intact
    assert res.first_difference is not None


# --------------------------------------------------------------- the attacks, record by record

def ctx(index: int = 0, direction: Direction = Direction.C2S):
    return SimpleNamespace(flow=SimpleNamespace(index=index), direction=direction)


def data_record(dsn: int, body: bytes) -> bytes:
    return build_record(RecordType.DATA, 0, [data_dss(dsn, len(body), data_ack=7)], body)


def test_bitflip_option_changes_only_the_named_field() -> None:
    attack = Attack(AttackSpec("bitflip-option", option="dss", field="data_ack"))
    rec = data_record(1000, b"x" * 100)
    out = attack._on_record(rec, ctx())
    h = RecordHeader.unpack(out)
    dss = decode_options(out[HEADER_LEN:HEADER_LEN + h.opt_len])[0]
    assert isinstance(dss, Dss) and dss.data_ack == 6 and dss.dsn == 1000
    assert out[HEADER_LEN + h.opt_len:] == rec[HEADER_LEN + h.opt_len:]
    assert attack.strikes[0].detail == "dss.data_ack: 7 -> 6"


def test_truncate_keeps_the_framing_valid() -> None:
    attack = Attack(AttackSpec("truncate"))
    rec = data_record(1, b"y" * 200)
    out = attack._on_record(rec, ctx())
    h = RecordHeader.unpack(out)
    assert h.record_len == len(out) == len(rec) - 100


def test_reorder_replay_drop_inject_on_a_record_sequence() -> None:
    recs = [data_record(i * 10, bytes([i]) * 10) for i in range(4)]

    def through(kind: str) -> bytes:
        attack = Attack(AttackSpec(kind, after_records=1))
        return b"".join(attack._on_record(r, ctx()) for r in recs)

    assert through("reorder") == recs[0] + recs[2] + recs[1] + recs[3]
    assert through("replay") == recs[0] + recs[1] + recs[0] + recs[2] + recs[3]
    assert through("drop") == recs[0] + recs[2] + recs[3]
    injected = through("inject")
    assert injected.endswith(recs[1] + recs[2] + recs[3]) and injected.startswith(recs[0])
    assert b"FORGED" in injected


def test_attacks_ignore_the_other_direction_and_non_data_records() -> None:
    attack = Attack(AttackSpec("drop"))
    rec = data_record(1, b"z" * 10)
    assert attack._on_record(rec, ctx(direction=Direction.S2C)) == rec
    hs = build_record(RecordType.HANDSHAKE, 1, b"", b"hello")
    assert attack._on_record(hs, ctx()) == hs
    assert not attack.fired


def test_bad_specs_say_what_to_do() -> None:
    with pytest.raises(AttackError, match="choose one of"):
        AttackSpec("explode")
    with pytest.raises(AttackError, match="no field"):
        AttackSpec("bitflip-option", option="dss", field="colour")
    with pytest.raises(AttackError, match="direction"):
        AttackSpec("drop", direction="up")
    assert "dsn" in option_fields("dss") and "mp-join" in OPTION_NAMES


def test_first_difference() -> None:
    a = bytes(200_000)
    assert first_difference(a, a) is None
    b = bytearray(a)
    b[150_001] = 1
    assert first_difference(a, b) == 150_001
    assert first_difference(a, a[:10]) is None

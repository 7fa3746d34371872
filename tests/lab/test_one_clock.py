"""The lab's result object keeps one clock: strikes on the events' seconds-from-start."""

from __future__ import annotations

import asyncio
import json

from mptcpsec.lab.attacks import AttackSpec
from mptcpsec.lab.scenarios import Scenario, run_scenario


def test_result_strikes_use_the_events_clock() -> None:
    sc = Scenario(nbytes=1_000_000, attack=AttackSpec("bitflip-data", after_bytes=200_000),
                  delay_ms=1)
    res = asyncio.run(asyncio.wait_for(run_scenario(sc), 60))
    (strike,) = res.strikes
    assert "time" not in strike  # no epoch stamp in the result
    assert strike["t"] == res.attack_time and 0 < strike["t"] < res.duration_s
    assert strike["path"] == sc.attack_path
    poisoned = next(e for e in res.events if e["event"] == "subflow_poisoned")
    # the detection follows the strike on the same clock, within the run
    assert strike["t"] <= poisoned["t"] < strike["t"] + 5
    doc = json.loads(json.dumps(res.to_dict()))
    times = [e["t"] for e in doc["events"]] + [s["t"] for s in doc["strikes"]]
    assert all(0 <= t <= res.duration_s for t in times), times

"""`mptcpsec demo` as a subprocess: the outcomes the demo promises, in JSON and as text."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import run_cli

FIELDS = {"mode", "key_exchange", "attack", "bytes_sent", "bytes_echoed", "intact", "outcome",
          "subflows", "events"}


def test_demo_json_mptcpsec_survives_the_attack() -> None:
    res = run_cli("demo", "--json", "--bytes", "4000000")
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)
    assert set(run) >= FIELDS
    assert run["mode"] == "mptcpsec" and run["key_exchange"] == "split-path"
    assert run["attack"].startswith("bitflip-data") and run["attack_path"] == 2
    assert run["outcome"] == "completed" and run["intact"] and run["detected"]
    assert run["bytes_sent"] == run["bytes_echoed"] == 4_000_000
    assert run["sha256_sent"] == run["sha256_echoed"]
    subflows = {s["id"]: s for s in run["subflows"]}
    for s in subflows.values():
        assert {"id", "local", "remote", "state", "reason", "bytes_sent"} <= set(s)
    assert subflows[1]["state"] == "poisoned" and subflows[1]["reason"] == "authentication"
    assert subflows[1]["local"].startswith("127.0.0.2:")
    kinds = [(e["side"], e["event"]) for e in run["events"]]
    assert ("server", "subflow_poisoned") in kinds and ("client", "data_reinjected") in kinds
    assert len(run["strikes"]) == 1


def test_demo_compare_json_shows_three_outcomes(tmp_path: Path) -> None:
    plot, pcap = tmp_path / "cmp.png", tmp_path / "cap.pcap"
    res = run_cli("demo", "--compare", "--json", "--bytes", "4000000", "--plot", str(plot),
                  "--pcap", str(pcap))
    assert res.returncode == 0, res.stderr
    runs = {r["mode"]: r for r in json.loads(res.stdout)["runs"]}
    assert list(runs) == ["plain", "tls-over-plain", "mptcpsec"]
    for r in runs.values():
        assert set(r) >= FIELDS and len(r["strikes"]) == 1
    plain = runs["plain"]  # corrupted bytes delivered, nobody noticed
    assert plain["outcome"] == "completed" and not plain["intact"] and not plain["detected"]
    assert plain["bytes_echoed"] == plain["bytes_sent"] == 4_000_000
    assert plain["sha256_sent"] != plain["sha256_echoed"]
    assert plain["first_difference"] is not None
    tls = runs["tls-over-plain"]  # the whole connection dies
    assert tls["outcome"] == "aborted" and not tls["intact"]
    assert tls["bytes_echoed"] < tls["bytes_sent"]
    assert "bad record mac" in (tls["server_error"] or "")
    ours = runs["mptcpsec"]  # the poisoned subflow is dropped, the echo completes intact
    assert ours["outcome"] == "completed" and ours["intact"] and ours["detected"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for mode in runs:
        assert (tmp_path / f"cap-{mode}.pcap").stat().st_size > 10_000


def test_demo_without_a_terminal_prints_plain_lines_and_the_verdict() -> None:
    res = run_cli("demo", "--bytes", "2MB", "--attack", "replay", "--attack-after", "300k",
                  "--key-exchange", "psk")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "\x1b[" not in out  # no terminal control codes in a pipe
    assert "ATTACK on path 2" in out and "DETECTED" in out
    assert "sha256 sent" in out and "sha256 echoed" in out and "INTACT" in out


def test_demo_exit_status_follows_mptcpsec_integrity() -> None:
    res = run_cli("demo", "--bytes", "1MB", "--attack", "none", "--quiet")
    assert res.returncode == 0 and "No attack" in res.stdout
    res = run_cli("demo", "--paths", "1")
    assert res.returncode == 1 and "split-path needs two paths" in res.stderr

"""Each system benchmark runs end to end in a tiny size, so the commands never rot.

Real processes, sockets and relays as in the full runs; the figures are not checked
(seconds of loopback traffic on a shared machine say nothing), the shape and the
correctness columns are: every row measured, JSON and PNG written, nothing lost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mptcpsec.cli import main
from mptcpsec.perf.peers import kernel_mptcp_available

pytestmark = pytest.mark.timeout(120)


def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> dict:
    rc = main(["bench", *args, "--out", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    name = args[0]
    assert (tmp_path / f"{name}.png").stat().st_size > 1000
    doc = json.loads((tmp_path / f"{name}.json").read_text())
    assert doc["bench"] == name and doc["machine"]["nproc"] >= 1
    assert f"wrote {tmp_path / (name + '.json')}" in out
    return doc


def test_transfer_smoke(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = run(capsys, tmp_path, "transfer", "--bytes", "2M", "--repeats", "1",
              "--warmup-bytes", "0", "--subflows", "1,2", "--record-sizes", "4096")
    rows = {r["label"]: r for r in doc["rows"]}
    assert any(r["peer"] == "tls" and "TLS_AES_128_GCM_SHA256" in r["note"] for r in rows.values())
    peers = {r["peer"] for r in doc["rows"]}
    assert {"mptcpsec", "tls", "tcp"} <= peers
    assert ("kernel-mptcp" in peers) == kernel_mptcp_available()
    assert [r["subflows"] for r in doc["rows"] if r["peer"] == "mptcpsec"
            and r["group"] == "peers"] == [1, 2, 2]  # AES 1, 2 and the ChaCha20 row
    assert all(r["MBps"] > 0 and len(r["runs"]) == 1 for r in doc["rows"])
    assert "mptcpsec-2-aes128 / tls" in doc["ratios"]


def test_failover_smoke(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = run(capsys, tmp_path, "failover", "--rtt-ms", "10", "--bytes", "1M",
              "--tamper-after", "200K", "--interval-ms", "2", "--repeats", "1")
    (r,) = doc["runs"]
    assert r["error"] is None and r["failover_ms"] is not None
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["intact"]
    assert r["client_poisoned"] and r["reported_by_peer"] and r["reinjected_bytes"] > 0
    assert r["failover_ms"] >= 10  # at least the receiver's report and the re-sent bytes
    assert doc["summary"]["target_ms"] == 30


def test_handshake_smoke(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = run(capsys, tmp_path, "handshake", "--fast-rtt-ms", "4", "--slow-rtt-ms", "20",
              "--repeats", "1")
    rows = doc["rows"]
    assert sorted({r["key_exchange"] for r in rows}) == ["psk", "split-path", "tls"]
    assert len(rows) == 9 and not any(r["errors"] for r in rows)
    for r in rows:
        if r["first_path_rtt_ms"]:
            # No exchange finishes before one round trip of the path(s) it uses.
            used = max(r["first_path_rtt_ms"], r["second_path_rtt_ms"]) \
                if r["key_exchange"] == "split-path" else r["first_path_rtt_ms"]
            assert r["ready_ms"] >= used


def test_scale_smoke(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = run(capsys, tmp_path, "scale", "--connections", "8", "--echo-bytes", "100K")
    assert doc["connections_opened"] == 8 and doc["closed_cleanly"] == 8
    assert doc["errors"] == [] and doc["mismatches"] == 0
    assert len(doc["samples"]) >= 2 and doc["echo_MBps"] > 0


def test_bench_rejects_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "transfer", "--bytes", "lots"])
    assert "not a size" in capsys.readouterr().err


def test_engine_transfer_smoke() -> None:
    from mptcpsec.perf.engine import engine_transfer

    r = engine_transfer(3_000_000, subflows=2, max_record=4096)
    assert r.nbytes == 3_000_000 and r.client_seconds > 0 and r.server_seconds > 0

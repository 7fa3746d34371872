"""`demo` and `proxy` reports that agree with themselves: one record count, one clock, the
same "detected" in the table and the JSON, and no success exit when the attack never fired."""

from __future__ import annotations

import json
import re

from .conftest import Processes, free_port, run_cli, wait_listening


def test_strikes_share_the_events_clock_and_record_count() -> None:
    res = run_cli("demo", "--json", "--bytes", "3MB")
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)
    (strike,) = run["strikes"]
    assert "time" not in strike  # no epoch next to the events' seconds-from-start
    assert abs(strike["t"] - run["attack_time"]) < 1e-3 and 0 < strike["t"] < run["duration_s"]
    poisoned = next(e for e in run["events"] if e["event"] == "subflow_poisoned"
                    and e["side"] == "server")
    m = re.search(r"record (\d+) received", poisoned["detail"])
    assert m and int(m.group(1)) == strike["record_number"] == strike["record_index"] + 1


def test_table_and_json_agree_on_detected() -> None:
    res = run_cli("demo", "--compare", "--json", "--bytes", "3MB")
    assert res.returncode == 0, res.stderr
    runs = {r["mode"]: r for r in json.loads(res.stdout)["runs"]}
    assert runs["tls-over-plain"]["detected"] is True  # its TLS session died of it
    assert runs["plain"]["detected"] is False and runs["mptcpsec"]["detected"] is True
    assert all(r["attack_fired"] for r in runs.values())
    text = run_cli("demo", "--compare", "--bytes", "3MB").stdout
    row = next(line for line in text.splitlines() if "tls-over-plain" in line and "│" in line)
    assert "yes" in row


def test_an_attack_that_never_fired_is_not_a_success() -> None:
    res = run_cli("demo", "--compare", "--bytes", "1MB", "--attack-after", "50MB", "--json")
    assert res.returncode == 1
    assert "the attack did not fire in: plain, tls-over-plain, mptcpsec" in res.stderr
    assert all(r["attack_fired"] is False for r in json.loads(res.stdout)["runs"])


def test_verdict_lines_are_not_hard_wrapped_in_a_pipe() -> None:
    res = run_cli("demo", "--bytes", "3MB")
    assert res.returncode == 0, res.stderr
    verdict = next(line for line in res.stdout.splitlines() if "INTACT" in line and " - " in line)
    assert verdict.rstrip().endswith("Not one forged byte was delivered.")


def test_proxy_json_gives_host_port(procs: Processes) -> None:
    port = free_port("127.0.0.1", ())
    proxy = procs.start("proxy", "--listen", f"127.0.0.1:{port}", "--upstream", "127.0.0.1:9",
                        "--json")
    wait_listening("127.0.0.1", port, proc=proxy)
    _, out, err = Processes.interrupt(proxy)
    stats = json.loads(out)
    assert stats["listen"] == f"127.0.0.1:{port}" and stats["upstream"] == "127.0.0.1:9", err

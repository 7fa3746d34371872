"""`mptcpsec pcap` as a user runs it: bad inputs and outputs get one line naming the file."""

from __future__ import annotations

from pathlib import Path

from .conftest import run_cli


def test_unwritable_output_is_refused_before_running(tmp_path: Path) -> None:
    r = run_cli("pcap", "--sample", "-o", str(tmp_path / "no" / "x.pcap"))
    assert r.returncode == 2
    assert "cannot write output file" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_binary_trace_names_the_file_and_line(tmp_path: Path) -> None:
    trace = tmp_path / "bin.jsonl"
    trace.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" * 20)
    r = run_cli("pcap", "--trace", str(trace), "-o", str(tmp_path / "x.pcap"))
    assert r.returncode == 1
    assert f"{trace} line 1: not UTF-8 text" in r.stderr
    assert "Traceback" not in r.stderr and "UnicodeDecodeError" not in r.stderr


def test_trace_line_missing_a_field_is_named(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"event":"subflow_open","subflow":0,"client":"127.0.0.1:1",'
                     '"server":"127.0.0.1:2"}\n'
                     '{"event":"record","subflow":0,"record":"00"}\n')
    r = run_cli("pcap", "--trace", str(trace), "-o", str(tmp_path / "x.pcap"))
    assert r.returncode == 1
    assert f"{trace} line 2: missing field 'from'" in r.stderr
    assert "KeyError" not in r.stderr and "Traceback" not in r.stderr


def test_help_says_keylog_decrypts_payloads() -> None:
    r = run_cli("pcap", "--help")
    assert r.returncode == 0
    assert "Payloads stay encrypted." not in r.stdout
    assert "unless --keylog is given" in r.stdout

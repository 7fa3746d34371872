"""The Wireshark Lua dissector shipped with the package, run by tshark on real captures:
every record found, and its header and option fields decoded to the values the records
trace of the same connection holds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mptcpsec.wire.header import HEADER_LEN, RecordHeader
from mptcpsec.wire.options import Dss, decode_options

from .conftest import Processes, free_port, run_cli, wait_listening

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed "
                                "(.ci/run installs it)")


def dissector() -> str:
    res = run_cli("pcap", "--dissector-path")
    assert res.returncode == 0, res.stderr
    path = res.stdout.strip()
    assert path.endswith("mptcpsec.lua") and Path(path).is_file()
    return path


def tshark_fields(pcap: Path, *fields: str, extra: tuple[str, ...] = ()) -> list[list[str]]:
    cmd = [str(TSHARK), "-X", f"lua_script:{dissector()}", "-r", str(pcap), "-T", "fields",
           "-E", "occurrence=a", "-E", "aggregator=,", *extra]
    for f in fields:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Lua: Error" not in res.stderr, res.stderr
    return [line.split("\t") for line in res.stdout.splitlines()]


def expected_records(trace: Path) -> list[dict[str, object]]:
    out = []
    for line in trace.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("event") != "record":
            continue
        rec = bytes.fromhex(ev["record"])
        h = RecordHeader.unpack(rec)
        opts = decode_options(rec[HEADER_LEN:HEADER_LEN + h.opt_len])
        dss = next((o for o in opts if isinstance(o, Dss)), None)
        out.append({"type": h.type, "flags": h.flags, "opt_len": h.opt_len,
                    "body_len": h.body_len,
                    "dsn": None if dss is None or dss.dsn is None else dss.dsn,
                    "data_ack": None if dss is None else dss.data_ack})
    return out


def test_records_of_a_real_connection_decode_to_their_values(procs: Processes,
                                                              tmp_path: Path) -> None:
    _, port = procs.serve()
    pcap, trace = tmp_path / "run.pcap", tmp_path / "run.jsonl"
    res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-c", f"127.0.0.2:{port}",
                  "--verify", "300k", "--pcap", str(pcap), "--trace", str(trace), "-q")
    assert res.returncode == 0, res.stderr
    want = expected_records(trace)
    assert len(want) > 20
    rows = tshark_fields(pcap, "mptcpsec.version", "mptcpsec.type", "mptcpsec.flags",
                         "mptcpsec.opt_len", "mptcpsec.body_len", "mptcpsec.dss.dsn",
                         "mptcpsec.dss.data_ack", "mptcpsec.tag",
                         extra=("-Y", "mptcpsec"))
    assert len(rows) == len(want)  # one record per segment in our pcap export
    types_seen = set()
    for row, exp in zip(rows, want, strict=True):
        version, rtype, flags, opt_len, body_len, dsn, data_ack, tag = row
        assert version == "1"
        assert int(rtype) == exp["type"] and int(flags, 16) == exp["flags"]
        assert int(opt_len) == exp["opt_len"] and int(body_len) == exp["body_len"]
        assert (int(dsn) if dsn else None) == exp["dsn"]
        assert (int(data_ack) if data_ack else None) == exp["data_ack"]
        protected = exp["type"] not in (6,) and not (exp["type"] == 3 and exp["flags"] & 1)
        assert bool(tag) == protected
        types_seen.add(exp["type"])
    assert {1, 3, 5} <= types_seen  # DATA, HANDSHAKE, CLOSE at least


def test_mptcpsec_options_in_the_tcp_header_are_no_longer_unknown(tmp_path: Path) -> None:
    pcap = tmp_path / "sample.pcap"
    res = run_cli("pcap", "--sample", "-o", str(pcap))
    assert res.returncode == 0, res.stderr
    rows = tshark_fields(pcap, "mptcpsec.type", "mptcpsec.subflow.id", "frame.number",
                         "mptcpsec.subflow.reason", "tcp.srcport",
                         extra=("-Y", "mptcpsec.subflow.id"))
    # The real connection (lab.sample): the MP_CAPABLE handshake record names subflow 0,
    # the JOIN SYN from 127.0.0.2 names subflow 1, and the CONTROL record that reports
    # the poisoned subflow 1 (MP_TCPRST + SUBFLOW, reason 1 = bad tag) travels on
    # subflow 0. Each shows the id twice, decoded from the record and from the TCP header.
    assert [r[0] for r in rows] == ["3", "6", "2"], rows
    assert [r[1] for r in rows] == ["0,0", "1,1", "1,1"], rows
    assert rows[2][3] == "1,1", rows  # the poison report's reason
    assert rows[1][4] != rows[0][4], rows  # the join is a new subflow (own port)
    assert rows[2][4] == rows[0][4], rows  # the report rides the clean subflow 0
    rows = rows[1:]
    verbose = subprocess.run([str(TSHARK), "-X", f"lua_script:{dissector()}", "-r", str(pcap),
                              "-V", "-Y", f"frame.number == {rows[1][2]}"],
                             capture_output=True, text=True, timeout=60).stdout
    assert "MPTCPsec option in the TCP header: SUBFLOW id 1" in verbose
    assert "MPTCPsec CONTROL record" in verbose and "Tag:" in verbose


@pytest.mark.skipif(os.geteuid() != 0, reason="capturing on the loopback needs root")
def test_a_kernel_capture_on_the_loopback_is_reassembled(procs: Processes,
                                                          tmp_path: Path) -> None:
    """Records split and merged by the kernel's segmentation (not our one-record-per-
    segment export) are reassembled: every record of the connection is found."""
    port = free_port()
    pcap, trace = tmp_path / "lo.pcap", tmp_path / "run.jsonl"
    cap = subprocess.Popen([str(TSHARK), "-i", "lo", "-f", f"tcp port {port}", "-w",
                            str(pcap), "-q"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        assert cap.stderr is not None
        while time.monotonic() < deadline:  # "Capturing on 'Loopback: lo'"
            line = cap.stderr.readline()
            if "Capturing on" in line or not line:
                break
        if cap.poll() is not None:
            pytest.skip(f"tshark cannot capture here: {cap.stderr.read().strip()}")
        server = procs.start("serve", "-l", f"127.0.0.1:{port}", "-l", f"127.0.0.2:{port}",
                             "--once")
        wait_listening("127.0.0.1", port, proc=server)
        wait_listening("127.0.0.2", port, proc=server)
        res = run_cli("connect", "-c", f"127.0.0.1:{port}", "-c", f"127.0.0.2:{port}",
                      "--verify", "1MB", "--trace", str(trace), "-q")
        assert res.returncode == 0, res.stderr
        server.wait(10)
        time.sleep(1.0)
    finally:
        cap.terminate()
        cap.wait(10)
    want = expected_records(trace)
    rows = tshark_fields(pcap, "mptcpsec.type", "mptcpsec.body_len", extra=("-Y", "mptcpsec"))
    got_types = [int(t) for row in rows for t in row[0].split(",") if t]
    got_lens = [int(n) for row in rows for n in row[1].split(",") if n]
    assert sorted(got_types) == sorted(int(r["type"]) for r in want)  # type: ignore[call-overload]
    assert sorted(got_lens) == sorted(int(r["body_len"]) for r in want)  # type: ignore[call-overload]

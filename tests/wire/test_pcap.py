"""pcap export: the writer, and a real two-subflow run read back by scapy and tshark."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

from mptcpsec.aio.capture import open_sink, pcap_file, trace_file, trace_to_pcap
from mptcpsec.cli import main as cli_main
from mptcpsec.crypto import active_backend_name
from mptcpsec.lab.sample import SampleRecord, SampleResult, run_sample
from mptcpsec.protocol.events import DataReinjected, SubflowPoisoned
from mptcpsec.wire import scapy_layers as sl
from mptcpsec.wire.header import HEADER_LEN, RecordType
from mptcpsec.wire.options import (
    AddAddr,
    Dss,
    MpJoinSyn,
    MpPrio,
    MpsSubflow,
    MpTcpRst,
    PoisonReason,
    RemoveAddr,
    TcpRstReason,
    decode_options,
    encode_options,
)
from mptcpsec.wire.pcap import (
    LINKTYPE_RAW,
    MAX_SEGMENT_PAYLOAD,
    MultiSink,
    PcapError,
    PcapWriter,
    RecordDecryptor,
    TraceWriter,
    build_ipv4_tcp,
    read_trace,
    tcp_option_field,
)
from mptcpsec.wire.records import Record, build_record, data_dss

C0, S0 = ("127.0.0.1", 40000), ("127.0.0.1", 5000)


# ----------------------------------------------------------------------------- writer units

def test_tcp_option_field_fits_40_bytes() -> None:
    dss = data_dss(1, 10, data_ack=2)  # 26 bytes
    rst, sub = MpTcpRst(3), MpsSubflow(1)  # 4 + 8
    prio = MpPrio(True)  # 3
    field = tcp_option_field(encode_options([dss, rst, sub, prio]))
    # dss (26) + rst (4) = 30; sub (8) would make 38, prio (3) 41: sub fits, prio does not
    assert field == dss.encode() + rst.encode() + sub.encode() + b"\x01\x01"
    assert len(field) == 40
    assert tcp_option_field(RemoveAddr(tuple(range(60))).encode()) == b""
    assert tcp_option_field(b"\x1e") == b""  # malformed area: nothing copied
    assert tcp_option_field(MpPrio().encode()) == b"\x1e\x03\x50\x01"


def test_build_ipv4_tcp_checksums() -> None:
    pkt = build_ipv4_tcp(C0, S0, 1, 2, 0x18, b"\x01\x01\x01\x01", b"payload", ip_id=9)
    parsed = IP(pkt)
    ip_ck, tcp_ck = parsed.chksum, parsed[TCP].chksum
    del parsed.chksum
    del parsed[TCP].chksum
    again = IP(bytes(parsed))
    assert (again.chksum, again[TCP].chksum) == (ip_ck, tcp_ck)
    with pytest.raises(PcapError):
        build_ipv4_tcp(("::1", 1), S0, 0, 0, 0)
    with pytest.raises(PcapError):
        build_ipv4_tcp(C0, S0, 0, 0, 0, b"\x01")


def test_writer_sequence_numbers_and_split(tmp_path: Path) -> None:
    small = build_record(RecordType.CONTROL, 0, [Dss(data_ack=5)], bytes(16))
    big = build_record(RecordType.DATA, 0, [data_dss(0, 65519)], bytes(65519 + 16))
    out = tmp_path / "w.pcap"
    with pcap_file(out) as w:
        w.subflow_open(0, C0, S0, ts=100.0)
        w.record(0, True, small, ts=100.1)
        w.record(0, False, big, ts=100.2)
        w.record(0, True, small, ts=100.3)
        w.subflow_close(0, ts=100.4)
        with pytest.raises(PcapError):
            w.record(0, True, small)
        with pytest.raises(PcapError):
            w.record(9, True, small)
    raw = out.read_bytes()
    assert struct.unpack("<IHHiIII", raw[:24])[6] == LINKTYPE_RAW
    pkts = [p[TCP] for p in rdpcap(str(out))]
    flags = [str(p.flags) for p in pkts]
    assert flags[:3] == ["S", "SA", "A"]
    assert flags[-3:] == ["FA", "FA", "A"]
    assert len(pkts) == 3 + 1 + 2 + 1 + 3  # the big record spans two segments
    syn, synack = pkts[0], pkts[1]
    c_next, s_next = syn.seq + 1, synack.seq + 1
    assert synack.ack == c_next
    data = pkts[3:7]
    assert (data[0].seq, data[0].ack) == (c_next, s_next)
    assert bytes(data[0].payload) == small
    assert data[1].seq == s_next and data[1].ack == c_next + len(small)
    assert len(data[1].payload) == MAX_SEGMENT_PAYLOAD
    assert data[2].seq == s_next + MAX_SEGMENT_PAYLOAD
    assert bytes(data[1].payload) + bytes(data[2].payload) == big
    assert sl.mptcp_options(data[1]) and not sl.mptcp_options(data[2])  # options on the first
    assert data[3].seq == c_next + len(small) and data[3].ack == s_next + len(big)
    assert pkts[-3].seq == c_next + 2 * len(small)


def test_writer_to_file_object_and_trace_round_trip(tmp_path: Path) -> None:
    rec = build_record(RecordType.CONTROL, 0, [AddAddr(1, "10.1.1.1", 80, bytes(8))], bytes(16))
    buf, trace = io.BytesIO(), io.StringIO()
    sink = MultiSink(PcapWriter(buf), TraceWriter(trace))
    sink.subflow_open(3, C0, S0, ts=5.0)
    sink.record(3, False, rec, ts=5.5)
    sink.subflow_close(3, reset=True, ts=6.0)
    sink.close()
    (tmp_path / "t.jsonl").write_text(trace.getvalue())
    assert trace_to_pcap(tmp_path / "t.jsonl", tmp_path / "t.pcap") == 1
    assert (tmp_path / "t.pcap").read_bytes() == buf.getvalue()
    pkts = rdpcap(str(tmp_path / "t.pcap"))
    assert str(pkts[-1][TCP].flags) == "RA"
    events = list(read_trace(io.StringIO(trace.getvalue())))
    assert [e["event"] for e in events] == ["subflow_open", "record", "subflow_close"]
    with pytest.raises(PcapError):
        list(read_trace(io.StringIO('{"event": "record", "subflow": 0, "from": "x", '
                                    '"record": "00"}\n')))
    with pytest.raises(PcapError):
        list(read_trace(io.StringIO('{"event": "subflow_open", "subflow": 0, '
                                    '"client": "nope", "server": "1.2.3.4:5"}\n')))


# ----------------------------------------------------------------------------- a real run

@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[SampleResult, Path, Path]:
    """One real connection over loopback, captured to pcap and to a JSON-lines trace."""
    d = tmp_path_factory.mktemp("sample")
    pcap, trace = d / "run.pcap", d / "run.jsonl"
    sink = MultiSink(pcap_file(pcap), trace_file(trace))
    try:
        result = run_sample(sink)
    finally:
        sink.close()
    return result, pcap, trace


def _payload_packets(pcap: Path) -> list[TCP]:
    return [p[TCP] for p in rdpcap(str(pcap)) if len(p[TCP].payload)]


def _stream(pieces: list[tuple[Dss, bytes]], start: int) -> bytes:
    """The byte stream from DATA (DSS, body) pieces: re-sent ranges counted once, by DSN."""
    by_dsn: dict[int, bytes] = {}
    for dss, body in pieces:
        assert dss.dsn is not None
        assert by_dsn.setdefault(dss.dsn, body) == body  # a re-sent range is the same bytes
    out = bytearray()
    for dsn in sorted(by_dsn):
        assert dsn == start + len(out), "a gap in the data sequence space"
        out += by_dsn[dsn]
    return bytes(out)


def _client_data(records: list[SampleRecord]) -> list[tuple[Dss, bytes]]:
    return [(next(o for o in r.options if isinstance(o, Dss)), r.plaintext) for r in records
            if r.type == RecordType.DATA and r.from_client and r.plaintext]


@pytest.mark.network
def test_sample_run_is_real_and_intact(sample: tuple[SampleResult, Path, Path]) -> None:
    result, _, _ = sample
    assert result.intact and result.backend == active_backend_name()  # C core by default
    assert result.subflows[0][0][0] == "127.0.0.1" and result.subflows[1][0][0] == "127.0.0.2"
    types = {r.type for r in result.records}
    assert types == {int(t) for t in RecordType}
    assert _stream(_client_data(result.records), result.client_idsn) == result.sent
    # the poison: exactly one record (the tampered one, on subflow 1) did not open; the
    # client reported the subflow on subflow 0 and re-sent what was in flight on it
    closed = [r for r in result.records if not r.opened]
    assert len(closed) == 1 and closed[0].subflow_id == result.poisoned == 1
    assert not closed[0].from_client and closed[0].type == RecordType.DATA
    assert any(isinstance(e, SubflowPoisoned) and e.subflow_id == 1 for e in result.events)
    assert any(isinstance(e, DataReinjected) for e in result.events)
    later = result.records[result.records.index(closed[0]) + 1:]
    assert all(r.subflow_id == 0 for r in later)  # nothing more on the poisoned subflow


@pytest.mark.network
def test_pcap_matches_records_read_by_scapy(sample: tuple[SampleResult, Path, Path]) -> None:
    result, pcap, _ = sample
    pkts = _payload_packets(pcap)
    assert len(pkts) == len(result.records)
    for pkt, rec in zip(pkts, result.records, strict=True):
        client, server = result.subflows[rec.subflow_id]
        src = client if rec.from_client else server
        assert (pkt.underlayer.src, pkt.sport) == src
        assert bytes(pkt.payload) == rec.wire
        # every MPTCP option of the record that fits is in the TCP header, dissected by scapy
        in_header = [sl.from_scapy(layer) for layer in sl.mptcp_options(pkt)]
        opts = decode_options(rec.wire[HEADER_LEN:HEADER_LEN + rec.wire[3]])
        assert in_header == list(rec.options) == opts
    first = next(r for r in result.records if r.type == RecordType.DATA and r.from_client)
    dss = first.options[0]
    assert isinstance(dss, Dss) and dss.dsn == result.client_idsn
    assert dss.data_ack == result.server_idsn
    add = next(o for r in result.records for o in r.options if isinstance(o, AddAddr))
    assert (str(add.address), add.port) == result.announced
    report = next(r for r in result.records if any(isinstance(o, MpTcpRst) for o in r.options))
    assert report.from_client and report.subflow_id == 0
    assert report.options[0] == MpTcpRst(reason=TcpRstReason.MPTCP_ERROR)
    assert report.options[1] == MpsSubflow(1, PoisonReason.AUTHENTICATION)
    join = next(r for r in result.records if r.type == RecordType.JOIN)
    assert isinstance(join.options[0], MpJoinSyn) and join.subflow_id == 1
    assert join.options[1] == MpsSubflow(1)


@pytest.mark.network
def test_trace_replays_to_the_same_pcap(sample: tuple[SampleResult, Path, Path],
                                        tmp_path: Path) -> None:
    _, pcap, trace = sample
    assert trace_to_pcap(trace, tmp_path / "again.pcap") == len(sample[0].records)
    assert (tmp_path / "again.pcap").read_bytes() == pcap.read_bytes()


@pytest.mark.network
def test_decryption_hook_writes_plaintext(sample: tuple[SampleResult, Path, Path],
                                          tmp_path: Path) -> None:
    result, _, trace = sample
    decryptor = RecordDecryptor(result.keys)
    out = tmp_path / "plain.pcap"
    trace_to_pcap(trace, out, transform=decryptor)
    decryptor.close()
    client_ports = {client[1] for client, _ in result.subflows.values()}
    sent = []
    for pkt in _payload_packets(out):
        rec = Record.decode(bytes(pkt.payload))
        if rec.type == RecordType.DATA and pkt.sport in client_ports and rec.body:
            sent.append((decode_options(rec.options)[0], rec.body))
        if rec.type in (RecordType.CONTROL, RecordType.KEY_UPDATE, RecordType.CLOSE):
            assert rec.body == b""  # opened: the tag is gone
    # including the records after each KEY_UPDATE and those re-sent after the poison
    assert _stream(sent, result.client_idsn) == result.sent
    # with no keys, records stay as they are
    same = RecordDecryptor(lambda *_: None)
    rec = result.records[5]
    assert same(rec.subflow_id, rec.from_client, rec.wire) == rec.wire


TSHARK = shutil.which("tshark")


@pytest.mark.network
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_tshark_decodes_the_options(sample: tuple[SampleResult, Path, Path]) -> None:
    result, pcap, _ = sample
    fields = ["tcp.options.mptcp.subtype", "tcp.options.mptcp.rawdataseqno",
              "tcp.options.mptcp.rawdataack", "tcp.options.mptcp.datalvllen",
              "tcp.options.mptcp.datafin.flag", "tcp.options.mptcp.ipv4",
              "tcp.options.mptcp.port", "tcp.options.mptcp.addrid",
              "tcp.options.mptcp.rst_reason", "tcp.options.mptcp.flag_T.flag",
              "tcp.options.mptcp.recvtok", "tcp.options.mptcp.sendrand",
              "tcp.options.mptcp.backup.flag", "tcp.len"]
    cmd = [TSHARK, "-r", str(pcap), "-Y", "tcp.len > 0", "-T", "fields", "-E", "separator=|",
           "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]
    assert len(rows) == len(result.records)
    checked = set()
    for row, rec in zip(rows, result.records, strict=True):
        assert int(row["tcp.len"]) == len(rec.wire)
        subtypes = [int(s) for s in row["tcp.options.mptcp.subtype"].split(",") if s]
        assert subtypes == [type(o).subtype for o in rec.options]
        for o in rec.options:
            if isinstance(o, Dss):
                if o.dsn is not None:
                    assert int(row["tcp.options.mptcp.rawdataseqno"]) == o.dsn
                    assert int(row["tcp.options.mptcp.datalvllen"]) == o.data_len
                    assert int(row["tcp.options.mptcp.datafin.flag"]) == int(o.data_fin)
                    checked.add("dsn")
                if o.data_ack is not None:
                    assert int(row["tcp.options.mptcp.rawdataack"]) == o.data_ack
                    checked.add("data_ack")
            elif isinstance(o, AddAddr):
                assert row["tcp.options.mptcp.ipv4"] == str(o.address)
                assert int(row["tcp.options.mptcp.port"]) == o.port
                assert int(row["tcp.options.mptcp.addrid"]) == o.address_id
                checked.add("add_addr")
            elif isinstance(o, MpTcpRst):
                assert int(row["tcp.options.mptcp.rst_reason"], 0) == o.reason
                assert row["tcp.options.mptcp.flag_T.flag"] in ("False", "0")
                checked.add("tcprst")
            elif isinstance(o, MpJoinSyn):
                assert int(row["tcp.options.mptcp.recvtok"]) == o.token
                assert int(row["tcp.options.mptcp.sendrand"].split(",")[0]) == o.nonce
                checked.add("join")
            elif isinstance(o, MpPrio):
                assert int(row["tcp.options.mptcp.backup.flag"]) == int(o.backup)
                checked.add("prio")
    assert checked == {"dsn", "data_ack", "add_addr", "tcprst", "join", "prio"}


# ----------------------------------------------------------------------------- the command

@pytest.mark.network
def test_cli_sample_and_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, trace = tmp_path / "cli.pcap", tmp_path / "cli.jsonl"
    assert cli_main(["pcap", "--sample", "-o", str(out), "--trace-out", str(trace),
                     "--summary", "--bytes", "20000"]) == 0
    text = capsys.readouterr().out
    assert "MpTcpRst(reason=1)" in text and "KEY_UPDATE" in text and "wrote" in text
    assert "JOIN" in text and "MpPrio(backup=True)" in text
    n_records = text.count("subflow ")
    assert len(_payload_packets(out)) == n_records
    assert cli_main(["pcap", "--trace", str(trace), "-o", str(tmp_path / "t.pcap")]) == 0
    assert (tmp_path / "t.pcap").read_bytes() == out.read_bytes()


def test_cli_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["pcap", "--help"])
    text = capsys.readouterr().out
    for word in ("--sample", "--trace", "tshark", "127.0.0.2", "RecordDecryptor", "SPEC.md"):
        assert word in text


def test_open_sink(tmp_path: Path) -> None:
    assert open_sink() is None
    assert isinstance(open_sink(pcap=tmp_path / "a.pcap"), PcapWriter)
    both = open_sink(pcap=tmp_path / "b.pcap", trace=tmp_path / "b.jsonl")
    assert isinstance(both, MultiSink)
    both.subflow_open(0, C0, S0, ts=1.0)
    both.close()
    assert (tmp_path / "b.jsonl").read_text().count("subflow_open") == 1
    assert len(rdpcap(str(tmp_path / "b.pcap"))) == 3
    # the writers in wire/ take file objects; paths are opened by mptcpsec.aio.capture
    for writer in (PcapWriter, TraceWriter):
        with pytest.raises(PcapError, match="not a path"):
            writer(str(tmp_path / "c"))  # type: ignore[arg-type]
        with pytest.raises(PcapError, match="write"):
            writer(42)  # type: ignore[arg-type]
    assert not (tmp_path / "c").exists()

"""`mptcpsec pcap`: write Wireshark-readable captures of MPTCPsec records."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from ..aio.capture import pcap_file, trace_file
from ..errors import MptcpsecError
from ..wire.header import HEADER_LEN, RecordHeader, RecordType
from ..wire.options import decode_options, describe
from ..wire.pcap import (
    MultiSink,
    PcapError,
    RecordDecryptor,
    RecordSink,
    read_trace,
    replay_trace,
)
from ._common import output_file
from ._dissector import PrintDissectorPath

DESCRIPTION = """\
Write a classic pcap in which every MPTCPsec record is one IPv4/TCP segment of its
real subflow (addresses, ports, SYN/SYN-ACK/ACK, consistent sequence and ack numbers),
with the record's MPTCP options copied into the TCP option field, so that Wireshark
and tshark decode them: DSS data sequence numbers and DATA_ACKs, ADD_ADDR, MP_JOIN,
MP_PRIO, MP_TCPRST reasons. The record itself (header, options, ciphertext and tag)
is the segment's payload. Layout: papers/SPEC.md, section 9.

Sources (pick one):
  --sample        run a real connection now (mptcpsec.lab.sample) and capture the
                  client's records: a server on 127.0.0.1 and 127.0.0.2, a TLS 1.3
                  (or psk) key exchange on subflow 0, ADD_ADDR, DATA with 64-bit DSNs
                  and its echo, a join from 127.0.0.2 (through a relay), MP_PRIO,
                  KEY_UPDATEs, one bit flipped by the relay that poisons subflow 1
                  (MP_TCPRST report, data re-sent on subflow 0), DATA_FIN, CLOSE
  --trace FILE    convert a JSON-lines records trace (events subflow_open, record,
                  subflow_close; see mptcpsec.wire.pcap.TraceWriter)
"""

EPILOG = """\
examples:
  mptcpsec pcap --sample -o sample.pcap --summary
  tshark -r sample.pcap -Y tcp.options.mptcp.rawdataseqno \\
      -T fields -e tcp.options.mptcp.rawdataseqno -e tcp.options.mptcp.rawdataack
  mptcpsec pcap --trace run.jsonl -o run.pcap

Payloads are the encrypted records as sent, unless --keylog is given: then each
record's payload is replaced by its plaintext, decrypted with the connection secret
from the key log (SSLKEYLOGFILE). Programs pass mptcpsec.wire.pcap.RecordDecryptor
as the writer's transform for the same effect.
"""


def _summary_line(subflow: int, from_client: bool, record: bytes) -> str:
    arrow = "C->S" if from_client else "S->C"
    try:
        h = RecordHeader.unpack(record)
        name = RecordType(h.type).name if h.type in RecordType._value2member_map_ else str(h.type)
        opts = decode_options(record[HEADER_LEN:HEADER_LEN + h.opt_len])
        text = " ".join(describe(o) for o in opts) or "-"
        return f"subflow {subflow} {arrow} {name:<10} flags={h.flags:#04x} " \
               f"body={h.body_len:<6} {text}"
    except MptcpsecError as exc:
        return f"subflow {subflow} {arrow} undecodable record: {exc}"


def _run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    sinks: list[RecordSink] = []
    transform = None
    if args.keylog:
        if not args.trace:
            print("mptcpsec pcap: --keylog needs --trace (a capture of a real connection)",
                  file=sys.stderr)
            return 2
        transform = _keylog_transform(args.trace, args.keylog)
    writer = pcap_file(out, transform=transform)
    sinks.append(writer)
    if args.trace_out:
        sinks.append(trace_file(args.trace_out))
    sink = MultiSink(*sinks)
    lines: list[str] = []
    try:
        if args.sample:
            from ..lab.sample import run_sample

            result = run_sample(sink, algorithm=args.alg, payload_len=args.bytes,
                                key_exchange=args.key_exchange)
            if not result.intact:
                print("mptcpsec pcap: the echo came back altered", file=sys.stderr)
                return 1
            lines = [_summary_line(r.subflow_id, r.from_client, r.wire) for r in result.records]
            source = (f"sample connection: {result.key_exchange} key exchange, "
                      f"{len(result.subflows)} subflows, {result.poisoned is not None:d} poisoned, "
                      f"{len(result.sent)} bytes echoed intact, {result.algorithm} on the "
                      f"'{result.backend}' backend")
            count = len(result.records)
        else:
            with open(args.trace, encoding="utf-8") as f:
                count = replay_trace(f, sink, args.trace)
            if args.summary:
                with open(args.trace, encoding="utf-8") as f:
                    lines = [_summary_line(ev["subflow"], ev["from"] == "client", ev["record"])
                             for ev in read_trace(f, args.trace) if ev["event"] == "record"]
            source = f"trace {args.trace}"
    except PcapError as exc:
        print(f"mptcpsec pcap: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mptcpsec pcap: {exc}", file=sys.stderr)
        return 1
    finally:
        sink.close()
    if args.summary:
        print("\n".join(lines))
    print(f"wrote {out}: {count} records, {writer.packets} packets ({source})")
    return 0


def _keylog_transform(trace: str, keylog_file: str) -> RecordDecryptor:
    """Decrypt the trace's records with the connection secret found in a key log."""
    from ..aio.keylog import load_keylog
    from ..wire.decrypt import KeylogKeys

    with open(trace, encoding="utf-8") as f:
        info = next((ev for ev in read_trace(f, trace) if ev["event"] == "connection"), None)
    if info is None:
        raise MptcpsecError(f"{trace} has no connection event (connection id, nonces): "
                            "write it with --trace from a connection")
    keys = KeylogKeys(load_keylog(keylog_file), info)
    return RecordDecryptor(keys, observer=keys.observe,
                           protected_mode=info.get("mode", "mptcpsec") == "mptcpsec")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "pcap", help="write a Wireshark-readable pcap of MPTCPsec records",
        description=DESCRIPTION, epilog=textwrap.dedent(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sample", action="store_true",
                     help="run a real two-subflow connection on loopback and capture it")
    src.add_argument("--trace", metavar="FILE", help="convert a JSON-lines records trace")
    p.add_argument("-o", "--output", metavar="FILE.pcap", default="mptcpsec.pcap", type=output_file,
                   help="pcap file to write (default: %(default)s)")
    p.add_argument("--trace-out", metavar="FILE", type=output_file,
                   help="also write the records as a JSON-lines trace (replayable with --trace)")
    p.add_argument("--keylog", metavar="FILE",
                   help="with --trace: decrypt the records with the connection secret from "
                        "this key log (written when SSLKEYLOGFILE was set) and export "
                        "plaintext payloads")
    p.add_argument("--summary", action="store_true",
                   help="print one line per record: subflow, direction, type, decoded options")
    p.add_argument("--alg", default="aes-128-gcm",
                   choices=["aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"],
                   help="AEAD for --sample (default: %(default)s)")
    p.add_argument("--key-exchange", choices=["tls", "psk"], default="tls",
                   help="key exchange of the --sample connection (default: %(default)s)")
    p.add_argument("--bytes", type=int, default=96 * 1024, metavar="N",
                   help="bytes the --sample client sends and gets echoed, >= 8192; a few KiB "
                        "more if the echo needs them to cross subflow 1 (default: %(default)s)")
    p.add_argument("--dissector-path", action=PrintDissectorPath)
    p.set_defaults(func=_run)

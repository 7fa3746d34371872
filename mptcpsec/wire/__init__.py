"""The bytes MPTCPsec speaks (papers/SPEC.md sections 2, 3, 5, 8, 9).

- ``header``: the fixed 6-byte record header shared with the C core.
- ``options``: the RFC 8684 MPTCP options (kind 30) and the MPTCPsec SUBFLOW and WINDOW
  options, one frozen dataclass per form, strict typed decoding.
- ``records``: record framing, the per-type rules, the incremental ``RecordParser``, and
  the ``(type, flags, options, plaintext)`` specs the crypto backend seals.
- ``scapy_layers``: scapy layers for every option, registered into scapy's TCP (imports scapy).
- ``pcap``: record sinks that write Wireshark-readable pcap or a JSON-lines trace to file
  objects (``mptcpsec.aio.capture`` opens the files), and the offline decryption hook.
- ``decrypt``: the keys of a capture, from a key log and the capture's public facts.

Only ``header``, ``options`` and ``records`` are imported here. Nothing in ``wire`` opens
a file, reads the environment or touches a socket (``pcap --sample`` lives in
``mptcpsec.lab.sample``).
"""

from .header import RecordHeader, RecordType
from .options import MptcpOption, decode_options, encode_options
from .records import Record, RecordParser, check_record

__all__ = [
    "MptcpOption",
    "Record",
    "RecordHeader",
    "RecordParser",
    "RecordType",
    "check_record",
    "decode_options",
    "encode_options",
]

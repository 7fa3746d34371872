"""The C core and the Python code agree on every number they share.

Numbers come from the compiled module (cffi exports the header's #defines and enums as
``lib`` attributes) and from csrc/mptcpsec_core.h itself, so a header edit that is not
rebuilt, or a Python constant that drifts, fails here. Record type codes are not
constants of the C core (Python hands it type bit masks), so they are checked through
what the core writes and accepts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mptcpsec.crypto import Algorithm, aead, get_backend
from mptcpsec.crypto.aead import FailureReason
from mptcpsec.crypto.backend_c import FAILURE_CODES
from mptcpsec.wire import header
from mptcpsec.wire.header import RecordHeader, RecordType, type_mask

core = pytest.importorskip("mptcpsec._core", reason="the C core is not built")
lib, ffi = core.lib, core.ffi
HEADER = (Path(__file__).resolve().parents[2] / "csrc" / "mptcpsec_core.h").read_text()


def _header_values() -> dict[str, int]:
    """#define MPS_X <int> and enum MPS_X = <int> from the C header."""
    values = {m[0]: int(m[1], 0) for m in re.findall(r"#define (MPS_\w+) (0x[0-9a-f]+|\d+)\b",
                                                     HEADER)}
    for m in re.findall(r"(MPS_\w+)\s*=\s*(-?\d+)", HEADER):
        values[m[0]] = int(m[1])
    return values


def test_compiled_module_matches_the_header() -> None:
    values = _header_values()
    assert len(values) >= 26  # 7 sizes and limits, 3 algorithms, MPS_OK and 15 errors
    for name, value in values.items():
        assert getattr(lib, name) == value, name
    assert lib.MPS_MAX_PLAINTEXT == lib.MPS_MAX_BODY_LEN - lib.MPS_TAG_LEN
    assert 2 ** (8 * ffi.sizeof("size_t")) - 1 == lib.MPS_NO_PATCH


def test_record_layout_sizes() -> None:
    assert (lib.MPS_HEADER_LEN, lib.MPS_TAG_LEN, lib.MPS_IV_LEN, lib.MPS_VERSION) == \
        (header.HEADER_LEN, header.TAG_LEN, header.IV_LEN, header.VERSION)
    assert (aead.TAG_LEN, aead.IV_LEN) == (header.TAG_LEN, header.IV_LEN)
    assert (lib.MPS_MAX_OPT_LEN, lib.MPS_MAX_BODY_LEN, lib.MPS_MAX_PLAINTEXT) == \
        (header.MAX_OPT_LEN, header.MAX_BODY_LEN, header.MAX_PLAINTEXT)
    # the descriptor structs the batch calls exchange with Python (header comments)
    assert ffi.sizeof("mps_rec_in") == 16 and ffi.sizeof("mps_rec_out") == 12


def test_algorithm_ids() -> None:
    c_ids = {name: getattr(lib, name) for name in dir(lib)
             if name in ("MPS_AES_128_GCM", "MPS_AES_256_GCM", "MPS_CHACHA20_POLY1305")}
    assert c_ids == {"MPS_" + alg.name: alg.core_id for alg in Algorithm}
    for alg in Algorithm:
        assert lib.mps_key_len(alg.core_id) == alg.key_len


def test_failure_reasons() -> None:
    assert set(FAILURE_CODES) == set(FailureReason)
    errors = {name for name in _header_values() if name.startswith("MPS_ERR_")}
    assert set(FAILURE_CODES.values()) <= errors
    codes = [getattr(lib, name) for name in FAILURE_CODES.values()]
    assert len(set(codes)) == len(codes) and all(c < 0 for c in codes)


@pytest.mark.parametrize("rtype", list(RecordType))
def test_record_type_codes_pass_through_the_core(rtype: RecordType) -> None:
    be = get_backend("c")
    key, iv = bytes(16), bytes(12)
    sealer = be.sealer("aes-128-gcm", key, iv)
    wire = sealer.seal_records([(int(rtype), 0, b"", b"x")])
    h = RecordHeader.unpack(wire)
    assert (wire[0], h.type, h.body_len) == (header.VERSION, int(rtype), 1 + header.TAG_LEN)
    # bit t of the allowed mask admits type t, and only it
    ok = be.opener("aes-128-gcm", key, iv).open_records(bytearray(wire),
                                                         allowed_types=type_mask([rtype]))
    assert ok.reason is None and len(ok.records) == 1
    others = [t for t in RecordType if t != rtype]
    bad = be.opener("aes-128-gcm", key, iv).open_records(bytearray(wire),
                                                          allowed_types=type_mask(others))
    assert bad.reason is FailureReason.TYPE

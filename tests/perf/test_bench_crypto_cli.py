"""`mptcpsec bench crypto` keeps working: a tiny run of every implementation."""

from __future__ import annotations

import json

import pytest

from mptcpsec.cli import main
from mptcpsec.perf.crypto import openssl_available


def test_bench_crypto_json_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "crypto", "--json", "--quiet", "--repeats", "1", "--seconds", "0.01",
               "--sizes", "64", "--ops", "seal", "--algs", "chacha20-poly1305"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    impls = {r["impl"] for r in rows}
    expected = {"core-batch", "core", "cryptography", "pynacl"}
    if openssl_available():
        expected.add("openssl-speed")
    assert impls == expected
    for r in rows:
        assert set(r) >= {"alg", "op", "size", "impl", "MBps"}
        assert r["alg"] == "chacha20-poly1305" and r["op"] == "seal" and r["size"] == 64
        assert r["MBps"] > 0


def test_bench_crypto_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "crypto", "--algs", "rot13"])
    assert "unknown: rot13" in capsys.readouterr().err

"""`mptcpsec bench` help and the crypto bench's note on the two OpenSSL builds."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from .conftest import run_cli


@pytest.mark.parametrize("bench,options", [
    ("handshake", ["--fast-rtt-ms", "--slow-rtt-ms", "--key-exchanges", "--repeats"]),
    ("scale", ["--connections", "--key-exchange", "--echo-bytes"]),
    ("failover", ["--key-exchange", "--rtt-ms"]),
    ("crypto", ["--sizes", "--algs", "--ops", "--impls"]),
])
def test_every_option_has_help_and_its_default(bench: str, options: list[str]) -> None:
    r = run_cli("bench", bench, "--help")
    assert r.returncode == 0, r.stderr
    text = re.sub(r"\s+", " ", r.stdout)
    for opt in options:
        m = re.search(re.escape(opt) + r" (?:[A-Z_]+|\{[^}]*\}) ([^-].*?)\(default: ([^)]*)\)",
                      text)
        assert m is not None, (opt, text)
        assert m.group(1).strip(), f"{opt} has no help text"
    assert "('" not in r.stdout and "(64," not in r.stdout  # no Python tuples


def test_crypto_defaults_are_written_as_typed() -> None:
    r = run_cli("bench", "crypto", "--help")
    text = re.sub(r"\s+", " ", r.stdout)
    assert "(default: 64,1400,16384)" in text
    assert "(default: seal,open)" in text


def test_soak_options_have_help_and_defaults() -> None:
    r = subprocess.run([sys.executable, "-m", "mptcpsec.lab.soak", "soak", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = re.sub(r"\s+", " ", r.stdout)
    for opt, default in [("--connections", "100"), ("--duration", "60.0"),
                         ("--fail-every", "4.0"), ("--down-for", "1.5")]:
        assert re.search(re.escape(opt) + r" [A-Z_]+ \w.*?\(default: " + re.escape(default),
                         text), (opt, text)


def test_crypto_bench_names_both_openssl_builds() -> None:
    args = ["bench", "crypto", "--sizes", "16384", "--algs", "aes-128-gcm", "--ops", "seal",
            "--impls", "core-batch,cryptography", "--repeats", "1", "--seconds", "0.05",
            "--quiet"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    from cryptography.hazmat.backends.openssl.backend import backend

    crypt = backend.openssl_version_text()
    assert f"cryptography's wheel bundles {crypt}" in re.sub(r"\s+", " ", r.stdout)
    m = re.search(r"C core links (OpenSSL \S+)", r.stdout)
    assert m is not None, r.stdout
    if m.group(1) != " ".join(crypt.split()[:2]):
        assert "Different OpenSSL builds" in r.stdout
    doc = json.loads(run_cli(*args, "--json").stdout)
    assert doc["openssl"]["cryptography"] == crypt
    assert doc["openssl"]["core"].startswith("OpenSSL ")

"""Key logging: lines written only with SSLKEYLOGFILE, parsed back into subflow keys; and
keys appear nowhere else (no files, no reprs)."""

from __future__ import annotations

import builtins
import io
import os
from typing import Any

import pytest

from mptcpsec.crypto import keylog
from mptcpsec.crypto.certs import CertificateBundle
from mptcpsec.crypto.keyschedule import Role, Secret
from mptcpsec.crypto.psk import PskConfig, PskKeyExchange
from mptcpsec.crypto.splitpath import SplitPathClient, SplitPathConfig, SplitPathServer
from mptcpsec.crypto.tls_keys import TlsConfig, TlsKeyExchange


def tls_pair(bundle: CertificateBundle) -> tuple[TlsKeyExchange, TlsKeyExchange]:
    return (TlsKeyExchange(TlsConfig(Role.CLIENT, pin_sha256=bundle.fingerprint)),
            TlsKeyExchange(TlsConfig(Role.SERVER, cert_pem=bundle.cert_pem,
                                     key_pem=bundle.key_pem)))


def all_pairs(bundle: CertificateBundle) -> list[tuple[Any, Any]]:
    key = Secret(bytes(range(32)))
    return [
        tls_pair(bundle),
        (SplitPathClient(SplitPathConfig(Role.CLIENT)),
         SplitPathServer(SplitPathConfig(Role.SERVER))),
        (PskKeyExchange(PskConfig(Role.CLIENT, key)), PskKeyExchange(PskConfig(Role.SERVER, key))),
    ]


def test_keylog_lines_and_offline_key_recovery(kx: Any, self_signed: CertificateBundle,
                                               tmp_path: Any, monkeypatch: Any) -> None:
    path = tmp_path / "keys.log"
    monkeypatch.setenv(keylog.ENV_VAR, str(path))
    results = []
    for client, server in all_pairs(self_signed):
        c, s = kx.pump_in_memory(client, server)
        assert c.connection_secret == s.connection_secret
        results.append(c)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    text = path.read_text()
    for label in ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                  "EXPORTER_SECRET", "CLIENT_TRAFFIC_SECRET_0", keylog.MPTCPSEC_LABEL):
        assert label in text
    log = keylog.load_keylog(path)
    for c in results:
        line = f"{keylog.MPTCPSEC_LABEL} {c.connection_id.hex()} {c.connection_secret.buffer.hex()}"
        assert line in text.splitlines()
        live = c.schedule("chacha20-poly1305").subflow_keys(0, c.client_nonce, c.server_nonce)
        offline = keylog.subflow_keys_from_keylog(log, c.connection_id, 0, c.client_nonce,
                                                  c.server_nonce, "chacha20-poly1305")
        assert offline.c2s.key == live.c2s.key and offline.s2c.iv == live.s2c.iv
        live.c2s.update()
        again = keylog.subflow_keys_from_keylog(log, c.connection_id, 0, c.client_nonce,
                                                c.server_nonce, "chacha20-poly1305", generation=1)
        assert again.c2s.key == live.c2s.key
    # tls mode: the standard EXPORTER_SECRET line alone is enough
    tls_result = results[0]
    only_tls = keylog.parse_keylog("\n".join(
        ln for ln in text.splitlines() if not ln.startswith(keylog.MPTCPSEC_LABEL)))
    assert only_tls.connection_secret(tls_result.connection_id) == tls_result.connection_secret


def test_keylog_parser_rejects_garbage(tmp_path: Any) -> None:
    with pytest.raises(keylog.KeyLogError):
        keylog.parse_keylog("MPTCPSEC_SECRET abcd")
    with pytest.raises(keylog.KeyLogError):
        keylog.parse_keylog("MPTCPSEC_SECRET zz 00")
    with pytest.raises(keylog.KeyLogError):
        keylog.parse_keylog("MPTCPSEC_SECRET 00 0011")
    with pytest.raises(keylog.KeyLogError):
        keylog.load_keylog(tmp_path / "missing")
    log = keylog.parse_keylog("# comment\n\nCLIENT_RANDOM 00 11\n")
    with pytest.raises(keylog.KeyLogError):
        log.connection_secret(b"\x01")
    assert repr(log) == "KeyLog(tls_lines=1, mptcpsec_lines=0)"


def test_nothing_is_written_without_sslkeylogfile(kx: Any, self_signed: CertificateBundle,
                                                  tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv(keylog.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    writes: list[str] = []
    real_open, real_os_open, real_io_open = builtins.open, os.open, io.open

    def spy_open(file: Any, mode: str = "r", *a: Any, **kw: Any) -> Any:
        if any(ch in mode for ch in "wax+"):
            writes.append(str(file))
        return real_open(file, mode, *a, **kw)

    def spy_os_open(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND):
            writes.append(str(path))
        return real_os_open(path, flags, *a, **kw)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    try:
        for client, server in all_pairs(self_signed):
            c, s = kx.pump_in_memory(client, server)
            assert c.connection_secret == s.connection_secret
            sched = c.schedule()
            sched.subflow_keys(0, c.client_nonce, c.server_nonce)
            sched.close()
            client.close()
            server.close()
    finally:
        monkeypatch.setattr(io, "open", real_io_open)
    assert writes == []
    assert list(tmp_path.iterdir()) == []


def test_results_hide_and_wipe_secrets(kx: Any, self_signed: CertificateBundle) -> None:
    for client, server in all_pairs(self_signed):
        c, s = kx.pump_in_memory(client, server)
        secret_hex = c.connection_secret.buffer.hex()
        for obj in (c, s, c.connection_secret, client, server, client.config, server.config):
            assert secret_hex not in repr(obj) and secret_hex[:16] not in str(obj)
        bufs = [c.connection_secret.buffer, s.connection_secret.buffer]
        client.close()
        server.close()
        assert all(b == bytearray(32) for b in bufs), c.mode

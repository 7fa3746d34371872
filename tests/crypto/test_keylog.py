"""Key logging: lines go to the writable object the caller passes (never to a file the key
exchange opens), parse back into subflow keys; the adapter opens $SSLKEYLOGFILE; keys
appear nowhere else (no files, no reprs)."""

from __future__ import annotations

import builtins
import io
import os
from typing import Any

import pytest

from mptcpsec.aio.keylog import ENV_VAR, KeyLogFile, load_keylog, open_key_log, with_key_log
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


def all_pairs(bundle: CertificateBundle, log: Any = None) -> list[tuple[Any, Any]]:
    key = Secret(bytes(range(32)))
    client_tls, server_tls = tls_pair(bundle)
    if log is not None:
        client_tls.config.keylog_file = log
    return [
        (client_tls, server_tls),
        (SplitPathClient(SplitPathConfig(Role.CLIENT, keylog_file=log)),
         SplitPathServer(SplitPathConfig(Role.SERVER))),
        (PskKeyExchange(PskConfig(Role.CLIENT, key, keylog_file=log)),
         PskKeyExchange(PskConfig(Role.SERVER, key))),
    ]


def test_keylog_lines_and_offline_key_recovery(kx: Any, self_signed: CertificateBundle) -> None:
    log_text = io.StringIO()
    results = []
    for client, server in all_pairs(self_signed, log_text):
        c, s = kx.pump_in_memory(client, server)
        assert c.connection_secret == s.connection_secret
        results.append(c)
    text = log_text.getvalue()
    assert text.endswith("\n") and all(len(ln.split()) == 3 for ln in text.splitlines())
    for label in ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                  "EXPORTER_SECRET", "CLIENT_TRAFFIC_SECRET_0", keylog.MPTCPSEC_LABEL):
        assert label in text
    log = keylog.parse_keylog(text)
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


def test_key_log_file_from_the_adapter(kx: Any, self_signed: CertificateBundle,
                                       tmp_path: Any) -> None:
    path = tmp_path / "keys.log"
    assert open_key_log(environ={}) is None
    opened = open_key_log(environ={ENV_VAR: str(path)})
    assert isinstance(opened, KeyLogFile) and opened is open_key_log(path)  # one per path
    for client, server in all_pairs(self_signed, opened):
        kx.pump_in_memory(client, server)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    log = load_keylog(path)
    assert len(log.mptcpsec) == 3 and any(label == "EXPORTER_SECRET" for label, _ in log.tls)
    opened.close()
    with pytest.raises(keylog.KeyLogError, match="closed"):
        opened.write("X 00 00\n")
    with pytest.raises(keylog.KeyLogError, match="cannot open"):
        KeyLogFile(tmp_path / "no-such-dir" / "keys.log")


def test_key_log_takes_an_object_not_a_path(tmp_path: Any) -> None:
    for wrong in (str(tmp_path / "k"), tmp_path / "k", b"k"):
        with pytest.raises(keylog.KeyLogError, match="not a path"):
            PskConfig(Role.CLIENT, Secret(bytes(32)), keylog_file=wrong)  # type: ignore[arg-type]
    with pytest.raises(keylog.KeyLogError, match="write"):
        SplitPathConfig(Role.CLIENT, keylog_file=42)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_with_key_log_fills_only_the_chosen_exchange() -> None:
    from mptcpsec.protocol.config import ConnectionConfig

    out = io.StringIO()
    sp = with_key_log(ConnectionConfig(key_exchange="split-path"), out)
    assert sp.split_path is not None and sp.split_path.keylog_file is out
    mine = io.StringIO()
    psk = ConnectionConfig(key_exchange="psk",
                           psk=PskConfig(Role.CLIENT, Secret(bytes(32)), keylog_file=mine))
    assert with_key_log(psk, out).psk.keylog_file is mine  # type: ignore[union-attr]
    plain = ConnectionConfig(key_exchange="psk", psk=PskConfig(Role.CLIENT, Secret(bytes(32))))
    filled = with_key_log(plain, out)
    assert filled.psk.keylog_file is out and plain.psk.keylog_file is None  # type: ignore[union-attr]
    assert with_key_log(plain, None) is plain


def test_keylog_parser_rejects_garbage(tmp_path: Any) -> None:
    with pytest.raises(keylog.KeyLogError):
        keylog.parse_keylog("MPTCPSEC_SECRET abcd")
    with pytest.raises(keylog.KeyLogError):
        keylog.parse_keylog("MPTCPSEC_SECRET zz 00")
    with pytest.raises(keylog.KeyLogError):
        keylog.parse_keylog("MPTCPSEC_SECRET 00 0011")
    with pytest.raises(keylog.KeyLogError):
        load_keylog(tmp_path / "missing")
    log = keylog.parse_keylog("# comment\n\nCLIENT_RANDOM 00 11\n")
    with pytest.raises(keylog.KeyLogError):
        log.connection_secret(b"\x01")
    assert repr(log) == "KeyLog(tls_lines=1, mptcpsec_lines=0)"


def test_key_exchanges_never_open_files(kx: Any, self_signed: CertificateBundle,
                                        tmp_path: Any, monkeypatch: Any) -> None:
    # Even with $SSLKEYLOGFILE set: only the adapter reads it.
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "keys.log"))
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

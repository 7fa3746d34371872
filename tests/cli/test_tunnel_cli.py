"""`mptcpsec tunnel` / `gateway` as a user meets them: outputs checked up front, --config,
and a hint when the gateway cannot be reached (the words `connect` uses)."""

from __future__ import annotations

from pathlib import Path

from .conftest import free_port, run_cli

PSK = {"MPTCPSEC_PSK": "ab" * 32}


def test_tunnel_stdio_to_no_gateway_says_so() -> None:
    port = free_port()  # nothing listens there
    r = run_cli("tunnel", "-c", f"127.0.0.1:{port}", "-k", "psk", "--stdio", "127.0.0.1:22",
                "--connect-timeout", "3", env=PSK, input="", timeout=60)
    assert r.returncode == 1
    assert "gateway unreachable" in r.stderr
    assert "hint: connection refused at 127.0.0.1" in r.stderr
    assert "is `mptcpsec gateway` running there" in r.stderr
    assert "Traceback" not in r.stderr


def test_unwritable_outputs_fail_before_running(tmp_path: Path) -> None:
    bad = str(tmp_path / "no" / "x")
    for cmd in (["tunnel", "-c", "127.0.0.1:9", "-k", "psk", "--socks", "127.0.0.1:1080"],
                ["gateway", "-l", "127.0.0.1:9", "-k", "psk", "--allow", "127.0.0.1"]):
        for opt in ("--pcap", "--trace", "--keylog"):
            r = run_cli(*cmd, opt, bad, env=PSK, timeout=30)
            assert r.returncode == 2, (cmd, opt, r.stderr)
            assert "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_config_file_reaches_tunnel(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    port = free_port()
    cfg.write_text(f'[tunnel]\nconnect = ["127.0.0.1:{port}"]\nkey-exchange = "psk"\n'
                   'connect-timeout = 2.0\nstdio = "127.0.0.1:22"\n')
    r = run_cli("tunnel", "--config", str(cfg), env=PSK, input="", timeout=60)
    assert r.returncode == 1 and f"127.0.0.1:{port}" in r.stderr, r.stderr
    cfg.write_text("[tunnel]\nno-such-option = 1\n")
    r = run_cli("tunnel", "--config", str(cfg), timeout=30)
    assert r.returncode == 2 and "[tunnel] has no option --no-such-option" in r.stderr

"""Argument types and configuration building shared by the subcommands."""

from __future__ import annotations

import argparse

import pytest

from mptcpsec.cli import build_parser
from mptcpsec.cli._common import CliError, address, build_config, size


@pytest.mark.parametrize(("text", "value"), [
    ("4000000", 4_000_000), ("20MB", 20_000_000), ("20M", 20_000_000), ("500k", 500_000),
    ("1MiB", 1 << 20), ("1.5GB", 1_500_000_000), ("64KiB", 65536),
])
def test_sizes(text: str, value: int) -> None:
    assert size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1", "5 parsecs"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        size(text)


def test_addresses() -> None:
    assert address("127.0.0.2:7000") == ("127.0.0.2", 7000)
    assert address("[::1]:80") == ("::1", 80)
    assert address("7000", default_host="127.0.0.1") == ("127.0.0.1", 7000)
    for bad in ("7000", "host:", "host:99999", ":80"):
        with pytest.raises(argparse.ArgumentTypeError):
            address(bad)


def test_configs_for_every_key_exchange(tmp_path, monkeypatch) -> None:
    parser = build_parser()
    monkeypatch.setenv("MPTCPSEC_PSK", "ab" * 32)
    cfg, _ = build_config(parser.parse_args(["connect", "-c", "127.0.0.1:1", "-k", "psk"]),
                          "client")
    assert cfg.psk is not None and len(cfg.psk.psk) == 32
    args = parser.parse_args(["serve", "-l", "127.0.0.1:1", "-k", "tls"])
    cfg, info = build_config(args, "server")
    assert cfg.tls is not None and info["self_signed"] and len(info["fingerprint"]) == 64
    args = parser.parse_args(["serve", "-l", "127.0.0.1:1", "--identity",
                              str(tmp_path / "id")])
    cfg, info = build_config(args, "server")
    assert cfg.split_path is not None and cfg.split_path.identity_seed is not None
    assert len(info["identity"]) == 64
    args = parser.parse_args(["connect", "-c", "127.0.0.1:1", "-k", "tls"])
    with pytest.raises(CliError, match="--pin"):
        build_config(args, "client")
    args = parser.parse_args(["serve", "-l", "127.0.0.1:1", "-k", "tls", "--client-cert"])
    with pytest.raises(CliError, match="--cafile or --pin"):
        build_config(args, "server")
    (tmp_path / "bad.id").write_text("not hex")
    args = parser.parse_args(["serve", "-l", "127.0.0.1:1", "--identity",
                              str(tmp_path / "bad.id")])
    with pytest.raises(CliError, match="delete it"):
        build_config(args, "server")


def test_refusal_log_is_rate_limited() -> None:
    import logging

    from mptcpsec.cli._logging import RateLimited

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("test.ratelimit")
    logger.addHandler(Keep())
    now = [0.0]
    limiter = RateLimited(logger, burst=3, period=1.0, clock=lambda: now[0])
    for i in range(100):
        limiter.warning(f"refused {i}")
    assert records == ["refused 0", "refused 1", "refused 2"]
    now[0] = 1.5
    limiter.warning("refused later")
    assert records[3] == "(97 more refused in the last 2 s, not logged)"
    assert records[4] == "refused later" and limiter.suppressed == 0


def test_config_values_are_typed_like_the_command_line(tmp_path) -> None:
    from mptcpsec.cli import _config

    parser = build_parser()
    doc = {"timeout": 3, "connect": {"connect": ["127.0.0.1:7000", "[::1]:7001"],
                                     "no-join": True, "verify": "2MB", "key-exchange": "psk"}}
    _config.apply(parser, "connect", doc, "c.toml")
    args = parser.parse_args(["connect"])
    assert args.connect == [("127.0.0.1", 7000), ("::1", 7001)]
    assert args.no_join is True and args.verify == 2_000_000 and args.timeout == 3.0
    assert args.key_exchange == "psk"
    parser = build_parser()
    for bad, match in (({"connect": {"connect": "127.0.0.1:99999"}}, "out of range"),
                       ({"connect": {"no-join": "yes"}}, "true or false"),
                       ({"connect": {"key-exchange": "rot13"}}, "not one of"),
                       ({"connnect": {"connect": ["x:1"]}}, "is not a command")):
        with pytest.raises(CliError, match=match):
            _config.apply(parser, "connect", bad, "c.toml")
    with pytest.raises(CliError, match="no command has an option --colour"):
        _config.check_top_level(parser, {"colour": 1}, "c.toml")

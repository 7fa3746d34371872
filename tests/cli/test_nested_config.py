"""--config and -v reach nested commands (`bench crypto`, `lab up`), not only the first level."""

from __future__ import annotations

import json
from pathlib import Path

from mptcpsec.cli import build_parser

from .conftest import run_cli


def test_verbose_is_counted_before_and_after_a_nested_command() -> None:
    p = build_parser()
    assert p.parse_args(["bench", "crypto", "-v", "-v"]).verbose == 2
    assert p.parse_args(["bench", "-v", "crypto"]).verbose == 1
    assert p.parse_args(["bench", "crypto"]).verbose == 0


def test_nested_command_takes_its_table_of_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('quiet = true\n[bench]\nrepeats = 3\n[bench.crypto]\nsizes = "64"\n'
                   'impls = "core-batch"\nalgs = "aes-128-gcm"\nops = "seal"\nrepeats = 1\n'
                   'seconds = 0.02\n')
    r = run_cli("bench", "crypto", "--config", str(cfg), "-v", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["results"]
    assert [(x["size"], x["impl"], x["runs"]) for x in rows] == [(64, "core-batch", 1)], rows
    # the command line still wins over the file
    r = run_cli("bench", "crypto", "--config", str(cfg), "--sizes", "128", "--json")
    assert [x["size"] for x in json.loads(r.stdout)["results"]] == [128]


def test_unknown_key_in_a_nested_table_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text("[bench.crypto]\nbogus = 1\n")
    r = run_cli("bench", "crypto", "--config", str(cfg))
    assert r.returncode == 2
    assert "[bench.crypto] has no option --bogus" in r.stderr
    cfg.write_text("[bench.nosuch]\nrepeats = 1\n")
    r = run_cli("bench", "crypto", "--config", str(cfg))
    assert r.returncode == 2 and "[nosuch] is not a command in [bench]" in r.stderr

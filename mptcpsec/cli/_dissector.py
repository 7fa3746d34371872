"""Where the Wireshark Lua dissector for MPTCPsec records is installed (package data), for
`mptcpsec pcap --dissector-path`."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from ._common import CliError


def dissector_path() -> Path:
    """The Lua plugin shipped in the package (mptcpsec/wire/dissector/mptcpsec.lua)."""
    path = Path(str(resources.files("mptcpsec") / "wire" / "dissector" / "mptcpsec.lua"))
    if not path.is_file():
        raise CliError(f"the Wireshark dissector is missing from this installation ({path})")
    return path


class PrintDissectorPath(argparse.Action):
    """`--dissector-path`: print the plugin's path and exit (like --version)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the path of the Wireshark Lua dissector for "
                          "MPTCPsec records and exit; use it as: tshark -X "
                          "lua_script:PATH -r FILE.pcap -V")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        try:
            print(dissector_path())
        except CliError as exc:
            parser.exit(1, f"mptcpsec: error: {exc}\n")
        sys.stdout.flush()
        parser.exit(0)

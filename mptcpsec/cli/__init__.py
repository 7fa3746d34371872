"""`mptcpsec` command line: one module per subcommand in this package.

A module here that defines ``register(subparsers)`` adds its subcommand; the parser it
registers sets ``func`` (called with the parsed arguments, returns the exit status).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from ..errors import MptcpsecError
from . import _config, _logging
from ._common import output_file

EPILOG = """\
every command also takes:
  --config FILE   option values from a TOML file (long option names as keys; a [COMMAND]
                  table per command); the command line wins
  -v, --verbose   more detail in the log (serve: every event and record)
  --log-file FILE append the log to FILE too

environment: MPTCPSEC_PSK (the -k psk key when no --psk-file), SSLKEYLOGFILE (TLS key log,
as browsers use it), MPTCPSEC_BACKEND (crypto backend: c or python). See README.
"""


def version_text() -> str:
    import platform
    from importlib import metadata

    try:
        version = metadata.version("mptcpsec")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        version = "unknown (not installed)"
    return f"mptcpsec {version} (Python {platform.python_version()})"


def _add_common(p: argparse.ArgumentParser, nested: bool = False) -> None:
    """Options every subcommand takes (unless it defines its own of the same name). A
    nested command (``bench crypto``) takes them too, without a default of its own, so
    ``bench -v crypto`` and ``bench crypto -v`` both count."""
    for flags, kwargs in (
            (("--config",), {"metavar": "FILE", "help": "option values from this TOML file "
                                                        "(see `mptcpsec --help`)"}),
            (("--verbose", "-v"), {"action": "count", "default": 0,
                                   "help": "more detail in the log (repeatable)"}),
            (("--log-file",), {"metavar": "FILE", "type": output_file,
                               "help": "append the log to FILE as well"})):
        if nested:
            kwargs = {**kwargs, "default": argparse.SUPPRESS}
        with contextlib.suppress(argparse.ArgumentError):
            p.add_argument(*flags, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mptcpsec",
        description="Secure multipath transport research toolkit: MPTCPsec records over "
        "several TCP subflows, with a C core for per-record AEAD.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    for p in sub.choices.values():
        _add_common(p)
        for nested in _config.all_parsers(p):
            _add_common(nested, nested=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        config_path = _config.find_config_arg(argv)
        doc = _config.load(config_path) if config_path else None
        if doc is not None and config_path is not None:
            _config.check_top_level(parser, doc, config_path)
            command = _config.command_path(parser, argv)
            if command:
                _config.apply(parser, command, doc, config_path)
    except MptcpsecError as exc:
        print(f"mptcpsec: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if doc is not None and args.command:
        _config.strip_overridden(parser, _config.command_path(parser, argv), args, argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        _logging.setup(getattr(args, "verbose", 0) or 0, getattr(args, "log_file", None),
                       bool(getattr(args, "quiet", False)))
        return int(func(args) or 0)
    except MptcpsecError as exc:
        logging.getLogger("mptcpsec").debug("error", exc_info=True)
        print(f"mptcpsec: error: {exc}", file=sys.stderr)
        if getattr(args, "log_file", None):
            _logging.LOG.error(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

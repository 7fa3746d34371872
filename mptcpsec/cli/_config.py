"""`--config FILE`: option values from a TOML file, so credentials and addresses need not be
repeated on every call.

Keys are the long option names (``psk-file`` or ``psk_file``). Top-level keys apply to
every command that has the option; a table per command (``[serve]``, ``[connect]``) applies
to that command and wins over the top level; the command line wins over both. Repeatable
options take a list. Unknown keys are an error naming the file and the key.

    # ~/.config/mptcpsec.toml
    key-exchange = "tls"
    [serve]
    listen = ["127.0.0.1:7000", "127.0.0.2:7000"]
    cert = "srv.pem"
    key = "srv.key"
    [connect]
    connect = ["127.0.0.1:7000"]
    pin = "3f5a..."
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ._common import CliError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Options that only make sense on the command line.
_NOT_IN_FILE = {"help", "config", "version"}


def find_config_arg(argv: Sequence[str]) -> str | None:
    """The value of ``--config FILE`` / ``--config=FILE`` anywhere in argv (before ``--``)."""
    for i, arg in enumerate(argv):
        if arg == "--":
            return None
        if arg == "--config":
            if i + 1 >= len(argv):
                raise CliError("--config needs a FILE")
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def load(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
            return data
    except OSError as exc:
        raise CliError(f"cannot read config file {path!r}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"config file {path!r} is not valid TOML: {exc}") from None


def apply(parser: argparse.ArgumentParser, command: str | Sequence[str], doc: dict[str, Any],
          path: str) -> None:
    """Set the defaults of the (possibly nested) command's parser from the file's values.

    ``command`` is one word (``connect``) or the words of a nested command (``bench
    crypto``); its values come from the top level, then ``[bench]``, then
    ``[bench.crypto]``, the innermost winning. Keys of the outer scopes that the command
    lacks belong to other commands; in the innermost table they are errors."""
    words = [command] if isinstance(command, str) else list(command)
    chain = _parser_chain(parser, words)
    if not chain:
        return
    sub = chain[-1]
    scopes: list[tuple[str, dict[str, Any], bool]] = []
    table: dict[str, Any] = doc
    level = parser
    for i, word in enumerate(["", *words[:len(chain)]]):
        if i:
            level = chain[i - 1]
            table = table.get(word, {}) if isinstance(table.get(word, {}), dict) else {}
        commands = set(_subparsers(level))
        name = "top level" if not i else "[" + ".".join(words[:i]) + "]"
        for k, v in table.items():
            if isinstance(v, dict) and k not in commands:
                where = "" if not i else f" in {name}"
                raise CliError(f"config file {path!r}: [{k}] is not a command{where} "
                               f"({', '.join(sorted(commands)) or 'it has none'})")
        scopes.append((name, {k: v for k, v in table.items() if not isinstance(v, dict)},
                       i == len(chain)))
    actions = {a.dest: a for a in sub._actions if a.option_strings}
    values: dict[str, Any] = {}
    full = " ".join(words[:len(chain)])
    for scope, items, innermost in scopes:
        for key, value in items.items():
            dest = key.replace("-", "_")
            action = actions.get(dest)
            if action is None or dest in _NOT_IN_FILE:
                if not innermost or scope == "top level":
                    continue  # an option of another command
                raise CliError(f"config file {path!r}: {scope} has no option --{key} "
                               f"(see `mptcpsec {full} --help`)")
            values[dest] = _convert(action, value, key, path)
    for dest, value in values.items():
        actions[dest].required = False
        actions[dest].default = value
    sub.set_defaults(**values)


def strip_overridden(parser: argparse.ArgumentParser, command: str | Sequence[str],
                     args: argparse.Namespace, argv: Sequence[str]) -> None:
    """A repeatable option given on the command line replaces the file's list instead of
    extending it (argparse appends to the default)."""
    words = [command] if isinstance(command, str) else list(command)
    chain = _parser_chain(parser, words)
    if not chain:
        return
    for action in chain[-1]._actions:
        if not isinstance(action, argparse._AppendAction):
            continue
        default = action.default
        if not isinstance(default, list) or not default:
            continue
        if any(_names_option(tok, action.option_strings) for tok in argv):
            setattr(args, action.dest, getattr(args, action.dest)[len(default):])


def command_path(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """The words of the (possibly nested) command named in argv: ``["bench", "crypto"]``."""
    words: list[str] = []
    level: argparse.ArgumentParser | None = parser
    rest = list(argv)
    while level is not None:
        names = _subparsers(level)
        i = next((j for j, a in enumerate(rest) if a in names), None)
        if i is None or (rest[:i] and "--" in rest[:i]):
            break
        words.append(rest[i])
        level, rest = names[rest[i]], rest[i + 1:]
    return words


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command's parser, nested ones included (not the top-level one)."""
    out: list[argparse.ArgumentParser] = []
    for sub in _subparsers(parser).values():
        out.append(sub)
        out.extend(all_parsers(sub))
    return out


def _parser_chain(parser: argparse.ArgumentParser,
                  words: Sequence[str]) -> list[argparse.ArgumentParser]:
    chain: list[argparse.ArgumentParser] = []
    level = parser
    for w in words:
        nxt = _subparsers(level).get(w)
        if nxt is None:
            break
        chain.append(nxt)
        level = nxt
    return chain


def _names_option(token: str, option_strings: Sequence[str]) -> bool:
    for opt in option_strings:
        if token == opt or (opt.startswith("--") and token.startswith(opt + "=")):
            return True
        if not opt.startswith("--") and token.startswith(opt) and not token.startswith("--"):
            return True
    return False


def check_top_level(parser: argparse.ArgumentParser, doc: dict[str, Any], path: str) -> None:
    """A top-level key must be an option of at least one command (catches typos)."""
    known = set()
    for sub in all_parsers(parser):
        known |= {a.dest for a in sub._actions if a.option_strings}
    for key, value in doc.items():
        if not isinstance(value, dict) and key.replace("-", "_") not in known:
            raise CliError(f"config file {path!r}: no command has an option --{key}")


def _convert(action: argparse.Action, value: Any, key: str, path: str) -> Any:
    where = f"config file {path!r}: {key}"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise CliError(f"{where} must be true or false")
        return value
    if isinstance(action, argparse._CountAction):
        if not isinstance(value, int) or isinstance(value, bool):
            raise CliError(f"{where} must be a number")
        return value
    many = isinstance(action, argparse._AppendAction)
    items = value if isinstance(value, list) else [value]
    if not many and isinstance(value, list):
        raise CliError(f"{where} takes one value, not a list")
    out = []
    for item in items:
        if isinstance(item, (dict, list)):
            raise CliError(f"{where}: expected a value, got {type(item).__name__}")
        text = str(item).lower() if isinstance(item, bool) else str(item)
        try:
            converted = action.type(text) if action.type is not None else text  # type: ignore[operator]
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise CliError(f"{where}: {exc}") from None
        if action.choices is not None and converted not in action.choices:
            raise CliError(f"{where}: {item!r} is not one of "
                           f"{', '.join(map(str, action.choices))}")
        out.append(converted)
    return out if many else out[0]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser | None:
    return _subparsers(parser).get(command)

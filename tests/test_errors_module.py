"""Every public exception class is defined in mptcpsec/errors.py (and re-exported where
callers used to import it), so a caller finds them all in one place."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import mptcpsec.errors as errors

ROOT = Path(__file__).resolve().parents[1] / "mptcpsec"


def test_no_public_exception_class_outside_errors_py() -> None:
    names = {n for n, obj in vars(errors).items() if inspect.isclass(obj)
             and issubclass(obj, BaseException)}
    stray = []
    for path in ROOT.rglob("*.py"):
        if path.name == "errors.py" and path.parent == ROOT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                     for b in node.bases}
            if node.name.endswith(("Error", "Violation", "Exception")) or bases & names \
                    or bases & {"Exception", "ValueError", "RuntimeError", "OSError"}:
                stray.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not stray, stray


def test_moved_classes_are_still_importable_where_they_were() -> None:
    from mptcpsec.aio.driver import TransportError
    from mptcpsec.cli._common import CliError
    from mptcpsec.crypto.psk import PskError, PskTooShortError
    from mptcpsec.wire.pcap import PcapError

    assert PskTooShortError is errors.PskTooShortError and issubclass(PskError,
                                                                       errors.KeyExchangeError)
    assert (TransportError, CliError, PcapError) == (errors.TransportError, errors.CliError,
                                                     errors.PcapError)

"""Package boundaries: lab never imports perf (perf builds on lab), nor a private name of
another package; the sans-I/O packages open no files and read no environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "mptcpsec"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) for every import in ``path``."""
    pkg = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = pkg.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.append((mod, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def test_lab_does_not_import_perf() -> None:
    for path in (ROOT / "lab").rglob("*.py"):
        for mod, names in _imports(path):
            assert not mod.startswith("mptcpsec.perf"), f"{path.name} imports {mod}"
            if mod.startswith("mptcpsec.") and not mod.startswith("mptcpsec.lab"):
                private = [n for n in names if n.startswith("_") and n != "__future__"]
                assert not private, f"{path.name} imports private {private} from {mod}"


@pytest.mark.parametrize("package", ["crypto", "wire", "protocol"])
def test_sans_io_packages_open_no_files(package: str) -> None:
    banned_calls = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "getenv"}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else \
                    fn.attr if isinstance(fn, ast.Attribute) else ""
                owner = fn.value.id if isinstance(fn, ast.Attribute) and \
                    isinstance(fn.value, ast.Name) else ""
                if name == "open" and owner not in ("", "os", "io", "builtins"):
                    continue  # a method called open (an AEAD opener), not a file
                assert name not in banned_calls, f"{path.name}:{node.lineno} calls {name}()"
            if isinstance(node, ast.Attribute) and node.attr == "environ":
                raise AssertionError(f"{path.name}:{node.lineno} reads os.environ")
        for mod, _ in _imports(path):
            # (threading is allowed: the capture writers hold a lock, they start no thread)
            assert mod.split(".")[0] not in ("asyncio", "socket", "selectors", "subprocess"), \
                f"{path.name} imports {mod}"

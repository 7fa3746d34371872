"""Run the fuzz targets of fuzz/targets.py under atheris (coverage-guided, libFuzzer).

Each target runs in its own process for `--seconds`, from a corpus seeded with
`targets.seeds()` (kept in fuzz/corpus/<target>/ between runs, ignored by git). A crash
is any exception other than a typed MptcpsecError, or a broken invariant; libFuzzer then
writes the input to fuzz/crashes/. The summary gives inputs tried and crashes per target.

    python fuzz/run.py --seconds 120              # every target, 2 minutes each
    python fuzz/run.py --target options --seconds 10 --json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class FuzzRun:
    target: str
    seconds: float
    inputs: int
    crashes: int
    exec_per_s: int
    coverage: int
    detail: str = ""


def _child(target: str, argv: list[str]) -> None:
    import atheris

    sys.path.insert(0, str(ROOT))
    with atheris.instrument_imports():
        from fuzz.targets import TARGETS
    fn = TARGETS[target]
    atheris.Setup([sys.argv[0], *argv], fn)
    atheris.Fuzz()


def run_target(target: str, seconds: float, workdir: Path = HERE) -> FuzzRun:
    sys.path.insert(0, str(ROOT))
    from fuzz.targets import seeds

    corpus = workdir / "corpus" / target
    crashes = workdir / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds(target)):
        (corpus / f"seed-{i}").write_bytes(s)
    before = set(crashes.iterdir())
    args = [f"-max_total_time={max(1, int(seconds))}", f"-artifact_prefix={crashes}/",
            "-print_final_stats=1", "-rss_limit_mb=4096", "-timeout=20", str(corpus)]
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(HERE / "run.py"), "--child", target, *args],
                          capture_output=True, text=True, cwd=ROOT,
                          timeout=seconds + 120, check=False)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", out)
    if not runs:
        runs = re.findall(r"Done (\d+) runs", out) or re.findall(r"#(\d+)\s", out)
    eps = re.findall(r"stat::average_exec_per_sec:\s*(\d+)", out)
    cov = re.findall(r"cov: (\d+)", out)
    new = sorted(set(crashes.iterdir()) - before)
    crashed = proc.returncode != 0 or bool(new)
    detail = ""
    if crashed:
        m = re.search(r"(Uncaught Python exception:.*?)(?:\n\n|\Z)", out, re.S)
        detail = (m.group(1) if m else out[-2000:]).strip()
    return FuzzRun(target, round(elapsed, 1), int(runs[-1]) if runs else 0,
                   max(len(new), int(crashed)), int(eps[-1]) if eps else 0,
                   int(cov[-1]) if cov else 0, detail)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[2:])
        return 0
    from fuzz.targets import TARGETS

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", action="append", choices=sorted(TARGETS),
                    help="target to run (repeatable; default: all)")
    ap.add_argument("--seconds", type=float, default=60.0, help="per target")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install atheris (make fuzz does it)",
              file=sys.stderr)
        return 2
    results = [run_target(t, args.seconds) for t in (args.target or list(TARGETS))]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=1))
    else:
        print(f"{'target':<15} {'seconds':>8} {'inputs':>10} {'exec/s':>8} {'cov':>6} crashes")
        for r in results:
            print(f"{r.target:<15} {r.seconds:>8.1f} {r.inputs:>10} {r.exec_per_s:>8} "
                  f"{r.coverage:>6} {r.crashes}")
            if r.detail:
                print("   ", r.detail.replace("\n", "\n    "))
        total = sum(r.inputs for r in results)
        print(f"total: {total} inputs, {sum(r.crashes for r in results)} crashes")
    return 1 if any(r.crashes for r in results) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

"""The fuzz targets in the test suite: the seed corpus plus random inputs in-process, and a
short coverage-guided atheris run of every target when atheris is installed."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # after PYTHONPATH: `make sanitize` keeps its own build

from fuzz.targets import TARGETS, seeds  # noqa: E402


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_on_seeds_and_random_inputs(name: str) -> None:
    rnd = random.Random(name)
    inputs = seeds(name) + [rnd.randbytes(rnd.randrange(0, 600)) for _ in range(400)]
    for data in inputs:
        TARGETS[name](data)  # only typed errors, which the targets absorb


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris not installed (make fuzz installs it)")
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_atheris_short_run(name: str, tmp_path: Path) -> None:
    from fuzz.run import run_target

    r = run_target(name, 1, workdir=tmp_path)
    assert r.crashes == 0, r.detail
    assert r.inputs > 100

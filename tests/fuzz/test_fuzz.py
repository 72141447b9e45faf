"""A short atheris run of every fuzz target (``scripts/fuzz.sh`` runs them for longer)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT
from .targets import SEEDS, TARGETS


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_survives_a_bounded_run(name: str, tmp_path: Path) -> None:
    # Bounded: 4000 inputs or 8 s, inputs up to 4 KiB, 256 MiB of memory, 2 s per input.
    done = subprocess.run(
        [
            sys.executable, "-m", "tests.fuzz.run", name,
            "-runs=4000", "-max_total_time=8", "-max_len=4096",
            "-rss_limit_mb=256", "-timeout=2", f"-artifact_prefix={tmp_path}/",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done" in done.stderr or "DONE" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_are_accepted(name: str) -> None:
    for seed in SEEDS[name]:
        TARGETS[name](seed)

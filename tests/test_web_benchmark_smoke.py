"""The web-hosting benchmark in smoke mode: h2mesh hosting the three benchmark apps, 200
requests each over HTTP/2 and HTTP/1.1 with h2load; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, require_binary


def test_smoke_run_writes_json_and_markdown(tmp_path: Path) -> None:
    require_binary("h2load")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.web", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "web.json").read_text())
    rows = {(r["app"], r["proto"]): r for r in doc["results"]}
    assert set(rows) == {(a, p) for a in ("hello", "fastapi", "flask") for p in ("h2", "h1")}
    for row in rows.values():
        assert row["succeeded"] == 200 and row["status_2xx"] == 200, row
    assert "| bare ASGI hello | HTTP/2 |" in (tmp_path / "web.md").read_text()


def test_repeated_runs_give_the_median_and_keep_every_rate() -> None:
    from benchmarks.web import _median_run

    runs = [{"server": "x", "rps": r} for r in (300.0, 100.0, 200.0)]
    median = _median_run(runs)
    assert median["rps"] == 200.0 and median["runs_rps"] == [300.0, 100.0, 200.0]
    assert "runs_rps" not in _median_run(runs[:1])
    # A failed run is what the row shows: it is not hidden behind the others.
    failed = {"server": "x", "error": "server exited with status 1"}
    assert _median_run([*runs, failed]) == failed

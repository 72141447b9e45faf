"""The routes benchmark in smoke mode: the h2mesh rows (route GET and Connect POST, HTTP/1.1
and HTTP/2) run end to end under h2load with tiny counts and write their table; no timing
is asserted (the FastAPI rows need the ``bench`` extra and run in ``benchmarks/routes.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, require_binary


def test_smoke_run_of_the_h2mesh_rows(tmp_path: Path) -> None:
    require_binary("h2load")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.routes",
            "--requests",
            "300",
            "--repeat",
            "1",
            "--only",
            "h2mesh",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads((tmp_path / "routes.json").read_text())
    rows = {r["name"]: r for r in doc["rows"]}
    assert set(rows) == {
        "h2mesh-route-h2",
        "h2mesh-connect-h2",
        "h2mesh-route-h1",
        "h2mesh-connect-h1",
    }
    for row in rows.values():
        assert row["error"] is None and row["rps_median"] > 0, row
    table = (tmp_path / "routes.md").read_text()
    assert "| h2mesh route GET (HTTP/2) |" in table

"""The benchmark harness in smoke mode: it runs end to end and writes well-formed results.

Only h2mesh (and h2load, installed by scripts/setup.sh) take part, with tiny counts; no
timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, require_binary

WORKLOADS = {
    "unary": "rps",
    "h2load": "rps",
    "server_stream": "msgs_per_s",
    "client_stream": "msgs_per_s",
    "bidi": "round_trips_per_s",
    "payload_1k": "mb_per_s",
    "payload_256k": "mb_per_s",
    "many_conns": "rps",
}


def smoke_run(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``benchmarks.harness --smoke`` with ``args``, writing into ``out``."""
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.harness", "--smoke", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )


def test_smoke_run_writes_json_and_markdown(tmp_path: Path) -> None:
    require_binary("h2load")
    proc = smoke_run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "h2mesh-msgpack" in proc.stderr  # the progress lines

    doc = json.loads((tmp_path / "latest.json").read_text())
    assert doc["mode"] == "smoke"
    assert doc["baseline"] == "grpcio"
    machine = doc["machine"]
    assert machine["cpu_model"] and machine["cores"] >= 1 and machine["date"]
    assert set(doc["workloads"]) == set(WORKLOADS)
    assert {w: v["primary"] for w, v in doc["workloads"].items()} == WORKLOADS

    entry = doc["systems"]["h2mesh-msgpack"]
    assert entry["status"] == "ok"
    assert set(entry["workloads"]) == set(WORKLOADS)
    for name, result in entry["workloads"].items():
        assert result["status"] == "ok", (name, result["status"])
        assert len(result["reps"]) >= 1
        stats = result["metrics"][WORKLOADS[name]]
        assert stats["min"] <= stats["median"] <= stats["max"]
        assert stats["median"] > 0
        assert result["ratio_to_grpcio"] is None  # grpcio did not run
    unary = entry["workloads"]["unary"]["metrics"]
    assert unary["p50_ms"]["median"] <= unary["p99_ms"]["median"]
    conns = entry["workloads"]["many_conns"]["metrics"]
    assert conns["server_rss_open_mib"]["median"] > 0

    md = (tmp_path / "latest.md").read_text()
    assert md.startswith("# h2mesh benchmark (smoke)")
    assert machine["cpu_model"] in md
    header = next(line for line in md.splitlines() if line.startswith("| system |"))
    assert all(w in header for w in WORKLOADS)
    assert "| h2mesh Connect+MessagePack |" in md


def test_smoke_run_of_the_grpc_protobuf_row(tmp_path: Path) -> None:
    # h2mesh serving and calling the protoc-generated bench_pb2.Msg over gRPC; protobuf and
    # grpcio-tools (which compiles bench.proto) come with the test extra.
    require_binary("h2load")
    proc = smoke_run(tmp_path, "--systems", "h2mesh-grpc-proto")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "latest.json").read_text())
    entry = doc["systems"]["h2mesh-grpc-proto"]
    assert entry["status"] == "ok", entry["status"]
    assert set(entry["workloads"]) == set(WORKLOADS)
    for name, result in entry["workloads"].items():
        assert result["status"] == "ok", (name, result["status"])
        assert result["metrics"][WORKLOADS[name]]["median"] > 0
    assert entry["workloads"]["h2load"]["metrics"]["failed"]["max"] == 0
    assert "| h2mesh gRPC+protobuf |" in (tmp_path / "latest.md").read_text()


def test_unknown_system_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.harness", "--smoke", "--systems", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "unknown system 'nope'" in proc.stderr


def test_smoke_run_of_the_python_ceiling(tmp_path: Path) -> None:
    # The bare ngh2 + uvloop server and its bare client: the ceiling rows of unary calls,
    # bidi round trips and h2load; the workloads its client does not make are n/a, saying so.
    require_binary("h2load")
    proc = smoke_run(tmp_path, "--systems", "bare-ngh2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    entry = json.loads((tmp_path / "latest.json").read_text())["systems"]["bare-ngh2"]
    assert entry["status"] == "ok", entry["status"]
    results = entry["workloads"]
    for name in ("unary", "bidi", "h2load", "many_conns"):
        assert results[name]["status"] == "ok", (name, results[name]["status"])
        assert results[name]["metrics"][WORKLOADS[name]]["median"] > 0
    for name in ("server_stream", "client_stream", "payload_1k", "payload_256k"):
        assert results[name]["status"].startswith("n/a: "), (name, results[name]["status"])

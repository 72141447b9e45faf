"""Wall-clock A/B of two h2mesh source trees under h2load, alternating, in one run.

``python -m benchmarks.ab --a SRC_A --b SRC_B [--systems h2mesh-json,h2mesh-grpc-proto]
[--rounds 3] [--requests 50000]``

On a shared machine one measurement of each says little; this starts the same
benchmark server from tree A, then from tree B, and so on for ``--rounds`` alternations
(server on CPU 0, h2load -c 10 -m 10 on CPU 1, a warm-up before each), and prints every
figure, the medians and the ratio B/A. SRC is a ``src/`` directory (a ``git worktree`` or
``git archive`` of another commit).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from . import harness


def measure(src: Path, system: harness.System, requests: int, work: Path) -> float:
    os.environ["H2MESH_BENCH_SRC"] = str(src)  # read by harness._child_env
    try:
        port = harness.free_port()
        proc = harness.start_server(system, port, work, 30.0)
    finally:
        del os.environ["H2MESH_BENCH_SRC"]
    try:
        params = {"requests": requests, "clients": 10, "streams": 10}
        harness.run_h2load(system, port, dict(params, requests=requests // 10), work, 120.0)
        return harness.run_h2load(system, port, params, work, 120.0)["rps"]
    finally:
        harness._kill_group(proc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", type=Path, required=True, help="src/ of variant A")
    p.add_argument("--b", type=Path, required=True, help="src/ of variant B")
    p.add_argument("--systems", default="h2mesh-json,h2mesh-grpc-proto")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=50_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="h2mesh-ab-") as tmp:
        for name in args.systems.split(","):
            system = harness.SYSTEMS[name]
            runs: dict[str, list[float]] = {"A": [], "B": []}
            for i in range(args.rounds):
                for label, src in (("A", args.a), ("B", args.b)):
                    rps = measure(src.resolve(), system, args.requests, Path(tmp))
                    runs[label].append(rps)
                    print(f"{name} round {i + 1} {label}: {rps:,.0f} req/s", flush=True)
            a, b = statistics.median(runs["A"]), statistics.median(runs["B"])
            print(f"{name}: median A {a:,.0f}, B {b:,.0f} req/s, B/A {b / a:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

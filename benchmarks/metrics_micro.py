"""Per-call cost of keeping call metrics: h2mesh's ``CallStats`` against prometheus-client
(normal and multiprocess mode) doing the same work: one duration and two size (request,
response) observations with the four RPC labels, and a request count; prometheus-client
also moves an in-flight gauge up and down, which h2mesh reads from the open connections
when a snapshot is taken instead. ``observer`` times the whole per-call
hook a server runs with metrics on (``ServerObserver.observe`` around a handler that
returns at once), against awaiting the same handler bare.

Run each variant in its own process (multiprocess mode is chosen at import)::

    for m in h2mesh prometheus prometheus-multiprocess observer; do
        taskset -c 1 .venv/bin/python benchmarks/metrics_micro.py $m
    done

``instructions`` counts, under callgrind, the instructions the observer adds per call with
metrics, the access log, or both on (a figure that a loaded machine does not change)::

    .venv/bin/python benchmarks/metrics_micro.py instructions
"""

from __future__ import annotations

import os
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

N = 200_000
LABELS = ("connect_rpc", "bench.v1.Bench", "Echo", "OK")


def h2mesh() -> Callable[[], None]:
    from h2mesh.observability import CallStats

    stats = CallStats()
    key = object()

    def one() -> None:
        stats.requests += 1
        stats.record(key, "server", "connect", "bench.v1.Bench", "Echo", "OK", 0.00012, (14, 27))

    return one


def prometheus(multiprocess: bool) -> Callable[[], None]:
    if multiprocess:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
    from prometheus_client import Counter, Gauge, Histogram

    from h2mesh.observability import DURATION_BOUNDS, SIZE_BOUNDS

    names = ["rpc_system", "rpc_service", "rpc_method", "rpc_response_status_code"]
    hist = Histogram("rpc_server_call_duration_seconds", "", names, buckets=DURATION_BOUNDS)
    received = Histogram("rpc_server_request_size_bytes", "", names, buckets=SIZE_BOUNDS)
    sent = Histogram("rpc_server_response_size_bytes", "", names, buckets=SIZE_BOUNDS)
    gauge = Gauge("rpc_server_active_calls", "", multiprocess_mode="livesum")
    requests = Counter("h2mesh_server_streams", "")

    def one() -> None:
        gauge.inc()
        requests.inc()
        gauge.dec()
        hist.labels(*LABELS).observe(0.00012)
        received.labels(*LABELS).observe(14)
        sent.labels(*LABELS).observe(27)

    return one


def _fixture() -> tuple[Any, Any, Callable[[Any], Any]]:
    """A served call's outcome, its stream, and a handler that returns it at once."""
    from h2mesh import Code, MethodDescriptor, MethodKind

    class Outcome:
        method = MethodDescriptor("bench.v1.Bench", "Echo", "echo", MethodKind.UNARY, Any, Any)
        protocol = "connect"
        code = Code.OK

    class Stream:
        headers = [(b":path", b"/bench.v1.Bench/Echo")]
        received = 14
        sent = 27
        peer = ("127.0.0.1", 50312)
        http_version = "2"

    outcome, stream = Outcome(), Stream()

    async def serve(_: Any) -> Any:
        return outcome

    return outcome, stream, serve


def observer() -> None:
    import asyncio
    import time

    from h2mesh.observability import CallStats, ServerObserver

    _, stream, serve = _fixture()

    async def run() -> None:
        obs = ServerObserver(CallStats())
        bare = observed = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(N):
                await serve(stream)
            bare = min(bare, (time.perf_counter() - t) / N)
            t = time.perf_counter()
            for _ in range(N):
                await obs.observe(serve, stream)
            observed = min(observed, (time.perf_counter() - t) / N)
        print(f"{'observer':>24}: {(observed - bare) * 1e6:.2f} µs per call added")

    asyncio.run(run())


KINDS = ("bare", "metrics", "access-log", "metrics+access-log")


def observer_loop(kind: str, n: int) -> None:
    """``n`` calls of the fixture's handler, bare or through an observer with metrics
    and/or the access log (to /dev/null) on: what ``instructions`` runs under callgrind."""
    import asyncio

    from h2mesh.observability import AccessLog, CallStats, ServerObserver

    _, stream, serve = _fixture()
    access = AccessLog(os.devnull) if "access-log" in kind else None
    obs = ServerObserver(CallStats() if "metrics" in kind else None, access)

    async def run() -> None:
        if kind == "bare":
            for _ in range(n):
                await serve(stream)
        else:
            for _ in range(n):
                await obs.observe(serve, stream)

    asyncio.run(run())
    if access is not None:
        access.close()  # every line formatted and written: part of the count


def instructions(n: int = 10_000) -> None:
    """Instructions each observer adds per call, counted by callgrind: for each kind,
    ``(Ir(2n calls) - Ir(n calls)) / n`` (start-up cancels out), minus the bare loop's.
    The count does not move with the machine's load."""
    import re
    import shutil
    import subprocess

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("instructions needs valgrind (apt-get install valgrind)")
    per_call: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            totals = []
            for calls in (n, 2 * n):
                out = Path(tmp) / f"{kind}-{calls}.out"
                cmd = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"]
                cmd += [sys.executable, __file__, "observer-loop", kind, str(calls)]
                subprocess.run(cmd, check=True, capture_output=True)
                found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
                assert found, f"no total in {out}"
                totals.append(int(found[1]))
            per_call[kind] = (totals[1] - totals[0]) / n
    for kind in KINDS[1:]:
        added = per_call[kind] - per_call["bare"]
        print(f"{kind:>24}: {added:,.0f} instructions per call added")


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "h2mesh"
    if mode == "observer":
        observer()
        return
    if mode == "observer-loop":
        observer_loop(sys.argv[2], int(sys.argv[3]))
        return
    if mode == "instructions":
        instructions()
        return
    if mode == "h2mesh":
        one = h2mesh()
    elif mode in ("prometheus", "prometheus-multiprocess"):
        one = prometheus(mode.endswith("multiprocess"))
    else:
        raise SystemExit(
            "mode: h2mesh, prometheus, prometheus-multiprocess, observer or instructions"
        )
    best = min(timeit.repeat(one, number=N, repeat=5)) / N
    print(f"{mode:>24}: {best * 1e6:.2f} µs per call")


if __name__ == "__main__":
    main()

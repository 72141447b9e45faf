"""Instructions per client unary call (or bidi round trip), counted by callgrind, and where
they go.

``python -m benchmarks.client_callgrind [--calls N] [--workloads a,b] [--src DIR] [--no-layers]``
(``benchmarks/callgrind.sh --client`` installs valgrind first).

The mirror of ``benchmarks.callgrind``: the benchmark server runs as usual (pinned to
CPU 0) and the h2mesh client (``benchmarks.clients.H2meshClient``, one ``Echo`` call in
flight) runs under ``valgrind --tool=callgrind`` on CPU 1. After a warm-up it makes N
calls, then 2N, and callgrind dumps its counts before and after each run; instructions per
call are ``(Ir[2N] - Ir[N]) / N``, as on the server side. A ``-bidi`` workload makes one
PingPong stream of N round trips, then one of 2N (each sends a message and waits for its
echo), so the count is per round trip, the stream's setup cancelled out; a ``-lb`` one
makes its unary calls through the balancer, each with a 5 s deadline. A second run
without valgrind counts the bytecodes each Python function executes (the same difference)
and shares the interpreter's instructions among the layers in proportion.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .callgrind import (
    _env,
    _start,
    _stop,
    callgrind_cmd,
    group_objects,
    object_costs,
    progress,
    report,
    total_cost,
)
from .harness import CLIENT_CPU, _pin, free_port

# workload -> (benchmark server, client codec, client protocol)
WORKLOADS: dict[str, tuple[str, str, str]] = {
    "connect-json": ("h2mesh", "json", "connect"),
    "connect-msgpack": ("h2mesh", "msgpack", "connect"),
    "grpc-proto": ("h2mesh-proto", "proto", "grpc"),
    "grpc-msgpack": ("h2mesh", "msgpack", "grpc"),
}
# The same, as one bidi stream of round trips ("connect-json-bidi", ...), and as unary calls
# balanced over an endpoint set, each with a deadline ("connect-json-lb", ...).
WORKLOADS.update(
    {f"{name}-{kind}": spec for name, spec in list(WORKLOADS.items()) for kind in ("bidi", "lb")}
)
DEFAULT_WORKLOADS = ("connect-json", "grpc-proto", "grpc-proto-bidi")
WARM_UP = 300


# -- the client process ------------------------------------------------------------------------
def drive(port: int, codec: str, protocol: str, kind: str, calls: int, opcount: str | None) -> None:
    """Warm up, then N and 2N calls (``bidi``: round trips of one stream each run; ``lb``:
    balanced calls with a deadline); before each run and after the last, say ``ready``
    and wait for a line on stdin (the parent dumps callgrind's counts meanwhile). With
    ``opcount``, the bytecode counts are written to ``opcount.<k>`` at those points."""
    from h2mesh import run

    from . import _opcount
    from .clients import H2meshClient

    def mark(k: int) -> None:
        if opcount is not None:
            sys.settrace(None)
            _opcount.write_counts(f"{opcount}.{k}")
            if k == 0:
                _opcount.counts.clear()
                _opcount.calls.clear()
        print("ready", flush=True)
        sys.stdin.readline()
        if opcount is not None:
            sys.settrace(_opcount.trace)

    async def main() -> None:
        client = H2meshClient(port, codec, protocol, balanced=kind == "lb")
        bidi = kind == "bidi"
        await client.open()

        async def run_calls(n: int) -> None:
            if bidi:
                await client.bidi(n)
            else:
                for _ in range(n):
                    await client.unary(0)

        await run_calls(WARM_UP)
        for k, n in enumerate((0, calls, 2 * calls, None)):
            mark(k)
            if n is None:
                break
            await run_calls(n)
        await client.close()

    if opcount is not None:
        sys.settrace(_opcount.trace)
    run(main())


# -- the parent ----------------------------------------------------------------------------------
def _run_client(cmd: list[str], work: Path, name: str, on_ready: Any) -> None:
    """Run the client process, calling ``on_ready(k, pid)`` at each of its four marks."""
    with open(work / f"{name}.err", "wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=_env(),
            preexec_fn=_pin(CLIENT_CPU),
        )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for k in range(4):
            line = proc.stdout.readline()
            if line.strip() != b"ready":
                tail = (work / f"{name}.err").read_text(errors="replace")[-800:]
                raise RuntimeError(f"client stopped: {line!r} {tail}")
            on_ready(k, proc.pid)
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        if proc.wait(600) != 0:
            tail = (work / f"{name}.err").read_text(errors="replace")[-800:]
            raise RuntimeError(f"client failed: {tail}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _server(workload: str, work: Path) -> tuple[Any, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "benchmarks.servers", WORKLOADS[workload][0], str(port)]
    return _start(cmd, work, f"{workload}-server", port, _env()), port


def _drive_cmd(workload: str, port: int, calls: int) -> list[str]:
    _, codec, protocol = WORKLOADS[workload]
    kind = workload.rpartition("-")[2] if workload.endswith(("-bidi", "-lb")) else "unary"
    return [
        sys.executable, "-m", "benchmarks.client_callgrind", "--drive",
        str(port), codec, protocol, kind, str(calls),
    ]  # fmt: skip


def measure_callgrind(workload: str, calls: int, work: Path) -> dict[str, Any]:
    out = work / f"{workload}.client.callgrind"
    control = shutil.which("callgrind_control") or "callgrind_control"
    server, port = _server(workload, work)
    dumps: list[Path] = []

    def on_ready(k: int, pid: int) -> None:
        if k in (1, 2, 3):  # before N, after N, after 2N
            before = set(work.glob(f"{out.name}.*"))
            subprocess.run([control, "-d", str(pid)], check=True, capture_output=True)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                new = set(work.glob(f"{out.name}.*")) - before
                if new:
                    time.sleep(0.5)  # let the writer finish the file
                    dumps.append(new.pop())
                    return
                time.sleep(0.1)
            raise RuntimeError("no callgrind dump")

    cmd = [*callgrind_cmd(out), *_drive_cmd(workload, port, calls)]
    progress(f"  {workload}: the client under callgrind (slow)")
    try:
        _run_client(cmd, work, f"{workload}-client-callgrind", on_ready)
    finally:
        _stop(server)
    _, first, second = dumps
    # Each dump holds the counts since the one before: [warm-up], [N calls], [2N calls].
    per_call = (total_cost(second) - total_cost(first)) / calls
    a, b = group_objects(object_costs(first)), group_objects(object_costs(second))
    objects = {name: (b[name] - a[name]) / calls for name in set(a) | set(b)}
    return {"per_call": per_call, "objects": objects}


def measure_layers(workload: str, calls: int, work: Path) -> dict[str, Any]:
    from .callgrind import _read_counts

    counts = work / f"{workload}.client.opcount"
    server, port = _server(workload, work)
    cmd = [*_drive_cmd(workload, port, calls), "--opcount", str(counts)]
    progress(f"  {workload}: counting the client's bytecodes per function")
    try:
        _run_client(cmd, work, f"{workload}-client-opcount", lambda k, pid: None)
    finally:
        _stop(server)
    # Snapshot k counts what ran since snapshot 0 (1: N calls, 2: N + 2N, 3: the same).
    n1, n2 = _read_counts(Path(f"{counts}.1")), _read_counts(Path(f"{counts}.2"))
    keys = set(n1) | set(n2)
    per_fn = {k: (n2.get(k, (0, 0))[0] - 2 * n1.get(k, (0, 0))[0]) / calls for k in keys}
    entered = {k: (n2.get(k, (0, 0))[1] - 2 * n1.get(k, (0, 0))[1]) / calls for k in keys}
    return {"functions": per_fn, "calls": entered}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--drive"]:
        port, codec, protocol, kind, calls = argv[1:6]
        opcount = argv[7] if argv[6:7] == ["--opcount"] else None
        drive(int(port), codec, protocol, kind, int(calls), opcount)
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000, help="N (runs N, then 2N calls)")
    p.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                   help=f"comma-separated, of {', '.join(WORKLOADS)}")  # fmt: skip
    p.add_argument("--keep", type=Path, default=None, help="keep the outputs in this directory")
    p.add_argument("--src", type=Path, default=None,
                   help="measure the h2mesh package under this src/ directory")  # fmt: skip
    p.add_argument("--no-layers", action="store_true", help="skip the bytecode count")
    p.add_argument("--top", type=int, default=25, help="Python functions to list")
    args = p.parse_args(argv)
    from . import callgrind

    callgrind.SRC = args.src.resolve() if args.src is not None else None
    workloads = callgrind.pick_workloads(p, args.workloads, WORKLOADS)
    if not callgrind.have_tools("valgrind", "callgrind_control"):
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="h2mesh-client-callgrind-"))
    work.mkdir(parents=True, exist_ok=True)
    totals = []
    for w in workloads:
        progress(f"{w} (client):")
        cg = measure_callgrind(w, args.calls, work)
        layers = None if args.no_layers else measure_layers(w, args.calls, work)
        print(report(f"{w} (client)", cg, layers, args.top) + "\n", flush=True)
        totals.append(f"{w} {cg['per_call']:,.0f}")
    print(f"instructions per client unary call (bidi: round trip): {', '.join(totals)}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

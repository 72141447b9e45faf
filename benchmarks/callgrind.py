"""Instructions per server call, counted by callgrind, and where they go.

``python -m benchmarks.callgrind [--calls N] [--workloads a,b] [--keep DIR] [--no-layers]``
(``benchmarks/callgrind.sh`` installs valgrind first).

For each workload the benchmark server (``benchmarks.servers``) runs under
``valgrind --tool=callgrind`` pinned to CPU 0, and h2load (CPU 1) sends it unary calls:
a warm-up, then N calls, then 2N calls, with a callgrind dump after each (one
call in flight by default, ``--clients``/``--streams`` for more). Start-up,
warm-up and each run's connection set-up cancel out of the difference of the two last
dumps, which is what N calls cost: instructions per call are ``(Ir[2N] - Ir[N]) / N``.
That figure does not move with the load on the machine.

The breakdown has two parts. Callgrind splits the instructions by shared object
(the interpreter, libnghttp2 and its binding, uvloop/libuv, msgspec, libc, ...). Python
code is one object to valgrind, so a second run of the same server counts the bytecode
instructions each Python function executes (``sys.settrace`` with opcode events, again
the difference of a 2N and an N run) and shares the interpreter's instructions among the
layers in proportion: transport, guard, protocol, server, codec, handler, asyncio.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .harness import (
    CLIENT_CPU,
    SYSTEMS,
    _child_env,
    _h2load_request,
    _pin,
    _wait_listening,
    free_port,
    spawn_server,
)

# workload -> (benchmark server, h2load request of harness.SYSTEMS)
WORKLOADS: dict[str, tuple[str, str]] = {
    "connect-json": ("h2mesh", "h2mesh-json"),
    "connect-msgpack": ("h2mesh", "h2mesh-msgpack"),
    "grpc-proto": ("h2mesh-proto", "h2mesh-grpc-proto"),
    "grpc-msgpack": ("h2mesh", "h2mesh-grpc-msgpack"),
    "grpc-json": ("h2mesh", "h2mesh-grpc-json"),
    # A grpcio servicer (its aio handlers) added unchanged to an h2mesh Server.
    "grpcio-servicer": ("h2mesh-grpcio", "h2mesh-grpcio"),
    # The Python ceiling (benchmarks/bare_ngh2.py): the engine and the event loop alone.
    "bare-ngh2": ("bare-ngh2", "bare-ngh2"),
    # What observability costs: connect-json with call metrics and/or the access log on.
    "connect-json-metrics": ("h2mesh-metrics", "h2mesh-json"),
    "connect-json-access-log": ("h2mesh-access-log", "h2mesh-json"),
    "connect-json-metrics-access-log": ("h2mesh-metrics-access-log", "h2mesh-json"),
    # What a deadline costs: the same calls, each with a 5 s timeout header.
    "connect-json-deadline": ("h2mesh", "h2mesh-json"),
    "grpc-proto-deadline": ("h2mesh-proto", "h2mesh-grpc-proto"),
}
# workload -> the headers its requests carry besides the h2load request's own
EXTRA_HEADERS: dict[str, tuple[str, ...]] = {
    "connect-json-deadline": ("connect-timeout-ms: 5000",),
    "grpc-proto-deadline": ("grpc-timeout: 5S",),
}
DEFAULT_WORKLOADS = ("connect-json", "grpc-proto")

# Shared objects, by the first matching pattern of their path.
OBJECTS = (
    ("libnghttp2", "engine (libnghttp2)"),
    ("/ngh2", "engine binding (ngh2)"),
    ("uvloop", "event loop (uvloop/libuv, _asyncio)"),
    ("libuv", "event loop (uvloop/libuv, _asyncio)"),
    ("msgspec", "codec (msgspec)"),
    ("google", "codec (protobuf upb)"),
    ("_protobuf", "codec (protobuf upb)"),
    ("httptools", "httptools"),
    ("python3", "interpreter (Python code)"),
    ("libpython", "interpreter (Python code)"),
    ("_asyncio", "event loop (uvloop/libuv, _asyncio)"),
    ("lib-dynload/", "interpreter (Python code)"),
    ("libc.so", "libc (syscalls, malloc, memcpy)"),
    ("libc-", "libc (syscalls, malloc, memcpy)"),
    ("vgpreload", "libc (syscalls, malloc, memcpy)"),
    ("ld-linux", "dynamic loader"),
)
INTERPRETER = "interpreter (Python code)"

# Python files, by the first matching path fragment: the layer they belong to.
LAYERS = (
    ("h2mesh/transport/_guard", "guard"),
    ("h2mesh/transport/", "transport"),
    ("h2mesh/protocol/", "protocol"),
    ("h2mesh/codec/", "codec"),
    ("h2mesh/compression/", "codec"),
    ("h2mesh/client/", "client"),
    ("h2mesh/server/", "server"),
    ("h2mesh/observability/", "server"),
    ("h2mesh/", "server"),
    ("benchmarks/", "handler"),
    ("asyncio/", "asyncio"),
    ("contextlib", "asyncio"),
)
LAYER_ORDER = (
    "transport", "guard", "protocol", "server", "client", "codec", "handler", "asyncio", "other",
)  # fmt: skip


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- callgrind output ------------------------------------------------------------------------
_NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")


def object_costs(path: Path) -> collections.Counter[str]:
    """Self cost (Ir) per shared object in one callgrind output file."""
    costs: collections.Counter[str] = collections.Counter()
    names: dict[str, str] = {}
    current = "?"
    skip_next = False
    with path.open() as f:
        for line in f:
            if not line or line[0] == "\n":
                continue
            head = line[0]
            if head.isdigit() or head in "+-*":
                if skip_next:  # the inclusive cost of a call: counted in the callee
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    costs[current] += int(parts[1])
                continue
            if line.startswith("ob="):
                value = line[3:].strip()
                m = _NAMED.match(value)
                if m is not None:
                    if m.group(2) is not None:
                        names[m.group(1)] = m.group(2)
                    value = names.get(m.group(1), value)
                current = value
            elif line.startswith(("cob=",)):
                m = _NAMED.match(line[4:].strip())
                if m is not None and m.group(2) is not None:
                    names[m.group(1)] = m.group(2)
            elif line.startswith("calls="):
                skip_next = True
    return costs


def total_cost(path: Path) -> int:
    text = path.read_text()
    m = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(r"^totals:\s+(\d+)", text, re.M)
    if m is None:
        raise RuntimeError(f"no summary in {path}")
    return int(m.group(1))


def group_objects(costs: collections.Counter[str]) -> collections.Counter[str]:
    grouped: collections.Counter[str] = collections.Counter()
    for obj, cost in costs.items():
        for pattern, name in OBJECTS:
            if pattern in obj:
                grouped[name] += cost
                break
        else:
            grouped["other: " + os.path.basename(obj)] += cost
    return grouped


# -- driving a server ------------------------------------------------------------------------
def h2load(
    port: int,
    request: str,
    calls: int,
    clients: int,
    streams: int,
    work: Path,
    extra: tuple[str, ...] = (),
) -> None:
    path, headers, body_file = _h2load_request(SYSTEMS[request], work)
    headers = [*headers, *extra]
    cmd = [
        shutil.which("h2load") or "h2load",
        "-n", str(calls), "-c", str(clients), "-m", str(streams), "-t", "1",
    ]  # fmt: skip
    if body_file is not None:
        cmd += ["-d", str(body_file)]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, preexec_fn=_pin(CLIENT_CPU)
    ).stdout
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    if m is None or int(m.group(1)) != calls or codes is None or int(codes.group(1)) != calls:
        raise RuntimeError(f"h2load did not complete {calls} calls: {out[-400:]!r}")


SRC: Path | None = None  # --src: the h2mesh sources to measure instead of this tree's


def _env() -> dict[str, str]:
    env = _child_env()
    if SRC is not None:
        env["PYTHONPATH"] = os.pathsep.join((str(SRC), env["PYTHONPATH"]))
    return env


def _start(cmd: list[str], work: Path, name: str, port: int, env: dict[str, str]) -> Any:
    proc = spawn_server(cmd, work / f"{name}.log", env)
    try:
        _wait_listening(port, proc, 600.0)
    except Exception:
        _stop(proc)
        tail = (work / f"{name}.log").read_text(errors="replace")[-600:]
        raise RuntimeError(f"server did not start: {tail.strip() or 'no output'}") from None
    return proc


def _stop(proc: Any) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for(path_glob: str, directory: Path, count: int, proc: Any) -> list[Path]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = sorted(directory.glob(path_glob))
        if len(found) >= count:
            time.sleep(0.5)  # let the writer finish the file
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"no dump {path_glob} in {directory}")


def callgrind_cmd(out: Path) -> list[str]:
    """valgrind running callgrind, counts to ``out`` (and ``out.<k>`` for each dump)."""
    return [
        shutil.which("valgrind") or "valgrind",
        "--tool=callgrind",
        "--dump-instr=no",
        "--collect-jumps=no",
        f"--callgrind-out-file={out}",
    ]


def _server_args(server: str) -> list[str]:
    """The module (and system) of ``python -m`` that serves ``server``."""
    return ["benchmarks.bare_ngh2"] if server == "bare-ngh2" else ["benchmarks.servers", server]


def measure_callgrind(
    workload: str, calls: int, clients: int, streams: int, work: Path
) -> dict[str, Any]:
    server, request = WORKLOADS[workload]
    extra = EXTRA_HEADERS.get(workload, ())
    port = free_port()
    out = work / f"{workload}.callgrind"
    cmd = [*callgrind_cmd(out), sys.executable, "-m", *_server_args(server), str(port)]
    env = _env()
    progress(f"  {workload}: starting the server under callgrind (slow)")
    proc = _start(cmd, work, f"{workload}-callgrind", port, env)
    control = shutil.which("callgrind_control") or "callgrind_control"
    try:
        h2load(port, request, max(200, clients * streams * 4), clients, streams, work, extra)
        # A dump, not a zero: after a zero, costs of the frames then on the stack are off.
        subprocess.run([control, "-d", str(proc.pid)], check=True, capture_output=True)
        progress(f"  {workload}: {calls} calls")
        h2load(port, request, calls, clients, streams, work, extra)
        subprocess.run([control, "-d", str(proc.pid)], check=True, capture_output=True)
        progress(f"  {workload}: {2 * calls} calls")
        h2load(port, request, 2 * calls, clients, streams, work, extra)
        subprocess.run([control, "-d", str(proc.pid)], check=True, capture_output=True)
        dumps = _wait_for(f"{out.name}.*", work, 3, proc)
    finally:
        _stop(proc)
    first, second = dumps[-2], dumps[-1]
    per_call = (total_cost(second) - total_cost(first)) / calls
    a, b = group_objects(object_costs(first)), group_objects(object_costs(second))
    objects = {name: (b[name] - a[name]) / calls for name in set(a) | set(b)}
    return {"per_call": per_call, "objects": objects, "dumps": [str(first), str(second)]}


def measure_layers(
    workload: str, calls: int, clients: int, streams: int, work: Path
) -> dict[str, Any]:
    """Bytecode instructions per call, per Python function (see ``_opcount``)."""
    server, request = WORKLOADS[workload]
    extra = EXTRA_HEADERS.get(workload, ())
    port = free_port()
    counts = work / f"{workload}.opcount"
    env = _env()
    env["H2MESH_OPCOUNT_OUT"] = str(counts)
    cmd = [sys.executable, "-m", "benchmarks._opcount", server, str(port)]
    progress(f"  {workload}: counting bytecodes per function")
    proc = _start(cmd, work, f"{workload}-opcount", port, env)
    try:
        h2load(port, request, max(200, clients * streams * 4), clients, streams, work, extra)
        snaps = []
        for n in (0, calls, 2 * calls):
            if n:
                h2load(port, request, n, clients, streams, work, extra)
            done = Path(f"{counts}.{len(snaps)}")
            os.kill(proc.pid, signal.SIGUSR1)
            deadline = time.monotonic() + 60
            while not done.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            snaps.append(_read_counts(done))
    finally:
        _stop(proc)
    # Snapshots count from the first one on: [0, N calls, N + 2N calls]; the last two
    # differ by 2N calls (and one connection's set-up less one).
    n1, n2 = snaps[1], snaps[2]
    keys = set(n1) | set(n2)
    per_fn = {k: (n2.get(k, (0, 0))[0] - 2 * n1.get(k, (0, 0))[0]) / calls for k in keys}
    entered = {k: (n2.get(k, (0, 0))[1] - 2 * n1.get(k, (0, 0))[1]) / calls for k in keys}
    return {"functions": per_fn, "calls": entered}


def _read_counts(path: Path) -> dict[str, tuple[int, int]]:
    """{function: (bytecodes, calls)} of one snapshot."""
    result: dict[str, tuple[int, int]] = {}
    for line in path.read_text().splitlines():
        ops, entered, name = line.split(" ", 2)
        result[name] = (int(ops), int(entered))
    return result


def layer_of(function: str) -> str:
    path = function.replace(os.sep, "/")
    for fragment, layer in LAYERS:
        if fragment in path:
            return layer
    return "other"


# -- report ----------------------------------------------------------------------------------
def report(workload: str, cg: dict[str, Any], layers: dict[str, Any] | None, top: int) -> str:
    lines = [f"## {workload}: {cg['per_call']:,.0f} instructions per call", ""]
    lines += ["| shared object | instructions per call | share |", "|---|---:|---:|"]
    total = cg["per_call"]
    for name, cost in sorted(cg["objects"].items(), key=lambda kv: -kv[1]):
        if abs(cost) >= total * 0.005:
            lines.append(f"| {name} | {cost:,.0f} | {cost / total:.0%} |")
    if layers is not None:
        fns = layers["functions"]
        by_layer: collections.Counter[str] = collections.Counter()
        for fn, n in fns.items():
            by_layer[layer_of(fn)] += n
        ops = sum(by_layer.values()) or 1
        interp = cg["objects"].get(INTERPRETER, 0.0)
        lines += [
            "",
            f"Python code by layer ({ops:,.0f} bytecodes per call; the interpreter's "
            f"{interp:,.0f} instructions shared in proportion):",
            "",
            "| layer | bytecodes per call | ~instructions per call | share of the call |",
            "|---|---:|---:|---:|",
        ]
        for layer in LAYER_ORDER:
            n = by_layer.get(layer, 0)
            if n:
                est = interp * n / ops
                lines.append(f"| {layer} | {n:,.0f} | {est:,.0f} | {est / total:.0%} |")
        lines += [
            "",
            f"Top {top} Python functions (bytecodes, and times entered, per call):",
            "",
        ]
        entered = layers["calls"]
        for fn, n in sorted(fns.items(), key=lambda kv: -kv[1])[:top]:
            if n >= 0.5:
                lines.append(f"    {n:8.1f} {entered.get(fn, 0):6.2f}x  {fn}")
    return "\n".join(lines)


def pick_workloads(p: argparse.ArgumentParser, spec: str, known: Any) -> list[str]:
    """The comma-separated workloads of ``spec``, each one of ``known`` (else a usage error)."""
    workloads = [w for w in spec.split(",") if w]
    for w in workloads:
        if w not in known:
            p.error(f"unknown workload {w!r} (have {', '.join(known)})")
    return workloads


def have_tools(*tools: str) -> bool:
    """True if every tool is on PATH; otherwise say which is missing."""
    for tool in tools:
        if shutil.which(tool) is None:
            progress(f"error: {tool} is not installed (benchmarks/callgrind.sh installs it)")
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000, help="N (runs N, then 2N calls)")
    p.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                   help=f"comma-separated, of {', '.join(WORKLOADS)}")  # fmt: skip
    # One call in flight: one request per read, so the count does not depend on how
    # h2load's requests happen to batch (-c 10 -m 10 shares each read's cost among calls).
    p.add_argument("--clients", type=int, default=1, help="h2load -c (1)")
    p.add_argument("--streams", type=int, default=1, help="h2load -m (1)")
    p.add_argument("--keep", type=Path, default=None, help="keep the outputs in this directory")
    p.add_argument("--src", type=Path, default=None,
                   help="measure the h2mesh package under this src/ directory (an A/B "
                   "against another checkout, e.g. one made by git worktree)")  # fmt: skip
    p.add_argument("--no-layers", action="store_true", help="skip the bytecode count")
    p.add_argument("--top", type=int, default=25, help="Python functions to list")
    args = p.parse_args(argv)
    global SRC
    SRC = args.src.resolve() if args.src is not None else None
    workloads = pick_workloads(p, args.workloads, WORKLOADS)
    if not have_tools("valgrind", "callgrind_control", "h2load"):
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="h2mesh-callgrind-"))
    work.mkdir(parents=True, exist_ok=True)
    sections = []
    totals = []
    for w in workloads:
        progress(f"{w}:")
        cg = measure_callgrind(w, args.calls, args.clients, args.streams, work)
        layers = (
            None
            if args.no_layers or WORKLOADS[w][0] == "bare-ngh2"  # (no h2mesh layers in it)
            else measure_layers(w, args.calls, args.clients, args.streams, work)
        )
        sections.append(report(w, cg, layers, args.top))
        totals.append(f"{w} {cg['per_call']:,.0f}")
        print(sections[-1] + "\n", flush=True)
    print(f"instructions per server unary call: {', '.join(totals)}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

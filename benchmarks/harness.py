"""Runs every workload for every system and writes JSON, a markdown table and a chart.

``python -m benchmarks.harness [--quick | --smoke] [--systems a,b] [--workloads x,y] [--out DIR]``
(``benchmarks/run.sh`` installs the peers first). Servers run pinned to CPU 0, clients
and h2load to CPU 1, all on 127.0.0.1 with ports picked at run time; every server is
started in its own process group and killed at the end.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import report

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "bench.v1.Bench"
SERVER_CPU, CLIENT_CPU = 0, 1
# The grpc-go server (benchmarks/grpcgo), built by run.sh (benchmarks/grpcgo/build.sh).
GRPC_GO = Path(
    os.environ.get("H2MESH_GRPC_GO") or Path(tempfile.gettempdir()) / "h2mesh-bench-go" / "grpcgo"
)


@dataclass(frozen=True)
class System:
    name: str
    label: str
    # "h2mesh", "h2mesh-proto", "h2mesh-grpcio", "grpcio", "grpclib", "granian:<app>", "h2o"
    server: str
    client: str | None  # the Python client of benchmarks.clients, None = server-only
    h2load: str  # h2load's request: msgpack, json, grpc, grpc-msgpack, proto, fastapi, static
    modules: tuple[str, ...] = ()
    binaries: tuple[str, ...] = ()
    notes: str = ""


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System(
            "h2mesh-msgpack", "h2mesh Connect+MessagePack", "h2mesh", "h2mesh-msgpack", "msgpack"
        ),
        System("h2mesh-json", "h2mesh Connect+JSON", "h2mesh", "h2mesh-json", "json"),
        System(
            "h2mesh-grpc-msgpack",
            "h2mesh gRPC+MessagePack",
            "h2mesh",
            "h2mesh-grpc-msgpack",
            "grpc-msgpack",
        ),
        System(
            "h2mesh-grpc-proto",
            "h2mesh gRPC+protobuf",
            "h2mesh-proto",
            "h2mesh-grpc-proto",
            "grpc",
            modules=("google.protobuf", "grpc_tools"),
            notes="generated bench_pb2.Msg as the message type (codec proto)",
        ),
        System(
            "grpcio",
            "grpcio (grpc.aio)",
            "grpcio",
            "grpcio",
            "grpc",
            modules=("grpc", "grpc_tools"),
        ),
        System(
            "h2mesh-grpcio",
            "grpcio's aio handlers on h2mesh",
            "h2mesh-grpcio",
            "grpcio",
            "grpc",
            modules=("grpc", "grpc_tools"),
            notes="the grpcio row's handlers, added unchanged to an h2mesh Server",
        ),
        System(
            "connectrpc",
            "connect-python on granian / pyqwest",
            "granian:servers:connect_app",
            "connectrpc",
            "proto",
            modules=("connectrpc", "pyqwest", "granian", "grpc_tools"),
        ),
        System(
            "grpclib", "grpclib", "grpclib", "grpclib", "grpc", modules=("grpclib", "grpc_tools")
        ),
        System(
            "fastapi",
            "FastAPI on granian / httpx",
            "granian:fastapi_app:app",
            "fastapi",
            "fastapi",
            modules=("fastapi", "granian", "httpx", "h2"),
        ),
        System(
            "h2mesh-grpc-json",
            "h2mesh gRPC+JSON",
            "h2mesh",
            None,
            "grpc-json",
            notes="server only (h2load): the gRPC path beside Connect+JSON on one server",
        ),
        System(
            "grpc-go",
            "grpc-go (GOMAXPROCS=1)",
            "grpc-go",
            None,
            "grpc",
            notes="hand-written ServiceDesc, pass-through codec; the same protobuf bytes",
        ),
        System(
            "bare-ngh2",
            "bare ngh2 + uvloop (Python ceiling)",
            "bare-ngh2",
            "bare-ngh2",
            "json",
            notes="answers from the event callback: no routing, codec or task; its client"
            " (unary and bidi only) is as bare: a future per call, no framework",
        ),
        System(
            "h2o",
            "h2o static file (ceiling)",
            "h2o",
            None,
            "static",
            binaries=("h2o",),
            notes="serves a 38-byte file; no RPC",
        ),
    )
}

WORKLOADS = (
    "unary",
    "h2load",
    "server_stream",
    "client_stream",
    "bidi",
    "payload_1k",
    "payload_256k",
    "many_conns",
)
ALIASES = {"payload": ("payload_1k", "payload_256k"), "streaming": ("client_stream", "bidi")}

# The metric each workload is ranked by (all: higher is better).
PRIMARY = {
    "unary": "rps",
    "h2load": "rps",
    "server_stream": "msgs_per_s",
    "client_stream": "msgs_per_s",
    "bidi": "round_trips_per_s",
    "payload_1k": "mb_per_s",
    "payload_256k": "mb_per_s",
    "many_conns": "rps",
}


def counts(mode: str) -> dict[str, dict[str, int]]:
    """Per-workload counts for ``full``, ``quick`` or ``smoke``."""
    table = {
        #                 full     quick   smoke
        "unary_calls": (20000, 2000, 64),
        "h2load_requests": (50000, 4000, 100),
        "stream_messages": (50000, 4000, 20),
        "client_stream_messages": (50000, 4000, 20),
        "bidi_rounds": (10000, 800, 10),
        "payload_1k_calls": (10000, 1000, 16),
        "payload_256k_calls": (1000, 200, 4),
        "connections": (2000, 300, 8),
        "calls_per_connection": (5, 2, 1),
    }
    i = {"full": 0, "quick": 1, "smoke": 2}[mode]
    c = {k: v[i] for k, v in table.items()}
    return {
        "unary": {"calls": c["unary_calls"], "in_flight": 32},
        "h2load": {"requests": c["h2load_requests"], "clients": 10, "streams": 10},
        "server_stream": {"streams": 4, "messages": c["stream_messages"]},
        "client_stream": {"messages": c["client_stream_messages"]},
        "bidi": {"rounds": c["bidi_rounds"]},
        "payload_1k": {"calls": c["payload_1k_calls"], "in_flight": 8, "size": 1024},
        "payload_256k": {"calls": c["payload_256k_calls"], "in_flight": 8, "size": 256 * 1024},
        "many_conns": {
            "connections": c["connections"],
            "calls_per_connection": c["calls_per_connection"],
        },
    }


SETTINGS = {
    # repetitions, time limit of one workload (s), of server start (s)
    "full": (5, 180.0, 20.0),
    "quick": (3, 25.0, 15.0),
    "smoke": (1, 20.0, 15.0),
}


# -- processes --------------------------------------------------------------------------------
_LIVE: list[subprocess.Popen[bytes]] = []


def _pin(cpu: int) -> Any:
    if (os.cpu_count() or 1) < 2:
        return None

    def pin() -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})

    return pin


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL what is left after 3 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(3.0)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers of a server may outlive their parent
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(3.0)
    if proc in _LIVE:
        _LIVE.remove(proc)


def _kill_all() -> None:
    for proc in _LIVE:
        _kill_group(proc)


atexit.register(_kill_all)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {limit:.0f} s")


def _h2o_config(workdir: Path, port: int) -> Path:
    docs = workdir / "h2o-docs"
    docs.mkdir(exist_ok=True)
    # h2o started as root serves as "nobody": the files must be world-readable.
    for path in (workdir, docs):
        path.chmod(0o755)
    (docs / "msg").write_bytes(b"x" * 38)
    conf = workdir / "h2o.conf"
    conf.write_text(
        f"""listen:
  host: 127.0.0.1
  port: {port}
num-threads: 1
access-log: /dev/null
error-log: {workdir / "h2o-error.log"}
hosts:
  default:
    paths:
      /:
        file.dir: {docs}
"""
    )
    return conf


def start_server(system: System, port: int, workdir: Path, limit: float) -> subprocess.Popen[bytes]:
    py = sys.executable
    if system.server.startswith("granian:"):
        app = system.server.partition(":")[2]  # module:attribute inside benchmarks/
        cmd = [
            py, "-m", "granian", "--interface", "asgi", "--http", "2", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
            "--no-ws", "--log-level", "warning", "--backlog", "4096",
            f"benchmarks.{app}",
        ]  # fmt: skip
    elif system.server == "h2o":
        cmd = [shutil.which("h2o") or "h2o", "-c", str(_h2o_config(workdir, port))]
    elif system.server == "grpc-go":
        cmd = [str(GRPC_GO), str(port)]
    elif system.server == "bare-ngh2":
        cmd = [py, "-m", "benchmarks.bare_ngh2", str(port)]
    else:
        cmd = [py, "-m", "benchmarks.servers", system.server, str(port)]
    proc = spawn_server(cmd, workdir / f"{system.name}-server.log", _child_env())
    _LIVE.append(proc)
    try:
        _wait_listening(port, proc, limit)
    except Exception:
        _kill_group(proc)
        tail = (workdir / f"{system.name}-server.log").read_text(errors="replace")[-400:]
        raise RuntimeError(f"server did not start: {tail.strip() or 'no output'}") from None
    return proc


def spawn_server(cmd: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a server in its own process group, pinned to the server's CPU, output to a log."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_pin(SERVER_CPU),
            env=env,
        )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOMAXPROCS"] = "1"  # grpc-go on the server's one core, as the Python servers
    # H2MESH_BENCH_SRC: measure the h2mesh package of another tree (benchmarks/ab.py).
    first = env.get("H2MESH_BENCH_SRC", "")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (first, str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    return env


# -- h2load --------------------------------------------------------------------------------------
def _h2load_request(system: System, workdir: Path) -> tuple[str, list[str], Path | None]:
    """Path, extra headers and body file of the unary request h2load repeats."""
    name = "x" * 36
    body: bytes | None
    headers: list[str] = []
    path = f"/{SERVICE}/Echo"
    if system.h2load == "msgpack":
        import msgspec

        body = msgspec.msgpack.encode({"name": name})
        headers = ["content-type: application/msgpack"]
    elif system.h2load == "grpc-msgpack":
        import msgspec

        from . import _proto

        body = _proto.grpc_frame(msgspec.msgpack.encode({"name": name}))
        headers = ["content-type: application/grpc+msgpack", "te: trailers"]
    elif system.h2load == "grpc-json":
        from . import _proto

        body = _proto.grpc_frame(json.dumps({"name": name}).encode())
        headers = ["content-type: application/grpc+json", "te: trailers"]
    elif system.h2load in ("json", "fastapi"):
        body = json.dumps({"name": name}).encode()
        headers = ["content-type: application/json"]
    elif system.h2load in ("grpc", "proto"):
        from . import _proto

        msg = _proto.load().Msg(name=name).SerializeToString()
        if system.h2load == "grpc":
            body = _proto.grpc_frame(msg)
            headers = ["content-type: application/grpc", "te: trailers"]
        else:
            body = msg
            headers = ["content-type: application/proto", "connect-protocol-version: 1"]
    elif system.h2load == "static":
        body, path = None, "/msg"
    else:
        raise ValueError(system.h2load)
    body_file = None
    if body is not None:
        body_file = workdir / f"{system.name}-body.bin"
        body_file.write_bytes(body)
    return path, headers, body_file


_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed"
)
_REQ_TIME = re.compile(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)")


def _seconds(text: str) -> float:
    for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)


def run_h2load(
    system: System, port: int, params: dict[str, int], workdir: Path, limit: float
) -> dict[str, float]:
    path, headers, body_file = _h2load_request(system, workdir)
    cmd = [
        shutil.which("h2load") or "h2load",
        "-n", str(params["requests"]),
        "-c", str(params["clients"]),
        "-m", str(params["streams"]),
        "-t", "1",
    ]  # fmt: skip
    if body_file is not None:
        cmd += ["-d", str(body_file)]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=limit, preexec_fn=_pin(CLIENT_CPU)
    ).stdout
    finished, requests = _FINISHED.search(out), _REQUESTS.search(out)
    if finished is None or requests is None:
        raise RuntimeError(f"unexpected h2load output: {out[-300:]!r}")
    succeeded, failed = int(requests.group(2)), int(requests.group(3))
    status_2xx = re.search(r"status codes: (\d+) 2xx", out)
    if succeeded == 0 or (status_2xx is not None and int(status_2xx.group(1)) < succeeded):
        codes = re.search(r"status codes: .*", out)
        raise RuntimeError(
            f"h2load: {succeeded} succeeded, {failed} failed"
            + (f" ({codes.group(0)})" if codes else "")
        )
    result = {"rps": float(finished.group(3)), "failed": float(failed)}
    req_time = _REQ_TIME.search(out)
    if req_time is not None:
        result["mean_ms"] = _seconds(req_time.group(3)) * 1e3
    return result


# -- one system ------------------------------------------------------------------------------
@dataclass
class Run:
    mode: str
    systems: list[str]
    workloads: list[str]
    out: Path
    results: dict[str, Any] = field(default_factory=dict)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def availability(system: System, workloads: list[str]) -> str | None:
    """None if the system can run here, else why not."""
    for module in system.modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a dotted name whose parent package is missing
            found = False
        if not found:
            return f"unavailable: Python module {module!r} is not installed (extra 'bench')"
    if system.server == "grpc-go" and not GRPC_GO.is_file():
        why = os.environ.get("H2MESH_GRPC_GO_WHY") or "benchmarks/run.sh builds it"
        return f"unavailable: grpc-go server not built at {GRPC_GO} ({why})"
    for binary in system.binaries:
        if shutil.which(binary) is None:
            return f"unavailable: {binary} is not installed (apt-get install {binary})"
    if system.client is None and "h2load" in workloads and shutil.which("h2load") is None:
        return "unavailable: h2load is not installed (apt-get install nghttp2-client)"
    return None


def run_system(system: System, run: Run, workdir: Path) -> dict[str, Any]:
    reps, limit, start_limit = SETTINGS[run.mode]
    params = counts(run.mode)
    entry: dict[str, Any] = {"label": system.label, "notes": system.notes, "workloads": {}}
    why = availability(system, run.workloads)
    if why is not None:
        entry["status"] = why
        progress(f"[{system.name}] {why}")
        return entry
    port = free_port()
    progress(f"[{system.name}] starting server on 127.0.0.1:{port} (CPU {SERVER_CPU})")
    try:
        server = start_server(system, port, workdir, start_limit)
    except Exception as exc:
        entry["status"] = f"unavailable: {exc}"[:400]
        progress(f"[{system.name}] {entry['status']}")
        return entry
    entry["status"] = "ok"
    results: dict[str, Any] = entry["workloads"]
    try:
        if "h2load" in run.workloads:
            results["h2load"] = _h2load_workload(
                system, port, params["h2load"], reps, limit, workdir
            )
        client_workloads = [w for w in run.workloads if w != "h2load"]
        if system.client is None:
            for w in client_workloads:
                results[w] = {"status": "n/a: server-only system"}
        elif client_workloads:
            results.update(
                _client_workloads(system, port, server.pid, client_workloads, params, reps, limit)
            )
    finally:
        _kill_group(server)
    return entry


def _h2load_workload(
    system: System, port: int, params: dict[str, int], reps: int, limit: float, workdir: Path
) -> dict[str, Any]:
    result: dict[str, Any] = {"params": params}
    if shutil.which("h2load") is None:
        result["status"] = "unavailable: h2load is not installed (apt-get install nghttp2-client)"
        return result
    try:
        progress(f"  {system.name:>19} {'h2load':<14} warm-up")
        warm = dict(
            params, requests=max(params["clients"] * params["streams"], params["requests"] // 10)
        )
        run_h2load(system, port, warm, workdir, limit)
        rows = []
        for i in range(reps):
            progress(f"  {system.name:>19} {'h2load':<14} rep {i + 1}/{reps}")
            rows.append(run_h2load(system, port, params, workdir, limit))
        result.update(status="ok", reps=rows)
    except subprocess.TimeoutExpired:
        result["status"] = f"error: over the {limit:.0f} s time limit"
    except Exception as exc:
        result["status"] = f"error: {exc}"[:400]
    return result


def _client_workloads(
    system: System,
    port: int,
    server_pid: int,
    workloads: list[str],
    params: dict[str, dict[str, int]],
    reps: int,
    limit: float,
) -> dict[str, Any]:
    spec = {
        "system": system.name,
        "client": system.client,
        "port": port,
        "server_pid": server_pid,
        "repetitions": reps,
        "workloads": [{"name": w, "params": params[w], "time_limit": limit} for w in workloads],
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.clients", json.dumps(spec)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_pin(CLIENT_CPU),
        env=_child_env(),
    )
    _LIVE.append(proc)
    assert proc.stderr is not None
    tail: collections.deque[str] = collections.deque(maxlen=4)

    def forward(stream: IO[bytes]) -> None:  # progress lines go on to our stderr
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            sys.stderr.write(line + "\n")
            if line.strip():
                tail.append(line.strip())

    forwarder = threading.Thread(target=forward, args=(proc.stderr,), daemon=True)
    forwarder.start()
    results: dict[str, Any] = {}
    # The client bounds each workload itself; this timer is the backstop.
    backstop = threading.Timer(limit * (len(workloads) + 1) + 30, _kill_group, (proc,))
    backstop.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait()
    finally:
        backstop.cancel()
        _kill_group(proc)
        forwarder.join(5.0)
    for line in out.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            results[row.pop("workload")] = row
    why = f"error: client process ended (status {proc.returncode}): {' | '.join(tail)}"
    for w in workloads:
        results.setdefault(w, {"status": why[:400]})
    return results


# -- machine and summary -------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    versions: dict[str, str] = {}
    from importlib import metadata

    for dist in (
        "h2mesh", "ngh2", "uvloop", "msgspec", "grpcio", "protobuf", "grpclib",
        "connect-python", "pyqwest", "granian", "fastapi", "httpx",
    ):  # fmt: skip
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    for binary, flag in (("h2o", "--version"), ("h2load", "--version")):
        path = shutil.which(binary)
        if path:
            with contextlib.suppress(Exception):
                first = subprocess.run(
                    [path, flag], capture_output=True, text=True, timeout=5
                ).stdout.splitlines()
                versions[binary] = first[0].strip() if first else "?"
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "pinning": f"server CPU {SERVER_CPU}, client/h2load CPU {CLIENT_CPU}"
        if (os.cpu_count() or 1) >= 2
        else "none (one CPU)",
        "versions": versions,
    }


def summarize(systems: dict[str, Any]) -> None:
    """Add median/min/max per metric and the ratio of the primary metric to grpcio."""
    from .clients import summarize as stats

    for entry in systems.values():
        for result in entry.get("workloads", {}).values():
            if result.get("status") == "ok" and result.get("reps"):
                result["metrics"] = stats(result["reps"])
    base = systems.get("grpcio", {}).get("workloads", {})
    for entry in systems.values():
        for name, result in entry.get("workloads", {}).items():
            metric = PRIMARY[name]
            result["primary"] = metric
            ref = base.get(name, {}).get("metrics", {}).get(metric, {}).get("median")
            own = result.get("metrics", {}).get(metric, {}).get("median")
            result["ratio_to_grpcio"] = own / ref if own is not None and ref else None


# Systems every server-only (h2load) figure is also divided by: the C and Python
# ceilings, grpc-go on one core, and h2mesh's own Connect+JSON path.
CEILINGS = ("h2o", "bare-ngh2", "grpc-go", "h2mesh-json")


def server_only(systems: dict[str, Any]) -> dict[str, Any]:
    """h2load req/s of every system, and its ratio to each of ``CEILINGS`` in this run."""

    def rps(name: str) -> float | None:
        result = systems.get(name, {}).get("workloads", {}).get("h2load", {})
        value = result.get("metrics", {}).get("rps", {}).get("median")
        return float(value) if value else None

    table: dict[str, Any] = {}
    for name in systems:
        own = rps(name)
        if own is None:
            continue
        table[name] = {
            "rps": own,
            "ratio_to": {c: own / ref for c in CEILINGS if (ref := rps(c)) is not None},
        }
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="benchmarks/run.sh", description=__doc__)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small counts: under 2 minutes")
    mode.add_argument(
        "--smoke", action="store_true", help="tiny counts, h2mesh only: seconds (for CI)"
    )
    ap.add_argument("--systems", help=f"comma-separated, from: {', '.join(SYSTEMS)}")
    ap.add_argument("--workloads", help=f"comma-separated, from: {', '.join(WORKLOADS)}")
    ap.add_argument("--out", type=Path, help="output directory (default benchmarks/results)")
    return ap.parse_args(argv)


def _pick(arg: str | None, allowed: tuple[str, ...], default: list[str], what: str) -> list[str]:
    if not arg:
        return default
    picked: list[str] = []
    for name in (n.strip() for n in arg.split(",") if n.strip()):
        names = ALIASES.get(name, (name,)) if what == "workload" else (name,)
        for n in names:
            if n not in allowed:
                raise SystemExit(f"unknown {what} {n!r}; choose from {', '.join(allowed)}")
            if n not in picked:
                picked.append(n)
    return picked


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    default_systems = ["h2mesh-msgpack"] if mode == "smoke" else list(SYSTEMS)
    systems = _pick(args.systems, tuple(SYSTEMS), default_systems, "system")
    workloads = _pick(args.workloads, WORKLOADS, list(WORKLOADS), "workload")
    out = args.out or (ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    run = Run(mode, systems, workloads, out)
    started = time.monotonic()
    progress(f"h2mesh benchmark ({mode}): systems {', '.join(systems)}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="h2mesh-bench-") as tmp:
        try:
            for name in systems:
                results[name] = run_system(SYSTEMS[name], run, Path(tmp))
        finally:
            _kill_all()
    summarize(results)
    doc = {
        "schema": 1,
        "mode": mode,
        "machine": machine(),
        "duration_s": round(time.monotonic() - started, 1),
        "repetitions": SETTINGS[mode][0],
        "workloads": {w: {"primary": PRIMARY[w], "params": counts(mode)[w]} for w in workloads},
        "baseline": "grpcio",
        "systems": results,
        "server_only": server_only(results),
    }
    json_path = out / "latest.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    (out / "latest.md").write_text(report.markdown(doc))
    chart = report.chart(doc, out / "latest.png")
    progress(f"wrote {json_path}, {out / 'latest.md'}" + (f", {chart}" if chart else ""))
    progress(f"done in {doc['duration_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Routes benchmark: one endpoint as an h2mesh route GET, as the Connect POST of the same
method, and in FastAPI on granian and on uvicorn.

``python -m benchmarks.routes [--requests N] [--repeat K] [--only a,b] [--out DIR]`` (the
``bench`` extra installs the peers; ``--only h2mesh`` runs the rows whose name starts so).
Each server runs pinned to CPU 0, h2load to CPU 1, on 127.0.0.1 with ports picked at run
time; every system is measured ``--repeat`` times, interleaved, and the median is reported
with min and max. HTTP/1.1 rows use 50
connections with one request in flight each (what uvicorn can serve); HTTP/2 rows use
10 connections with 10 streams each. Writes ``routes.json`` and ``routes.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVER_CPU, CLIENT_CPU = 0, 1
GET_PATH = "/v1/items/7?verbose=true"
CONNECT_PATH = "/bench.v1.Items/GetItem"
CONNECT_BODY = b'{"id": 7, "verbose": true}'


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    server: str  # h2mesh, granian, uvicorn
    http: str  # "1.1" or "2"
    connect: bool = False


CASES = (
    Case("h2mesh-route-h2", "h2mesh route GET (HTTP/2)", "h2mesh", "2"),
    Case("h2mesh-connect-h2", "h2mesh Connect POST, same method (HTTP/2)", "h2mesh", "2", True),
    Case("fastapi-granian-h2", "FastAPI on granian (HTTP/2)", "granian", "2"),
    Case("h2mesh-route-h1", "h2mesh route GET (HTTP/1.1)", "h2mesh", "1.1"),
    Case("h2mesh-connect-h1", "h2mesh Connect POST, same method (HTTP/1.1)", "h2mesh", "1.1", True),
    Case("fastapi-granian-h1", "FastAPI on granian (HTTP/1.1)", "granian", "1.1"),
    Case("fastapi-uvicorn-h1", "FastAPI on uvicorn (HTTP/1.1)", "uvicorn", "1.1"),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: int) -> Any:
    def pin() -> None:
        os.setsid()
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})

    return pin


def _command(server: str, port: int, http: str) -> list[str]:
    py = sys.executable
    if server == "h2mesh":
        return [
            py, "-m", "h2mesh", "serve", "benchmarks.routes_app:Items",
            "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
    if server == "granian":
        return [
            py, "-m", "granian", "--interface", "asgi", "--http", "2" if http == "2" else "1",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--loop", "uvloop", "--no-ws", "benchmarks.routes_app:app",
        ]  # fmt: skip
    return [
        py, "-m", "uvicorn", "benchmarks.routes_app:app", "--host", "127.0.0.1",
        "--port", str(port), "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def _wait_ready(port: int, proc: subprocess.Popen[bytes], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError("server did not start listening")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


_FINISHED = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
_REQUESTS = re.compile(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed")
_STATUS = re.compile(r"status codes: (\d+) 2xx")


def _h2load(case: Case, port: int, requests: int, body: Path) -> float:
    cmd = [shutil.which("h2load") or "h2load", "-n", str(requests), "-t", "1"]
    if case.http == "1.1":
        cmd += ["--h1", "-c", "50", "-m", "1"]
    else:
        cmd += ["-c", "10", "-m", "10"]
    if case.connect:
        cmd += ["-d", str(body), "-H", "content-type: application/json"]
        cmd.append(f"http://127.0.0.1:{port}{CONNECT_PATH}")
    else:
        cmd.append(f"http://127.0.0.1:{port}{GET_PATH}")
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, preexec_fn=_pin(CLIENT_CPU)
    ).stdout
    done, reqs, status = _FINISHED.search(out), _REQUESTS.search(out), _STATUS.search(out)
    if not (done and reqs and status):
        raise RuntimeError(f"h2load output not understood: {out[-500:]}")
    if int(reqs.group(2)) or int(status.group(1)) != requests:
        raise RuntimeError(f"{case.name}: not every request succeeded: {out[-500:]}")
    return float(done.group(1))


def _check_same_answer(case: Case, port: int) -> None:
    """Every system answers the same JSON, so the rows compare the same work."""
    import httpx

    h2 = case.http == "2"
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=10, http1=not h2, http2=h2
    ) as client:
        if case.connect:
            r = client.post(
                CONNECT_PATH, content=CONNECT_BODY, headers={"content-type": "application/json"}
            )
        else:
            r = client.get(GET_PATH)
    expected = {"id": 7, "name": "item-7", "tags": ["a", "b"]}
    if (
        r.status_code != 200
        or r.json() != expected
        or r.http_version != ("HTTP/2" if h2 else "HTTP/1.1")
    ):
        raise RuntimeError(f"{case.name} answered {r.status_code} {r.text[:200]}")


def run(requests: int, repeat: int, cases: tuple[Case, ...] = CASES) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    samples: dict[str, list[float]] = {c.name: [] for c in cases}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.json"
        body.write_bytes(CONNECT_BODY)
        for _ in range(repeat):
            for case in cases:
                if case.name in errors:
                    continue
                port = _free_port()
                proc = subprocess.Popen(
                    _command(case.server, port, case.http),
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=_pin(SERVER_CPU),
                )
                try:
                    _wait_ready(port, proc)
                    _check_same_answer(case, port)
                    _h2load(case, port, max(requests // 10, 100), body)  # warm-up
                    samples[case.name].append(_h2load(case, port, requests, body))
                except Exception as exc:  # one system failing must not stop the others
                    errors[case.name] = str(exc)
                finally:
                    _stop(proc)
    rows = []
    for case in cases:
        got = samples[case.name]
        rows.append(
            {
                "name": case.name,
                "label": case.label,
                "http": case.http,
                "rps_median": statistics.median(got) if got else None,
                "rps_min": min(got) if got else None,
                "rps_max": max(got) if got else None,
                "samples": got,
                "error": errors.get(case.name),
            }
        )
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
        },
        "requests": requests,
        "repeat": repeat,
        "rows": rows,
    }


def _ratio(result: dict[str, Any], name: str, base: str) -> float | None:
    by_name = {r["name"]: r for r in result["rows"]}
    if name not in by_name or base not in by_name:
        return None
    a, b = by_name[name]["rps_median"], by_name[base]["rps_median"]
    return a / b if a and b else None


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Routes benchmark",
        "",
        f"{result['date']}, {result['machine']['cores']} cores, Python "
        f"{result['machine']['python']}, load average at the end "
        f"{', '.join(f'{x:.1f}' for x in result['machine']['load_average'])}; "
        f"{result['requests']} requests per run, median of {result['repeat']} runs.",
        "",
        "| system | req/s (median) | min | max |",
        "|---|---:|---:|---:|",
    ]
    for row in result["rows"]:
        if row["error"]:
            lines.append(f"| {row['label']} | error: {row['error'][:80]} | | |")
            continue
        lines.append(
            f"| {row['label']} | {row['rps_median']:,.0f} | {row['rps_min']:,.0f} "
            f"| {row['rps_max']:,.0f} |"
        )
    lines += ["", "| ratio | value |", "|---|---:|"]
    for name, base, what in (
        ("h2mesh-route-h2", "fastapi-granian-h2", "route GET vs FastAPI on granian, HTTP/2"),
        ("h2mesh-route-h1", "fastapi-granian-h1", "route GET vs FastAPI on granian, HTTP/1.1"),
        ("h2mesh-route-h1", "fastapi-uvicorn-h1", "route GET vs FastAPI on uvicorn, HTTP/1.1"),
        ("h2mesh-route-h2", "h2mesh-connect-h2", "route GET vs Connect POST, HTTP/2"),
    ):
        value = _ratio(result, name, base)
        lines.append(f"| {what} | {value:.2f}x |" if value else f"| {what} | n/a |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated prefixes of row names")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    prefixes = tuple(p for p in args.only.split(",") if p)
    cases = tuple(c for c in CASES if not prefixes or c.name.startswith(prefixes))
    result = run(args.requests, args.repeat, cases)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "routes.json").write_text(json.dumps(result, indent=2) + "\n")
    text = render(result)
    (args.out / "routes.md").write_text(text)
    sys.stdout.write(text)
    return 1 if any(r["error"] for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())

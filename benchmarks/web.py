"""Web-application hosting benchmark: the same apps on h2mesh and on other servers.

``python -m benchmarks.web [--smoke] [--duration S] [--repeat N] [--servers a,b] [--apps x,y]
[--out DIR]``

Apps (benchmarks/web_apps.py): a bare ASGI hello app, a FastAPI app, a Flask app (WSGI).
Servers: h2mesh (``h2mesh serve``), granian, h2corn, hypercorn, uvicorn (httptools, HTTP/1.1
only) and gunicorn (WSGI, HTTP/1.1 only; the gthread worker with 40 threads, as h2mesh's
WSGI pool), each one process with one worker, pinned to CPU 0; h2load pinned to CPU 1.
HTTP/2 (cleartext, prior knowledge): ``h2load -c 10 -m 10``; HTTP/1.1: ``h2load --h1 -c 50
-m 1`` (no pipelining). Each run is a warm-up then a timed run (``--warm-up-time 1 -D S``);
with ``--repeat N`` each row is run N times, in rounds over its servers, and the table gives
each server's median (``web.json`` keeps every run's rate).
Writes ``web.json``, ``web.md`` and ``web.png``; the conditions line gives the 1-minute load
average before the run (what other work was doing; the run's own processes raise it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVER_CPU, CLIENT_CPU = "0", "1"
WSGI_THREADS = 40  # h2mesh's default wsgi_threads, given to gunicorn's gthread worker too

APPS = {
    "hello": ("benchmarks.web_apps:hello", "asgi", "bare ASGI hello"),
    "fastapi": ("benchmarks.web_apps:fastapi_app", "asgi", "FastAPI"),
    "flask": ("benchmarks.web_apps:flask_app", "wsgi", "Flask (WSGI)"),
}
# server -> (interfaces it hosts, protocols it speaks in cleartext)
SERVERS: dict[str, tuple[set[str], set[str]]] = {
    "h2mesh": ({"asgi", "wsgi"}, {"h2", "h1"}),
    # The same Flask app behind a2wsgi's adapter, hosted by h2mesh as an ASGI app.
    "h2mesh-a2wsgi": ({"wsgi"}, {"h2", "h1"}),
    "granian": ({"asgi", "wsgi"}, {"h2", "h1"}),
    "h2corn": ({"asgi"}, {"h2", "h1"}),
    "hypercorn": ({"asgi"}, {"h2", "h1"}),
    "uvicorn": ({"asgi"}, {"h1"}),
    "gunicorn": ({"wsgi"}, {"h1"}),
}


def _command(server: str, target: str, interface: str, port: int, proto: str) -> list[str]:
    host = "127.0.0.1"
    if server == "h2mesh-a2wsgi":
        return [str(BIN / "h2mesh"), "serve", "benchmarks.web_apps:a2wsgi_flask",
                "--interface", "asgi", "--host", host, "--port", str(port),
                "--log-level", "warning"]  # fmt: skip
    if server == "h2mesh":
        return [str(BIN / "h2mesh"), "serve", target, "--interface", interface,
                "--host", host, "--port", str(port), "--log-level", "warning"]  # fmt: skip
    if server == "granian":
        http = "2" if proto == "h2" else "1"
        return [str(BIN / "granian"), "--interface", interface, "--host", host,
                "--port", str(port), "--workers", "1", "--http", http, "--no-ws",
                "--log-level", "warning", target]  # fmt: skip
    if server == "h2corn":
        return [str(BIN / "h2corn"), "-b", f"{host}:{port}", "--no-access-log", target]
    if server == "hypercorn":
        return [str(BIN / "hypercorn"), "-b", f"{host}:{port}", "-k", "uvloop",
                "--log-level", "warning", target]  # fmt: skip
    if server == "uvicorn":
        return [str(BIN / "uvicorn"), "--host", host, "--port", str(port), "--http",
                "httptools", "--loop", "uvloop", "--no-access-log", "--log-level",
                "warning", target]  # fmt: skip
    if server == "gunicorn":
        # The threaded worker, as Flask is deployed behind gunicorn for keep-alive
        # clients: the default sync worker serves one connection at a time and closes it
        # after each response, so 50 keep-alive connections never finish. As many
        # threads as h2mesh's WSGI pool has (wsgi_threads), in one worker.
        return [str(BIN / "gunicorn"), "-w", "1", "--worker-class", "gthread",
                "--threads", str(WSGI_THREADS), "-b", f"{host}:{port}",
                "--log-level", "warning", target]  # fmt: skip
    raise ValueError(server)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# What is sent to see whether a worker serves: an HTTP/1.1 request, or the HTTP/2 preface
# with an empty SETTINGS frame (any byte back means a worker took the connection).
_PROBES = {
    "h1": b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    "h2": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
}


def _wait_serving(
    port: int, proto: str, proc: subprocess.Popen[bytes], timeout: float = 30.0
) -> None:
    """Until a worker answers: a supervisor (gunicorn's master) accepts connections into
    its listening socket before its worker has imported the app, and that start-up must
    not count in the timed run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        with socket.socket() as sock:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                sock.connect(("127.0.0.1", port))
                sock.sendall(_PROBES[proto])
                if sock.recv(1):
                    return
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError("server did not start serving")


def _h2load(port: int, proto: str, duration: float, smoke: bool) -> dict[str, Any]:
    args = ["taskset", "-c", CLIENT_CPU, shutil.which("h2load") or "h2load"]
    args += ["--h1", "-c", "50", "-m", "1"] if proto == "h1" else ["-c", "10", "-m", "10"]
    if smoke:
        args += ["-n", "200"]
    else:
        args += ["--warm-up-time", "1", "-D", f"{duration:g}"]
    try:
        out = subprocess.run(
            [*args, f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=duration + 60, check=False,
        ).stdout  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": "h2load did not finish in time"}
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    ok2xx = re.search(r"status codes: (\d+) 2xx", out)
    if rps is None or done is None:
        return {"error": out[-500:] or "h2load failed"}
    return {
        "rps": float(rps.group(1)),
        "requests": int(done.group(2)),
        "succeeded": int(done.group(3)),
        "status_2xx": int(ok2xx.group(1)) if ok2xx else 0,
    }


def run_one(server: str, app: str, proto: str, duration: float, smoke: bool) -> dict[str, Any]:
    target, interface, _ = APPS[app]
    port = _free_port()
    cmd = ["taskset", "-c", SERVER_CPU, *_command(server, target, interface, port, proto)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _wait_serving(port, proto, proc)
        result = _h2load(port, proto, duration, smoke)
    except RuntimeError as exc:
        result = {"error": str(exc)}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    if "error" in result:
        result["stderr"] = stderr[-500:]
    return {"server": server, "app": app, "proto": proto, **result}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate of ``runs`` (a failed one, if any failed), with every
    run's rate under ``runs_rps``."""
    failed = [r for r in runs if "rps" not in r]
    if failed:
        return failed[0]
    ordered = sorted(runs, key=lambda r: r["rps"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        median["runs_rps"] = [r["rps"] for r in runs]
    return median


def _available(server: str) -> bool:
    if server == "h2mesh-a2wsgi":
        import importlib.util

        return importlib.util.find_spec("a2wsgi") is not None
    return (BIN / server).exists()


def _markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"# Web hosting benchmark ({doc['date']})",
        "",
        doc["conditions"],
        "",
        "| app | protocol | " + " | ".join(doc["servers"]) + " | h2mesh vs each |",
        "|---|---|" + "---|" * len(doc["servers"]) + "---|",
    ]
    by = {(r["server"], r["app"], r["proto"]): r for r in doc["results"]}
    for app in doc["apps"]:
        for proto in ("h2", "h1"):
            cells, ratios = [], []
            mine = by.get(("h2mesh", app, proto), {}).get("rps")
            for server in doc["servers"]:
                r = by.get((server, app, proto))
                if r is None:
                    cells.append("n/a")
                elif "rps" in r:
                    cells.append(f"{r['rps']:,.0f}")
                    if server != "h2mesh" and mine:
                        ratios.append(f"{server} {mine / r['rps']:.2f}x")
                else:
                    cells.append("failed")
            label = APPS[app][2]
            name = "HTTP/2" if proto == "h2" else "HTTP/1.1"
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + f" | {', '.join(ratios)} |")
    lines.append("")
    lines.append("Requests per second (higher is better); n/a = the server does not host that app "
                 "or speak that protocol in cleartext.")  # fmt: skip
    return "\n".join(lines) + "\n"


def _chart(doc: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    groups = [(a, p) for a in doc["apps"] for p in ("h2", "h1")]
    servers = doc["servers"]
    by = {(r["server"], r["app"], r["proto"]): r.get("rps", 0.0) for r in doc["results"]}
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(servers)
    for i, server in enumerate(servers):
        xs = [g + i * width for g in range(len(groups))]
        ax.bar(xs, [by.get((server, a, p), 0.0) for a, p in groups], width, label=server)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels(
        [f"{APPS[a][2]}\n{'HTTP/2' if p == 'h2' else 'HTTP/1.1'}" for a, p in groups]
    )
    ax.set_ylabel("requests/s")
    ax.set_title("Hosted web apps: one process, server on CPU 0, h2load on CPU 1")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _load_words(load: float) -> str:
    """What the load average before a run says of the machine, in words."""
    if load < 0.5:
        return "the machine was otherwise idle"
    return f"other work was using the machine, about {load:.1f} cores' worth"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="200 requests a row; h2mesh only unless --servers"
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per row, in rounds over the servers; the table gives each one's median",
    )
    parser.add_argument("--servers", default=None)
    parser.add_argument("--apps", default=",".join(APPS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    if args.servers is None:
        servers = ["h2mesh"] if args.smoke else list(SERVERS)
    else:
        servers = [s for s in args.servers.split(",") if s]
        unknown = sorted(set(servers) - SERVERS.keys())
        if unknown:
            parser.error(f"unknown servers {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    # The load before the benchmark starts says whether other work shares the machine
    # (its own processes raise the load average while it runs).
    load_before = os.getloadavg()[0]
    apps = [a for a in args.apps.split(",") if a]
    results = []
    # Servers compared on one app and protocol run back to back, so that a change in the
    # machine's load moves them together as far as possible.
    for app in apps:
        interface = APPS[app][1]
        for proto in ("h2", "h1"):
            row = []
            for server in servers:
                interfaces, protos = SERVERS[server]
                if interface not in interfaces or proto not in protos:
                    continue
                if not _available(server):
                    results.append({"server": server, "app": app, "proto": proto,
                                    "error": "not installed"})  # fmt: skip
                    continue
                row.append(server)
            # Round after round over the row's servers, so that a drift in the machine's
            # speed reaches each of them alike.
            runs: dict[str, list[dict[str, Any]]] = {server: [] for server in row}
            for _ in range(max(1, args.repeat)):
                for server in row:
                    result = run_one(server, app, proto, args.duration, args.smoke)
                    shown = f"{result['rps']:,.0f} req/s" if "rps" in result else result["error"]
                    print(f"{app:8} {proto} {server:10} {shown}", file=sys.stderr, flush=True)
                    runs[server].append(result)
            results.extend(_median_run(runs[server]) for server in row)
    doc = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "conditions": (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; one server process (one worker) on CPU 0, h2load on "
            f"CPU 1; HTTP/2 `-c 10 -m 10`, HTTP/1.1 `--h1 -c 50 -m 1`; "
            + (
                "smoke run (200 requests)"
                if args.smoke
                else f"{args.duration:g} s per run after 1 s warm-up"
            )
            + (
                f", the median of {args.repeat} runs taken in rounds over the servers"
                if args.repeat > 1
                else ""
            )
            + f"; 1-minute load average before the run {load_before:.1f}: "
            + _load_words(load_before)
            + "."
        ),
        "load_average_before": load_before,
        "repeat": max(1, args.repeat),
        "servers": [s for s in SERVERS if s in servers],
        "apps": apps,
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "web.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "web.md").write_text(_markdown(doc))
    if not args.smoke:
        _chart(doc, out / "web.png")
    failed = [r for r in results if "error" in r and r["server"] == "h2mesh"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

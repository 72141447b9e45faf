"""What observability costs on the unary benchmark: h2mesh with metrics on, with the access
log on, with both, and with tracing, against plain h2mesh, in one run.

Each configuration is ``h2mesh serve benchmarks.servers:Bench`` pinned to CPU 0; h2load
(pinned to CPU 1) sends unary Connect JSON calls. Configurations take turns, round after
round, so that a change in the machine's load hits them all alike; the median of the
rounds is reported, and each configuration's ratio to plain h2mesh: the median of the
ratios taken round by round (the two ran within seconds of each other), which drifting
load disturbs less than a ratio of medians. Two measures: calls per second, and the
server's CPU time per call (from /proc, user + system), which stays meaningful when
other work shares the CPUs and throughput does not::

    .venv/bin/python benchmarks/observability.py [--requests 60000] [--rounds 5] \
        [--json benchmarks/results/observability.json] [--md benchmarks/results/observability.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
H2MESH = Path(sys.executable).parent / "h2mesh"
SERVER_CPU, CLIENT_CPU = "0", "1"

# (target, flags). "plain" has opentelemetry-api installed but no SDK set up: tracing
# is off, so it is also the "tracing without an SDK" row.
CONFIGS: dict[str, tuple[str, list[str]]] = {
    "plain (= tracing, no SDK)": ("benchmarks.servers:Bench", []),
    "metrics (--admin-port)": ("benchmarks.servers:Bench", ["--admin-port", "0"]),
    "access log (--access-log FILE)": (
        "benchmarks.servers:Bench",
        ["--access-log", "{tmp}/access.log"],
    ),
    "metrics + access log": (
        "benchmarks.servers:Bench",
        ["--admin-port", "0", "--access-log", "{tmp}/access2.log"],
    ),
    "tracing, SDK without exporter": ("benchmarks.traced_bench:Bench", []),
}
BASE = "plain (= tracing, no SDK)"

_RPS = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
_OK = re.compile(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded")


def start(target: str, flags: list[str], tmp: str) -> tuple[subprocess.Popen[bytes], int]:
    cmd = ["taskset", "-c", SERVER_CPU, str(H2MESH), "serve", target]
    cmd += ["--port", "0", "--log-level", "warning", *(f.format(tmp=tmp) for f in flags)]
    # Unbuffered, so that select() sees every line not read yet.
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, bufsize=0)
    assert proc.stdout is not None
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline().decode() if ready else ""
        if line.startswith("h2mesh serving on "):
            return proc, int(line.rsplit(":", 1)[1])
        if not line.startswith("h2mesh admin on "):
            proc.kill()
            raise RuntimeError(f"server did not start: {line!r}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def h2load(port: int, requests: int, body: Path) -> float:
    cmd = ["taskset", "-c", CLIENT_CPU, shutil.which("h2load") or "h2load"]
    cmd += ["-n", str(requests), "-c", "10", "-m", "10", "-t", "1", "-d", str(body)]
    cmd += ["-H", "content-type: application/json"]
    cmd.append(f"http://127.0.0.1:{port}/bench.v1.Bench/Echo")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    rps, ok = _RPS.search(out), _OK.search(out)
    if rps is None or ok is None or int(ok[1]) != requests:
        raise RuntimeError(f"h2load failed: {out[-400:]}")
    return float(rps[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--md", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in CONFIGS}
    cpu: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.json"
        body.write_text(json.dumps({"name": "x" * 36}))
        for _ in range(args.rounds):
            for name, (target, flags) in CONFIGS.items():
                proc, port = start(target, flags, tmp)
                try:
                    h2load(port, 5_000, body)  # warm-up
                    before = cpu_seconds(proc.pid)
                    results[name].append(h2load(port, args.requests, body))
                    cpu[name].append((cpu_seconds(proc.pid) - before) / args.requests * 1e6)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(20)
    load = os.getloadavg()
    head = (
        f"unary Connect JSON, h2load -c 10 -m 10, {args.requests} calls, "
        f"{args.rounds} rounds; load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    rows = []
    for name, values in results.items():
        rps_ratio = statistics.median(v / b for v, b in zip(values, results[BASE], strict=True))
        cpu_ratio = statistics.median(b / v for v, b in zip(cpu[name], cpu[BASE], strict=True))
        rows.append(
            (name, statistics.median(values), rps_ratio, statistics.median(cpu[name]), cpu_ratio)
        )
    print(head)
    print(
        f"{'configuration':<32} {'req/s':>8} {'ratio':>6} {'CPU/call':>9} {'ratio':>6}"
        "   CPU µs per call, per round"
    )
    for name, rps, rps_ratio, cpu_us, cpu_ratio in rows:
        rounds = " ".join(f"{v:.1f}" for v in cpu[name])
        print(
            f"{name:<32} {rps:>8.0f} {rps_ratio:>6.3f} {cpu_us:>7.1f}µs {cpu_ratio:>6.3f}"
            f"   {rounds}"
        )
    if args.json is not None:
        data = {"rps": results, "cpu_us_per_call": cpu, "load": load, "setup": head}
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    if args.md is not None:
        lines = [
            head,
            "",
            "| configuration | req/s (median) | req/s ratio | CPU µs/call (median) "
            "| CPU/call ratio (plain / this) |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {rps:.0f} | {rps_ratio:.3f} | {cpu_us:.1f} | {cpu_ratio:.3f} |"
            for name, rps, rps_ratio, cpu_us, cpu_ratio in rows
        ]
        args.md.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""How evenly do workers share connections: one shared listening socket vs SO_REUSEPORT.

Starts ``h2mesh serve --workers N`` (with and without ``--reuse-port``), opens C
connections at once (one ``Channel`` each, one call each, replies carry the worker's pid)
and prints how many connections each worker took, for several rounds::

    .venv/bin/python benchmarks/worker_spread.py --workers 2 --connections 200 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from tests.e2e.worker_service import PidRequest, Workers  # noqa: E402

from h2mesh import Channel  # noqa: E402

H2MESH = Path(sys.executable).parent / "h2mesh"


def start(workers: int, reuse_port: bool) -> tuple[subprocess.Popen[bytes], str]:
    cmd = [str(H2MESH), "serve", "tests.e2e.worker_service:Workers", "--port", "0"]
    cmd += ["--workers", str(workers), "--log-level", "warning"]
    if reuse_port:
        cmd.append("--reuse-port")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline().decode()
    assert line.startswith("h2mesh serving on "), line
    return proc, line.split()[-1]


async def one_round(url: str, connections: int) -> collections.Counter[int]:
    channels = [Channel(url) for _ in range(connections)]
    try:
        replies = await asyncio.gather(
            *(ch.stub(Workers).pid(PidRequest(), timeout=10) for ch in channels)
        )
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))
    return collections.Counter(r.pid for r in replies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for reuse_port in (False, True):
        proc, url = start(args.workers, reuse_port)
        try:
            shares = []
            for _ in range(args.rounds):
                counts = asyncio.run(one_round(url, args.connections))
                shares.append(
                    sorted(counts.values(), reverse=True) + [0] * (args.workers - len(counts))
                )
            mode = "SO_REUSEPORT" if reuse_port else "shared socket"
            print(f"{mode:>14}: connections per worker, per round: {shares}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


if __name__ == "__main__":
    main()

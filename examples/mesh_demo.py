"""The mesh demo: three Greeter replicas announce themselves in the embedded registry, and
one ``least_request`` client spreads calls over them.

    python examples/mesh_demo.py [--calls 3000] [--concurrency 32]

Each replica is a separate ``h2mesh serve examples.mesh_demo:replica --register
demo.v1.Greeter`` process; the registry is a SQLite file in a temporary directory
(``H2MESH_REGISTRY``). At the end the replicas get SIGTERM: each deregisters, drains and
exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.greeter import Greeter, HelloRequest  # noqa: E402
from h2mesh import Channel, Context, ResponseMetadata, Server, ServerInterceptor  # noqa: E402
from h2mesh.discovery import Registry  # noqa: E402

SERVICE = "demo.v1.Greeter"


class ServedBy(ServerInterceptor):
    """Tags every response with the process that served it, so the client can count."""

    pid = str(os.getpid())

    async def intercept(self, call_next: Any, request: Any, ctx: Context) -> Any:
        ctx.response_headers["x-served-by"] = self.pid
        return await call_next(request, ctx)


#: What each replica process serves.
replica = Server([Greeter()], interceptors=[ServedBy()])


def h2mesh(*args: str) -> list[str]:
    return [sys.executable, "-m", "h2mesh", *args]


def start_replicas(count: int, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    procs = [
        subprocess.Popen(
            h2mesh(
                "serve",
                "examples.mesh_demo:replica",
                "--port",
                "0",
                "--register",
                SERVICE,
                "--register-ttl",
                "5",
                "--log-level",
                "warning",
            ),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    for proc in procs:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15.0)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("h2mesh serving on"):
            for p in procs:
                p.kill()
            raise SystemExit(f"a replica did not start: {line!r}")
        print(f"   replica pid {proc.pid}: {line}")
    return procs


async def load(calls: int, concurrency: int) -> tuple[Counter[str], list[float], float]:
    served: Counter[str] = Counter()
    latencies: list[float] = []
    numbers = iter(range(calls))
    async with Channel(f"registry://{SERVICE}", policy="least_request", timeout=5.0) as ch:
        greeter = ch.stub(Greeter)
        loop = asyncio.get_running_loop()

        async def worker() -> None:
            for i in numbers:
                md = ResponseMetadata()
                t = loop.time()
                await greeter.say_hello(HelloRequest(name=f"caller {i}"), metadata=md)
                latencies.append(loop.time() - t)
                served[str(md.headers.get("x-served-by"))] += 1

        start = loop.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return served, latencies, loop.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="h2mesh-demo-") as tmp:
        registry = Path(tmp) / "registry.db"
        env = {**os.environ, "H2MESH_REGISTRY": str(registry)}
        os.environ["H2MESH_REGISTRY"] = str(registry)
        print(f"== registry {registry}; starting {args.replicas} replicas")
        procs = start_replicas(args.replicas, env)
        try:
            print("== h2mesh registry list")
            subprocess.run(h2mesh("registry", "list"), env=env, check=True)

            print(f"== {args.calls} calls, {args.concurrency} at a time, policy least_request")
            served, latencies, elapsed = asyncio.run(load(args.calls, args.concurrency))
            db = Registry(registry)
            addresses = {ep.metadata.get("pid"): ep.address for ep in db.lookup(SERVICE)[0]}
            db.close()
            for pid, n in sorted(served.items()):
                where = addresses.get(pid, "?")
                print(f"   {where:<21} pid {pid:<8} {n:>6} calls  {n / args.calls:6.1%}")
            latencies.sort()
            p50 = latencies[len(latencies) // 2] * 1000
            p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000
            print(
                f"   latency p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
                f"{args.calls / elapsed:,.0f} calls/s"
            )
        finally:
            print("== SIGTERM to every replica (deregister, GOAWAY, drain)")
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            codes = [proc.wait(30) for proc in procs]
            print(f"   exit codes {codes} after {time.monotonic() - t0:.1f}s")
        print("== h2mesh registry list")
        subprocess.run(h2mesh("registry", "list"), env=env, check=True)


if __name__ == "__main__":
    main()

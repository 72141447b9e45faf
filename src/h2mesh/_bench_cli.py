"""``h2mesh bench TARGET METHOD JSON``: load a method and report its latency (as ghz does).

``--concurrency`` workers call the method back to back over one Channel (so TARGET may be
``registry://name`` and the load is balanced) for ``--duration`` seconds or ``--calls``
calls, whichever ends first. A progress line goes to stderr every second; at the end, a
summary, a latency histogram, percentiles and the count of each status.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import sys
import time
from collections import Counter
from typing import Any, TextIO

from ._call_cli import (
    _PROTOCOLS,
    _from_json,
    _messages,
    _parse_headers,
    _run,
    connection_options,
    open_channel,
    resolve_method,
)
from ._cli_util import UsageError
from ._errors import Code, RpcError
from .service import MethodKind

__all__ = ["Results", "add_bench_parser"]


class Results:
    """Latencies (seconds) of the successful calls, and the count of each status."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.started = time.monotonic()
        self.ended: float | None = None

    def add(self, seconds: float, status: str = "OK") -> None:
        self.statuses[status] += 1
        if status == "OK":
            self.latencies.append(seconds)

    @property
    def count(self) -> int:
        return sum(self.statuses.values())

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return math.nan
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def progress(self) -> str:
        """One line: elapsed, calls, rate, errors, recent percentiles."""
        recent = self.latencies[-5000:]
        p50 = _ms(sorted(recent)[len(recent) // 2]) if recent else "-"
        errors = self.count - self.statuses["OK"]
        rate = self.count / self.elapsed if self.elapsed > 0 else 0.0
        return (
            f"{self.elapsed:5.1f}s  {self.count:,} calls  {rate:,.0f}/s  "
            f"{errors:,} errors  p50 {p50}"
        )

    def report(self, out: TextIO) -> None:
        """The summary, histogram, percentiles and statuses, as text."""
        lat = self.latencies
        total = self.elapsed
        out.write("\nSummary:\n")
        out.write(f"  Count:        {self.count:,}\n")
        out.write(f"  Total:        {total:.2f} s\n")
        if lat:
            out.write(f"  Slowest:      {_ms(max(lat))}\n")
            out.write(f"  Fastest:      {_ms(min(lat))}\n")
            out.write(f"  Average:      {_ms(sum(lat) / len(lat))}\n")
        out.write(f"  Requests/sec: {self.count / total if total > 0 else 0:,.2f}\n")
        if lat:
            out.write("\nResponse time histogram:\n")
            for edge, count, bar in histogram(lat):
                out.write(f"  {_ms(edge):>10} [{count}]\t|{bar}\n")
            out.write("\nLatency distribution:\n")
            for q in (0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99, 0.999):
                out.write(f"  {q * 100:g} % in {_ms(self.percentile(q))}\n")
        out.write("\nStatus code distribution:\n")
        for status, count in self.statuses.most_common():
            out.write(f"  [{status}]\t{count:,} responses\n")


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1000:.2f} ms"


def histogram(
    latencies: list[float], buckets: int = 10, width: int = 40
) -> list[tuple[float, int, str]]:
    """(upper edge, count, bar) of ``buckets`` equal-width buckets from fastest to slowest."""
    low, high = min(latencies), max(latencies)
    step = (high - low) / buckets or 1e-9
    edges = [low + step * (i + 1) for i in range(buckets)]
    counts = [0] * buckets
    for value in latencies:
        counts[min(buckets - 1, bisect.bisect_left(edges, value))] += 1
    peak = max(counts)
    return [(edges[i], counts[i], "■" * round(width * counts[i] / peak)) for i in range(buckets)]


async def _bench(args: argparse.Namespace) -> None:
    protocol = _PROTOCOLS[args.protocol]
    headers = _parse_headers(args.header) or None
    values = _messages(args.body)
    if len(values) != 1:
        raise UsageError("bench takes exactly one JSON request")
    if args.concurrency < 1 or args.duration <= 0:
        raise UsageError("--concurrency must be >= 1 and --duration > 0")
    method, codec, _ = await resolve_method(args, headers or {}, protocol)
    if method.kind.client_streams:
        raise UsageError(f"{args.method} is a client or bidi stream; bench calls unary methods")
    request = _from_json(method, values[0])
    results = Results()
    deadline = time.monotonic() + args.duration
    budget = [args.calls if args.calls else math.inf]
    tty = sys.stderr.isatty()

    async with open_channel(args, protocol, codec, timeout=args.timeout) as channel:

        async def call_once() -> None:
            if method.kind is MethodKind.UNARY:
                await channel.unary(method, request, headers=headers)
            else:
                async for _ in channel.stream(method, request, headers=headers):
                    pass

        async def worker() -> None:
            while time.monotonic() < deadline and budget[0] > 0:
                budget[0] -= 1
                start = time.perf_counter()
                try:
                    await call_once()
                except RpcError as exc:
                    results.add(time.perf_counter() - start, exc.code.name)
                else:
                    results.add(time.perf_counter() - start)

        async def progress() -> None:
            while True:
                await asyncio.sleep(1.0)
                end = "\r" if tty else "\n"
                sys.stderr.write(results.progress() + end)
                sys.stderr.flush()

        reporter = asyncio.ensure_future(progress())
        try:
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        finally:
            reporter.cancel()
            results.ended = time.monotonic()
    if tty:
        sys.stderr.write("\n")
    results.report(sys.stdout)
    sys.stdout.flush()
    if results.count and not results.statuses["OK"]:
        first = next(iter(results.statuses))
        raise RpcError(Code[first], f"every call failed ({first})")


def _run_bench(args: argparse.Namespace) -> int:
    return _run(_bench(args))


def add_bench_parser(sub: Any) -> None:
    """Register ``h2mesh bench``."""
    bench = sub.add_parser(
        "bench",
        parents=[connection_options()],
        help="load a method and print a latency histogram",
        description="Call SERVICE/METHOD at TARGET (a URL, HOST:PORT or a discovery target "
        "such as registry://NAME) from --concurrency workers for --duration seconds, "
        "printing progress each second, then a summary, a histogram and percentiles.",
    )
    bench.add_argument("url", metavar="TARGET")
    bench.add_argument("method", metavar="SERVICE/METHOD")
    bench.add_argument("body", metavar="JSON", nargs="?", default="{}")
    bench.add_argument("-c", "--concurrency", type=int, default=10, help="workers (default 10)")
    bench.add_argument(
        "-z", "--duration", type=float, default=10.0, metavar="SECONDS", help="(default 10)"
    )
    bench.add_argument("-n", "--calls", type=int, default=0, help="stop after this many calls")
    bench.add_argument("--protocol", choices=sorted(_PROTOCOLS), default="connect")
    bench.set_defaults(func=_run_bench)

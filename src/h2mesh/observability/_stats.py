"""Call statistics kept in plain Python: counts and latency histograms per method and code.

A server records each call into a ``CallStats`` with a few integer operations (no locks,
no label lookups); prometheus-client only runs when ``/metrics`` is scraped, from a
``Snapshot``. Worker processes write their snapshot to a shared directory every second
and the supervisor merges them, which costs nothing per call (prometheus-client's own
multiprocess mode writes an mmap file on every observation; see docs/deployment.md).
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

__all__ = [
    "DURATION_BOUNDS",
    "CallStats",
    "Series",
    "Snapshot",
    "merge_series",
    "quantile",
    "read_snapshot",
    "write_snapshot",
]

#: Upper bounds (seconds) of the call-duration histogram buckets; +Inf is implied.
#: Finer than OpenTelemetry's default advice at the low end: local calls take ~100 µs.
DURATION_BOUNDS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# rpc.system values of OpenTelemetry's RPC semantic conventions, by wire protocol.
_SYSTEMS = {"connect": "connect_rpc", "grpc": "grpc", "grpc-web": "grpc"}


class Series(msgspec.Struct, array_like=True):
    """One labelled histogram: calls of one method that ended with one code."""

    side: str  # "server" or "client"
    system: str
    service: str
    method: str
    code: str
    count: int = 0
    total: float = 0.0
    buckets: list[int] = msgspec.field(default_factory=lambda: [0] * (len(DURATION_BOUNDS) + 1))

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.side, self.system, self.service, self.method, self.code)


class Snapshot(msgspec.Struct):
    """What one process has counted so far, as written to the shared directory."""

    pid: int
    started: float  # time.time() when the process started serving
    series: list[Series] = []
    gauges: dict[str, float] = {}
    counters: dict[str, float] = {}


class CallStats:
    """Counts and latency histograms of calls, keyed cheaply, labelled once per series."""

    def __init__(self) -> None:
        #: Label-set key -> its series; ``series()`` adds one.
        self.table: dict[Any, Series] = {}
        self.active = 0  # calls in flight
        #: Sampled when a snapshot is taken (e.g. open connections).
        self.gauges: dict[str, Callable[[], float]] = {}
        #: Monotonic counts kept by their owner (e.g. connections accepted).
        self.counters: dict[str, Callable[[], float]] = {}

    def series(
        self, key: Any, side: str, protocol: str, service: str, method: str, code: str
    ) -> Series:
        """The series of one label set (``key`` is any cheap, hashable stand-in for it)."""
        series = self.table.get(key)
        if series is None:
            system = _SYSTEMS.get(protocol, protocol)
            series = self.table[key] = Series(side, system, service, method, code)
        return series

    def record(
        self, key: Any, side: str, protocol: str, service: str, method: str, code: str, dt: float
    ) -> None:
        """Count one call that took ``dt`` seconds."""
        observe(self.series(key, side, protocol, service, method, code), dt)

    def snapshot(self, pid: int, started: float) -> Snapshot:
        """A copy of everything counted so far."""
        series = [
            Series(s.side, s.system, s.service, s.method, s.code, s.count, s.total, list(s.buckets))
            for s in list(self.table.values())
        ]
        gauges = {name: float(f()) for name, f in self.gauges.items()}
        gauges["active_calls"] = float(self.active)
        counters = {name: float(f()) for name, f in self.counters.items()}
        return Snapshot(pid, started, series, gauges, counters)


def observe(series: Series, dt: float) -> None:
    """Count one call of ``dt`` seconds into ``series``."""
    series.count += 1
    series.total += dt
    series.buckets[bisect.bisect_left(DURATION_BOUNDS, dt)] += 1


def merge_series(groups: Iterable[Iterable[Series]]) -> list[Series]:
    """Sum series with the same labels (the same method and code in several workers)."""
    out: dict[tuple[str, str, str, str, str], Series] = {}
    for group in groups:
        for s in group:
            mine = out.get(s.key)
            if mine is None:
                out[s.key] = Series(
                    s.side, s.system, s.service, s.method, s.code, s.count, s.total, list(s.buckets)
                )
            else:
                mine.count += s.count
                mine.total += s.total
                mine.buckets = [a + b for a, b in zip(mine.buckets, s.buckets, strict=True)]
    return list(out.values())


def quantile(buckets: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) estimated from histogram buckets, as Prometheus'
    ``histogram_quantile`` does (linear within a bucket); None without observations."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            if i == len(DURATION_BOUNDS):
                return DURATION_BOUNDS[-1]  # in the +Inf bucket: the highest finite bound
            lower = DURATION_BOUNDS[i - 1] if i else 0.0
            return lower + (DURATION_BOUNDS[i] - lower) * ((rank - seen) / n)
        seen += n
    return DURATION_BOUNDS[-1]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)


def write_snapshot(directory: str, snapshot: Snapshot) -> None:
    """Write ``snapshot`` as ``<directory>/<pid>.stats``, atomically."""
    path = os.path.join(directory, f"{snapshot.pid}.stats")
    tmp = path + ".tmp"
    with open(tmp, "wb") as out:
        out.write(_encoder.encode(snapshot))
    os.replace(tmp, path)


def read_snapshot(path: str) -> Snapshot | None:
    """The snapshot in ``path``, or None if it is missing or unreadable."""
    with contextlib.suppress(OSError, msgspec.DecodeError), open(path, "rb") as f:
        return _decoder.decode(f.read())
    return None

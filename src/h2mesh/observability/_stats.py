"""Call statistics kept in plain Python: counts, latency and size histograms per method
and code, and labelled samples (calls in flight per method, per-endpoint counts).

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
    "SIZE_BOUNDS",
    "CallStats",
    "Sample",
    "Series",
    "Snapshot",
    "merge_samples",
    "merge_series",
    "process_snapshot",
    "quantile",
    "read_snapshot",
    "share_with_server",
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

#: Upper bounds (bytes) of the message-size histogram buckets; +Inf is implied.
SIZE_BOUNDS: tuple[int, ...] = tuple(4**i for i in range(3, 13))  # 64 B .. 16 MiB
_NSIZES = len(SIZE_BOUNDS) + 1

#: ``rpc.system`` of OpenTelemetry's RPC semantic conventions, by wire protocol.
RPC_SYSTEMS = {
    "connect": "connect_rpc",
    "grpc": "grpc",
    "grpc-web": "grpc",
    "grpc-web-text": "grpc",
}


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
    #: Request and response body bytes of the calls (servers count them; clients do not).
    received: int = 0
    received_buckets: list[int] = msgspec.field(default_factory=lambda: [0] * _NSIZES)
    sent: int = 0
    sent_buckets: list[int] = msgspec.field(default_factory=lambda: [0] * _NSIZES)

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.side, self.system, self.service, self.method, self.code)

    def copy(self) -> Series:
        return Series(
            self.side,
            self.system,
            self.service,
            self.method,
            self.code,
            self.count,
            self.total,
            list(self.buckets),
            self.received,
            list(self.received_buckets),
            self.sent,
            list(self.sent_buckets),
        )


class Sample(msgspec.Struct, array_like=True):
    """One value of a labelled metric (``labels`` in the order the metric names them)."""

    name: str
    labels: tuple[str, ...]
    value: float


class Snapshot(msgspec.Struct):
    """What one process has counted so far, as written to the shared directory."""

    pid: int
    started: float  # time.time() when the process started serving
    series: list[Series] = []
    gauges: dict[str, float] = {}
    counters: dict[str, float] = {}
    samples: list[Sample] = []


class CallStats:
    """Counts and latency histograms of calls, keyed cheaply, labelled once per series."""

    def __init__(self) -> None:
        #: Label-set key -> its series; ``series()`` adds one.
        self.table: dict[Any, Series] = {}
        self.requests = 0  # requests (HTTP/2 streams, HTTP/1.1 requests) seen
        #: Sampled when a snapshot is taken (e.g. open connections).
        self.gauges: dict[str, Callable[[], float]] = {}
        #: Monotonic counts kept by their owner (e.g. connections accepted).
        self.counters: dict[str, Callable[[], float]] = {}
        #: Labelled values gathered when a snapshot is taken (e.g. calls in flight).
        self.samplers: list[Callable[[], Iterable[Sample]]] = []

    def series(
        self, key: Any, side: str, protocol: str, service: str, method: str, code: str
    ) -> Series:
        """The series of one label set (``key`` is any cheap, hashable stand-in for it)."""
        series = self.table.get(key)
        if series is None:
            system = RPC_SYSTEMS.get(protocol, protocol)
            series = self.table[key] = Series(side, system, service, method, code)
        return series

    def record(
        self,
        key: Any,
        side: str,
        protocol: str,
        service: str,
        method: str,
        code: str,
        dt: float,
        sizes: tuple[int, int] | None = None,
    ) -> None:
        """Count one call that took ``dt`` seconds (and, for a server, its request and
        response body ``sizes``)."""
        series = self.series(key, side, protocol, service, method, code)
        observe(series, dt)
        if sizes is not None:
            observe_sizes(series, *sizes)

    def snapshot(self, pid: int, started: float) -> Snapshot:
        """A copy of everything counted so far."""
        series = [s.copy() for s in list(self.table.values())]
        gauges = {name: float(f()) for name, f in self.gauges.items()}
        counters = {name: float(f()) for name, f in self.counters.items()}
        counters["requests"] = float(self.requests)
        samples = [sample for sampler in self.samplers for sample in sampler()]
        return Snapshot(pid, started, series, gauges, counters, samples)


#: Statistics kept elsewhere in this process (client metrics) that a server's snapshot
#: carries too, so its admin listener shows them (see ``share_with_server``).
_SHARED: list[Callable[[], tuple[list[Series], list[Sample]]]] = []


def share_with_server(source: Callable[[], tuple[list[Series], list[Sample]]]) -> None:
    """Have every server snapshot taken in this process include what ``source`` returns."""
    if source not in _SHARED:
        _SHARED.append(source)


def process_snapshot(stats: CallStats, pid: int, started: float) -> Snapshot:
    """``stats.snapshot()`` plus the statistics shared with servers in this process."""
    snap = stats.snapshot(pid, started)
    for source in _SHARED:
        series, samples = source()
        snap.series += series
        snap.samples += samples
    return snap


def observe(series: Series, dt: float) -> None:
    """Count one call of ``dt`` seconds into ``series``."""
    series.count += 1
    series.total += dt
    series.buckets[bisect.bisect_left(DURATION_BOUNDS, dt)] += 1


def observe_sizes(series: Series, received: int, sent: int) -> None:
    """Count one call's request and response body sizes into ``series``."""
    series.received += received
    series.received_buckets[bisect.bisect_left(SIZE_BOUNDS, received)] += 1
    series.sent += sent
    series.sent_buckets[bisect.bisect_left(SIZE_BOUNDS, sent)] += 1


def _add(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


def merge_series(groups: Iterable[Iterable[Series]]) -> list[Series]:
    """Sum series with the same labels (the same method and code in several workers)."""
    out: dict[tuple[str, str, str, str, str], Series] = {}
    for group in groups:
        for s in group:
            mine = out.get(s.key)
            if mine is None:
                out[s.key] = s.copy()
            else:
                mine.count += s.count
                mine.total += s.total
                mine.buckets = _add(mine.buckets, s.buckets)
                mine.received += s.received
                mine.received_buckets = _add(mine.received_buckets, s.received_buckets)
                mine.sent += s.sent
                mine.sent_buckets = _add(mine.sent_buckets, s.sent_buckets)
    return list(out.values())


def merge_samples(groups: Iterable[Iterable[Sample]]) -> list[Sample]:
    """Sum samples of the same metric and labels (the same endpoint seen by several
    workers, calls in flight of one method in each)."""
    out: dict[tuple[str, tuple[str, ...]], Sample] = {}
    for group in groups:
        for s in group:
            key = (s.name, s.labels)
            mine = out.get(key)
            if mine is None:
                out[key] = Sample(s.name, s.labels, s.value)
            else:
                mine.value += s.value
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

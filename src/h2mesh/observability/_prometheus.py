"""Prometheus text exposition of call statistics, through prometheus-client.

Imported only when ``/metrics`` is served (``pip install 'h2mesh[metrics]'``). Names and
labels follow OpenTelemetry's RPC semantic conventions as the Prometheus exporter spells
them: ``rpc.server.call.duration`` becomes ``rpc_server_call_duration_seconds`` with the
labels ``rpc_system``, ``rpc_service``, ``rpc_method`` and ``rpc_response_status_code``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ._stats import DURATION_BOUNDS, Series, Snapshot, merge_series

__all__ = ["CONTENT_TYPE", "METRICS", "render"]

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("metrics need prometheus-client: pip install 'h2mesh[metrics]'") from exc

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LABELS = ["rpc_system", "rpc_service", "rpc_method", "rpc_response_status_code"]

#: Every metric h2mesh exports: name -> (type, help). docs/deployment.md lists them too.
METRICS: dict[str, tuple[str, str]] = {
    "rpc_server_call_duration_seconds": (
        "histogram",
        "Duration of calls served, from the request headers to the last response byte.",
    ),
    "rpc_server_active_calls": ("gauge", "Calls being served right now."),
    "h2mesh_server_connections_open": ("gauge", "Client connections open right now."),
    "h2mesh_server_connections_total": ("counter", "Client connections accepted."),
    "h2mesh_workers": ("gauge", "Worker processes serving right now."),
    "h2mesh_worker_restarts_total": ("counter", "Workers that died and were replaced."),
}

_GAUGES = {
    "active_calls": "rpc_server_active_calls",
    "connections_open": "h2mesh_server_connections_open",
}
_COUNTERS = {"connections_total": "h2mesh_server_connections_total"}


def _histograms(series: Sequence[Series]) -> Iterator[Any]:
    for side in ("server",):
        name = f"rpc_{side}_call_duration_seconds"
        family = HistogramMetricFamily(name, METRICS[name][1], labels=_LABELS)
        for s in series:
            if s.side != side:
                continue
            cumulative, running = [], 0
            for bound, n in zip((*DURATION_BOUNDS, float("inf")), s.buckets, strict=True):
                running += n
                cumulative.append((_le(bound), running))
            family.add_metric([s.system, s.service, s.method, s.code], cumulative, s.total)
        yield family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class _Collector:
    def __init__(
        self, live: Sequence[Snapshot], retired: Sequence[Series], extra: dict[str, float]
    ) -> None:
        self.live = live
        self.retired = retired
        self.extra = extra

    def collect(self) -> Iterator[Any]:
        yield from _histograms(merge_series([self.retired, *(s.series for s in self.live)]))
        for key, name in _GAUGES.items():
            gauge = GaugeMetricFamily(name, METRICS[name][1])
            gauge.add_metric([], sum(s.gauges.get(key, 0.0) for s in self.live))
            yield gauge
        for key, name in _COUNTERS.items():
            total = self.extra.get(key, 0.0) + sum(s.counters.get(key, 0.0) for s in self.live)
            counter = CounterMetricFamily(name.removesuffix("_total"), METRICS[name][1])
            counter.add_metric([], total)
            yield counter
        if "workers" in self.extra:
            gauge = GaugeMetricFamily("h2mesh_workers", METRICS["h2mesh_workers"][1])
            gauge.add_metric([], self.extra["workers"])
            yield gauge
            restarts = CounterMetricFamily(
                "h2mesh_worker_restarts", METRICS["h2mesh_worker_restarts_total"][1]
            )
            restarts.add_metric([], self.extra.get("restarts", 0.0))
            yield restarts


def render(
    live: Sequence[Snapshot], retired: Sequence[Series] = (), extra: dict[str, float] | None = None
) -> bytes:
    """The Prometheus text format of the merged statistics of every process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(live, retired, extra or {}))
    return generate_latest(registry)

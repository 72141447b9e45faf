"""Prometheus text exposition of call statistics, through prometheus-client.

Imported only when ``/metrics`` is served or client metrics are collected
(``pip install 'h2mesh[metrics]'``). Names and labels follow OpenTelemetry's RPC semantic
conventions as the Prometheus exporter spells them: ``rpc.server.call.duration`` becomes
``rpc_server_call_duration_seconds`` with the labels ``rpc_system``, ``rpc_service``,
``rpc_method`` and ``rpc_response_status_code``; what the conventions do not name is
under ``h2mesh_``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ._stats import (
    DURATION_BOUNDS,
    SIZE_BOUNDS,
    Sample,
    Series,
    Snapshot,
    merge_samples,
    merge_series,
)

__all__ = ["CONTENT_TYPE", "METRICS", "families", "render"]

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("metrics need prometheus-client: pip install 'h2mesh[metrics]'") from exc

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LABELS = ["rpc_system", "rpc_service", "rpc_method", "rpc_response_status_code"]
_METHOD = ["rpc_service", "rpc_method"]
_ENDPOINT = ["target", "endpoint"]

#: Every metric h2mesh exports: name -> (type, help). docs/deployment.md lists them too.
METRICS: dict[str, tuple[str, str]] = {
    "rpc_server_call_duration_seconds": (
        "histogram",
        "Duration of calls served, from the request headers to the last response byte.",
    ),
    "rpc_server_request_size_bytes": (
        "histogram",
        "Request body bytes of each call served, as received (message envelopes included).",
    ),
    "rpc_server_response_size_bytes": (
        "histogram",
        "Response body bytes of each call served, as sent (message envelopes included).",
    ),
    "rpc_server_active_calls": ("gauge", "Calls being served right now, per method."),
    "h2mesh_server_connections_open": ("gauge", "Client connections open right now."),
    "h2mesh_server_connections_total": ("counter", "Client connections accepted."),
    "h2mesh_server_streams_active": (
        "gauge",
        "Requests open right now (HTTP/2 streams and HTTP/1.1 requests).",
    ),
    "h2mesh_server_streams_total": (
        "counter",
        "Requests received (HTTP/2 streams and HTTP/1.1 requests), calls or not.",
    ),
    "h2mesh_server_received_bytes_total": ("counter", "Bytes read from client connections."),
    "h2mesh_server_sent_bytes_total": ("counter", "Bytes written to client connections."),
    "h2mesh_workers": ("gauge", "Worker processes serving right now."),
    "h2mesh_worker_restarts_total": ("counter", "Workers that died and were replaced."),
    "rpc_client_call_duration_seconds": (
        "histogram",
        "Duration of calls made by channels with metrics on, all attempts included.",
    ),
    "h2mesh_client_endpoint_picks_total": (
        "counter",
        "Attempts the balancer sent to each endpoint.",
    ),
    "h2mesh_client_endpoint_ejections_total": (
        "counter",
        "Times outlier detection ejected each endpoint.",
    ),
    "h2mesh_client_endpoint_ejected": ("gauge", "1 while an endpoint is ejected as an outlier."),
    "h2mesh_client_endpoint_active_calls": ("gauge", "Attempts in flight on each endpoint."),
    "h2mesh_client_retries_total": ("counter", "Attempts sent again by the retry policy."),
    "h2mesh_client_transparent_retries_total": (
        "counter",
        "Attempts sent again because they never reached a server (refused, GOAWAY).",
    ),
    "h2mesh_client_hedges_total": ("counter", "Extra copies of calls sent by hedging."),
}

#: The label names of the labelled metrics that come as ``Sample``s.
SAMPLE_LABELS: dict[str, list[str]] = {
    "rpc_server_active_calls": _METHOD,
    "h2mesh_client_endpoint_picks_total": _ENDPOINT,
    "h2mesh_client_endpoint_ejections_total": _ENDPOINT,
    "h2mesh_client_endpoint_ejected": _ENDPOINT,
    "h2mesh_client_endpoint_active_calls": _ENDPOINT,
    "h2mesh_client_retries_total": _METHOD,
    "h2mesh_client_transparent_retries_total": _METHOD,
    "h2mesh_client_hedges_total": _METHOD,
}

_GAUGES = {
    "connections_open": "h2mesh_server_connections_open",
    "streams_active": "h2mesh_server_streams_active",
}
_COUNTERS = {
    "connections_total": "h2mesh_server_connections_total",
    "requests": "h2mesh_server_streams_total",
    "bytes_received": "h2mesh_server_received_bytes_total",
    "bytes_sent": "h2mesh_server_sent_bytes_total",
}


def _cumulative(bounds: Sequence[float], buckets: list[int]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip((*bounds, float("inf")), buckets, strict=True):
        running += n
        out.append((_le(bound), running))
    return out


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _histograms(series: Sequence[Series], side: str) -> Iterator[Any]:
    mine = [s for s in series if s.side == side]
    if side == "client" and not mine:
        return  # no channel in these processes has metrics on
    name = f"rpc_{side}_call_duration_seconds"
    family = HistogramMetricFamily(name, METRICS[name][1], labels=_LABELS)
    for s in mine:
        labels = [s.system, s.service, s.method, s.code]
        family.add_metric(labels, _cumulative(DURATION_BOUNDS, s.buckets), s.total)
    yield family
    if side == "server":
        for name, total, buckets in (
            ("rpc_server_request_size_bytes", "received", "received_buckets"),
            ("rpc_server_response_size_bytes", "sent", "sent_buckets"),
        ):
            family = HistogramMetricFamily(name, METRICS[name][1], labels=_LABELS)
            for s in mine:
                labels = [s.system, s.service, s.method, s.code]
                family.add_metric(
                    labels, _cumulative(SIZE_BOUNDS, getattr(s, buckets)), getattr(s, total)
                )
            yield family


def _labelled(samples: Iterable[Sample]) -> Iterator[Any]:
    by_name: dict[str, list[Sample]] = {}
    for s in samples:
        by_name.setdefault(s.name, []).append(s)
    for name, group in by_name.items():
        labels = SAMPLE_LABELS.get(name)
        if labels is None:
            continue
        kind, doc = METRICS[name]
        family: Any
        if kind == "counter":
            family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
        else:
            family = GaugeMetricFamily(name, doc, labels=labels)
        for s in sorted(group, key=lambda s: s.labels):
            family.add_metric(list(s.labels), s.value)
        yield family


def families(series: Sequence[Series], samples: Iterable[Sample] = ()) -> Iterator[Any]:
    """The metric families of ``series`` and ``samples`` (a collector's ``collect()``)."""
    yield from _histograms(series, "server")
    yield from _histograms(series, "client")
    yield from _labelled(samples)


class _Collector:
    def __init__(
        self,
        live: Sequence[Snapshot],
        retired: Sequence[Series],
        extra: dict[str, float],
        retired_samples: Sequence[Sample],
    ) -> None:
        self.live = live
        self.retired = retired
        self.extra = extra
        self.retired_samples = retired_samples

    def collect(self) -> Iterator[Any]:
        series = merge_series([self.retired, *(s.series for s in self.live)])
        samples = merge_samples([self.retired_samples, *(s.samples for s in self.live)])
        yield from _histograms(series, "server")
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
        yield from _histograms(series, "client")
        yield from _labelled(samples)


def render(
    live: Sequence[Snapshot],
    retired: Sequence[Series] = (),
    extra: dict[str, float] | None = None,
    retired_samples: Sequence[Sample] = (),
) -> bytes:
    """The Prometheus text format of the merged statistics of every process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(live, retired, extra or {}, retired_samples))
    return generate_latest(registry)

"""Client metrics: call counts and durations, per-endpoint picks and ejections, retries
and hedges of the channels made with ``metrics=``.

A call is timed by an interceptor that the channel puts innermost in its chain (so it
sees the call as sent, after the caller's interceptors); the per-endpoint numbers are
read from each channel's balancer when metrics are collected, and the retry loops count
retries and hedges with one addition each. prometheus-client is imported only by
``collect()``.

::

    import prometheus_client
    from h2mesh import Channel, client_metrics

    client_metrics().register()            # into prometheus-client's default registry
    prometheus_client.start_http_server(9464, addr="127.0.0.1")
    channel = Channel("registry://demo.v1.Greeter", metrics=True)

A server's admin listener in the same process (or in a worker process) shows the
process-wide ``client_metrics()`` too, merged across workers.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .._errors import RpcError
from ..observability import CallStats, Sample, Series
from ..observability._stats import observe, share_with_server
from ..service import MethodDescriptor
from ._interceptors import ClientCall, ClientInterceptor, StreamCall, UnaryCall

__all__ = ["ClientMetrics", "client_metrics"]

perf_counter = time.perf_counter

RETRY = "h2mesh_client_retries_total"
TRANSPARENT = "h2mesh_client_transparent_retries_total"
HEDGE = "h2mesh_client_hedges_total"


def _code(exc: BaseException) -> str:
    if isinstance(exc, RpcError):
        return exc.code.name
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "UNKNOWN"


class ClientMetrics:
    """Statistics of the calls of every channel made with ``metrics=`` this object.

    It is a prometheus-client collector: ``register()`` (or
    ``registry.register(metrics)``) exposes it on that registry's ``/metrics``.
    """

    def __init__(self) -> None:
        self.stats = CallStats()
        # Each channel with its timer (a channel's lifetime, not this object's).
        self._channels: weakref.WeakKeyDictionary[Any, _Timer] = weakref.WeakKeyDictionary()
        #: (metric, service, method) -> count: retries, transparent retries, hedges.
        self.counts: dict[tuple[str, str, str], int] = {}
        self._registries: list[Any] = []

    # -- what channels call ---------------------------------------------------------------
    def bind(self, channel: Any) -> ClientInterceptor:
        """The interceptor that times ``channel``'s calls (the channel installs it)."""
        timer = _Timer(self.stats, channel.protocol.name)
        self._channels[channel] = timer
        return timer

    def count(self, metric: str, method: MethodDescriptor) -> None:
        """Count one retry, transparent retry or hedge of a call to ``method``."""
        key = (metric, method.service_name, method.name)
        self.counts[key] = self.counts.get(key, 0) + 1

    # -- reading ----------------------------------------------------------------------------
    def series(self) -> list[Series]:
        return [s.copy() for s in list(self.stats.table.values())]

    def samples(self) -> list[Sample]:
        """Per-endpoint numbers of the live channels, and the retry counts."""
        out = [
            Sample(name, (service, method), float(n))
            for (name, service, method), n in list(self.counts.items())
        ]
        for channel, timer in list(self._channels.items()):
            out.extend(_endpoint_samples(channel, timer))
        return out

    def shared(self) -> tuple[list[Series], list[Sample]]:
        return self.series(), self.samples()

    def collect(self) -> Iterator[Any]:
        """prometheus-client's collector interface: the metric families."""
        from ..observability._prometheus import families

        return families(self.series(), self.samples())

    def register(self, registry: Any = None) -> ClientMetrics:
        """Add these metrics to ``registry`` (prometheus-client's default one if None),
        once; returns self."""
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        if not any(r is registry for r in self._registries):
            registry.register(self)
            self._registries.append(registry)
        return self


def _endpoint_samples(channel: Any, timer: _Timer) -> Iterator[Sample]:
    target = channel.target
    # A channel to one fixed endpoint sends its calls there without asking the balancer.
    direct = timer.calls if channel._direct is not None else 0
    for address, stats in list(channel.balancer.stats.items()):
        labels = (target, address)
        picks = stats.picks + direct
        yield Sample("h2mesh_client_endpoint_picks_total", labels, float(picks))
        yield Sample("h2mesh_client_endpoint_ejections_total", labels, float(stats.ejections))
        yield Sample("h2mesh_client_endpoint_ejected", labels, 1.0 if stats.ejected else 0.0)
        yield Sample("h2mesh_client_endpoint_active_calls", labels, float(stats.in_flight))


class _Timer(ClientInterceptor):
    """Times each call of one channel into ``stats``."""

    __slots__ = ("calls", "protocol", "stats")

    def __init__(self, stats: CallStats, protocol: str) -> None:
        self.stats = stats
        self.protocol = protocol
        self.calls = 0

    def _record(self, method: MethodDescriptor, code: str, dt: float) -> None:
        self.calls += 1
        key = (method, code)
        series = self.stats.table.get(key)
        if series is None:
            series = self.stats.series(
                key, "client", self.protocol, method.service_name, method.name, code
            )
        observe(series, dt)

    async def intercept_unary(self, call_next: UnaryCall, request: Any, call: ClientCall) -> Any:
        start = perf_counter()
        try:
            reply = await call_next(request, call)
        except BaseException as exc:
            self._record(call.method, _code(exc), perf_counter() - start)
            raise
        self._record(call.method, "OK", perf_counter() - start)
        return reply

    async def intercept_stream(
        self, call_next: StreamCall, request: Any, call: ClientCall
    ) -> AsyncIterator[Any]:
        start = perf_counter()
        code = "OK"
        responses = call_next(request, call)
        try:
            async for message in responses:
                yield message
        except BaseException as exc:
            code = _code(exc)
            raise
        finally:
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                await aclose()
            self._record(call.method, code, perf_counter() - start)


_DEFAULT: ClientMetrics | None = None


def client_metrics() -> ClientMetrics:
    """The process-wide ``ClientMetrics`` that ``Channel(..., metrics=True)`` records into;
    a server's admin listener in this process shows it too."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ClientMetrics()
        share_with_server(_DEFAULT.shared)
    return _DEFAULT

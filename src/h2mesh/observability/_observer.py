"""The hook a server calls around each request, and the observer that feeds statistics,
the access log and request counting from it.

``Server.observer`` is None unless something is turned on, and then the server runs
``observer.observe(serve, stream)`` instead of ``serve(stream)``: the cost of a feature
that is off is one attribute check per request.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from typing import Any

from ._access import AccessLog
from ._stats import DURATION_BOUNDS, SIZE_BOUNDS, CallStats
from ._tracing import serve_traced

__all__ = ["CallObserver", "ServerObserver", "observer_of"]

Serve = Callable[[Any], Awaitable[Any]]

_CANCELED = "CANCELED"
perf_counter = time.perf_counter
_OTHER = "_OTHER"  # OpenTelemetry's name for a method the server does not know


class CallObserver:
    """Sees every request a server serves.

    ``serve(stream)`` serves the request and returns its outcome: an object with
    ``method`` (a ``MethodDescriptor``, or None for a request that never became a call),
    ``protocol`` (a protocol name or None) and ``code`` (a ``Code``, or None when no
    protocol took the request: then ``status`` says what answered it, ``415`` or ``app``).
    """

    async def observe(self, serve: Serve, stream: Any) -> None:
        await serve(stream)


def _no_method(stream: Any) -> None:
    return None


def _path(stream: Any) -> str:
    for name, value in stream.headers or ():
        if name == b":path":
            return str(value.partition(b"?")[0].decode("latin-1"))
    return ""


class ServerObserver(CallObserver):
    """Times each request once and hands the result to statistics and the access log."""

    __slots__ = ("access", "method_of", "on_request", "stats", "tracer")

    def __init__(
        self,
        stats: CallStats | None = None,
        access: AccessLog | None = None,
        on_request: Callable[[], None] | None = None,
        tracer: Any = None,
    ) -> None:
        self.stats = stats
        self.access = access
        self.on_request = on_request
        #: An OpenTelemetry tracer: a SERVER span around each call (see ``_tracing``).
        self.tracer = tracer
        #: The method a request's path and verb name on this server (RPC paths and REST
        #: routes), or None: a cancelled call is counted under its method only if it has
        #: one, so that made-up paths (or REST path parameters) cannot grow the label set.
        self.method_of: Callable[[Any], Any] = _no_method

    @property
    def active(self) -> bool:
        """True if any part is on (an observer with none is not worth installing)."""
        return any(x is not None for x in (self.stats, self.access, self.on_request, self.tracer))

    async def observe(self, serve: Serve, stream: Any) -> None:
        # Per call: keep it to attribute reads, one dict lookup and a few additions.
        if self.on_request is not None:
            self.on_request()
        stats = self.stats
        start = perf_counter()
        outcome: Any = None
        try:
            if self.tracer is None:
                outcome = await serve(stream)
            else:
                outcome = await serve_traced(self.tracer, serve, stream)
        finally:
            dt = perf_counter() - start
            if stats is not None:
                stats.requests += 1
                desc = outcome.method if outcome is not None else None
                if desc is not None:
                    series = stats.table.get((desc, outcome.protocol, outcome.code))
                    if series is None:
                        series = stats.series(
                            (desc, outcome.protocol, outcome.code),
                            "server",
                            outcome.protocol,
                            desc.service_name,
                            desc.name,
                            outcome.code.name,
                        )
                    series.count += 1
                    series.total += dt
                    series.buckets[bisect_left(DURATION_BOUNDS, dt)] += 1
                    size = stream.received
                    series.received += size
                    series.received_buckets[bisect_left(SIZE_BOUNDS, size)] += 1
                    size = stream.sent
                    series.sent += size
                    series.sent_buckets[bisect_left(SIZE_BOUNDS, size)] += 1
                else:
                    self._count_other(stats, stream, outcome, dt)
            if self.access is not None:
                self._log(self.access, stream, outcome, dt)

    def _count_other(self, stats: CallStats, stream: Any, outcome: Any, dt: float) -> None:
        if outcome is None:  # cancelled: the caller reset the stream, or shutdown
            desc = self.method_of(stream)
            service, method = (desc.service_name, desc.name) if desc else (_OTHER, _OTHER)
            sizes = (stream.received, stream.sent)
            key = ("?", service, method)
            stats.record(key, "server", "", service, method, _CANCELED, dt, sizes)
            return
        code = outcome.code
        if code is not None:  # a call to a method nobody serves
            stats.record(
                (None, outcome.protocol, code),
                "server",
                outcome.protocol,
                _OTHER,
                _OTHER,
                code.name,
                dt,
                (stream.received, stream.sent),
            )

    @staticmethod
    def _log(access: AccessLog, stream: Any, outcome: Any, dt: float) -> None:
        if outcome is None:
            protocol, code = "", _CANCELED
        else:
            protocol = outcome.protocol or "http"
            code = outcome.code.name if outcome.code is not None else outcome.status
        access.add(
            time.time(),
            stream.peer,
            stream.http_version,
            protocol,
            _path(stream),
            code,
            dt,
            stream.received,
            stream.sent,
        )


def observer_of(server: Any) -> ServerObserver:
    """The server's ``ServerObserver``, made (but not installed) if it has none yet."""
    current = server.observer
    if isinstance(current, ServerObserver):
        return current
    if current is not None:
        raise ValueError(f"the server already has an observer of its own: {current!r}")
    return ServerObserver()

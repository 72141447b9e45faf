"""The hook a server calls around each request, and the observer that feeds statistics,
the access log and request counting from it.

``Server.observer`` is None unless something is turned on, and then the server runs
``observer.observe(serve, stream)`` instead of ``serve(stream)``: the cost of a feature
that is off is one attribute check per request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._access import AccessLog
from ._stats import CallStats

__all__ = ["CallObserver", "ServerObserver"]

Serve = Callable[[Any], Awaitable[Any]]

_CANCELED = "CANCELED"
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


def _path(stream: Any) -> str:
    for name, value in stream.headers or ():
        if name == b":path":
            return str(value.partition(b"?")[0].decode("latin-1"))
    return ""


class ServerObserver(CallObserver):
    """Times each request once and hands the result to statistics and the access log."""

    __slots__ = ("access", "on_request", "stats")

    def __init__(
        self,
        stats: CallStats | None = None,
        access: AccessLog | None = None,
        on_request: Callable[[], None] | None = None,
    ) -> None:
        self.stats = stats
        self.access = access
        self.on_request = on_request

    async def observe(self, serve: Serve, stream: Any) -> None:
        if self.on_request is not None:
            self.on_request()
        stats = self.stats
        if stats is not None:
            stats.active += 1
        start = time.perf_counter()
        outcome = None
        try:
            outcome = await serve(stream)
        finally:
            dt = time.perf_counter() - start
            if stats is not None:
                stats.active -= 1
                self._count(stats, stream, outcome, dt)
            if self.access is not None:
                self._log(self.access, stream, outcome, dt)

    @staticmethod
    def _count(stats: CallStats, stream: Any, outcome: Any, dt: float) -> None:
        if outcome is None:  # cancelled: the caller reset the stream, or shutdown
            service, _, method = _path(stream).strip("/").rpartition("/")
            stats.record(("?", service, method), "server", "", service, method, _CANCELED, dt)
            return
        desc, code = outcome.method, outcome.code
        if desc is not None:
            stats.record(
                (desc, outcome.protocol, code),
                "server",
                outcome.protocol,
                desc.service_name,
                desc.name,
                code.name,
                dt,
            )
        elif code is not None:  # a call to a method nobody serves
            stats.record(
                (None, outcome.protocol, code),
                "server",
                outcome.protocol,
                _OTHER,
                _OTHER,
                code.name,
                dt,
            )

    @staticmethod
    def _log(access: AccessLog, stream: Any, outcome: Any, dt: float) -> None:
        if outcome is None:
            protocol, code = "", _CANCELED
        else:
            protocol = outcome.protocol or "http"
            code = outcome.code.name if outcome.code is not None else outcome.status
        access.add(time.time(), stream.peer, stream.http_version, protocol, _path(stream), code, dt)

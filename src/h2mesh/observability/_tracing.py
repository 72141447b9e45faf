"""OpenTelemetry tracing through ``opentelemetry-api`` only; the SDK is the user's choice.

A server span per call (``SERVER``, named ``service/Method``) and a client span per
attempt (``CLIENT``), with the RPC semantic-convention attributes, and the W3C
``traceparent``/``tracestate`` headers carried in request metadata, which Connect, gRPC
and gRPC-Web all send as HTTP headers. The server span is current while the handler
runs, so a call the handler makes (whose deadline is propagated the same way, through
context variables) is its child.

Tracing is on when a tracer provider is given (``tracer_provider=``) or when, at the time
a ``Server`` or ``Channel`` is made, the global provider is a real one (an SDK has been
set up). Otherwise nothing is wrapped and nothing is imported beyond this check: no
per-call cost at all.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import Any

from ._stats import RPC_SYSTEMS

__all__ = ["client_tracer", "end_client_span", "server_tracer", "start_client_span"]

_INSTRUMENTATION = "h2mesh"


def _tracer(provider: Any) -> Any:
    if provider is False:
        return None
    if provider is None:
        try:
            if importlib.util.find_spec("opentelemetry") is None:
                return None
        except (ImportError, ValueError):
            return None
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return None  # no SDK configured: tracing costs nothing
    from .. import __version__

    return provider.get_tracer(_INSTRUMENTATION, __version__)


def server_tracer(provider: Any = None) -> Any:
    """The tracer for server spans, or None when tracing is off (see the module doc)."""
    return _tracer(provider)


def client_tracer(provider: Any = None) -> Any:
    """The tracer for client spans, or None when tracing is off."""
    return _tracer(provider)


def _status_code(span: Any, code: Any) -> None:
    from opentelemetry.trace import Status, StatusCode

    name = code.name if code is not None else "UNKNOWN"
    span.set_attribute("rpc.response.status_code", name)
    span.set_attribute("rpc.grpc.status_code", int(code) if code is not None else 2)
    if name != "OK":
        span.set_status(Status(StatusCode.ERROR, name))


# -- server -------------------------------------------------------------------------------
async def serve_traced(tracer: Any, serve: Callable[[Any], Awaitable[Any]], stream: Any) -> Any:
    """Run ``serve(stream)`` inside a SERVER span continued from the request's headers."""
    from opentelemetry import propagate, trace

    carrier: dict[str, str] = {}
    path = ""
    for name, value in stream.headers or ():
        if name == b":path":
            path = value.partition(b"?")[0].decode("latin-1")
        elif name in (b"traceparent", b"tracestate", b"baggage"):
            carrier[name.decode()] = value.decode("latin-1")
    parent = propagate.extract(carrier) if carrier else None
    with tracer.start_as_current_span(
        path.strip("/") or "rpc",
        context=parent,
        kind=trace.SpanKind.SERVER,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        outcome = None
        try:
            outcome = await serve(stream)
        finally:
            if span.is_recording():
                _describe_server(span, stream, path, outcome)
        return outcome


def _describe_server(span: Any, stream: Any, path: str, outcome: Any) -> None:
    service, _, method = path.strip("/").rpartition("/")
    protocol = getattr(outcome, "protocol", None) or ""
    span.set_attribute("rpc.system", RPC_SYSTEMS.get(protocol, protocol or "http"))
    span.set_attribute("rpc.service", service)
    span.set_attribute("rpc.method", method)
    peer = stream.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        span.set_attribute("network.peer.address", str(peer[0]))
        span.set_attribute("network.peer.port", int(peer[1]))
    if outcome is None:  # cancelled
        from .._errors import Code

        _status_code(span, Code.CANCELED)
    elif outcome.code is not None:
        _status_code(span, outcome.code)


# -- client ---------------------------------------------------------------------------------
def start_client_span(
    tracer: Any, protocol: str, method: Any, metadata: dict[str, str] | None
) -> tuple[Any, dict[str, str]]:
    """A CLIENT span for one attempt of ``method``, and ``metadata`` with the trace
    context injected (a copy; the caller's dict is left alone)."""
    from opentelemetry import propagate, trace

    span = tracer.start_span(
        f"{method.service_name}/{method.name}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "rpc.system": RPC_SYSTEMS.get(protocol, protocol),
            "rpc.service": method.service_name,
            "rpc.method": method.name,
        },
    )
    md = dict(metadata) if metadata else {}
    propagate.inject(md, context=trace.set_span_in_context(span))
    return span, md


def end_client_span(span: Any, error: BaseException | None) -> None:
    """End an attempt's span with the status of its outcome (``error`` None: OK)."""
    from .._errors import Code, RpcError

    if isinstance(error, RpcError):
        _status_code(span, error.code)
    elif error is not None:
        _status_code(span, Code.CANCELED if _is_cancel(error) else Code.UNKNOWN)
    else:
        _status_code(span, Code.OK)
    span.end()


def _is_cancel(exc: BaseException) -> bool:
    import asyncio

    return isinstance(exc, asyncio.CancelledError | GeneratorExit)

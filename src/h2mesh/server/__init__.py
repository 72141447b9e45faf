"""The server side: listeners, routing, call context, interceptors, shutdown."""

from ._app import AppOptions
from ._context import Context
from ._health import (
    HealthCheckRequest,
    HealthCheckResponse,
    HealthListRequest,
    HealthListResponse,
    HealthService,
    ServingStatus,
)
from ._interceptors import Handler, ServerInterceptor, StreamNext, UnaryNext
from ._listener import server_ssl_context
from ._server import Server

__all__ = [
    "AppOptions",
    "Context",
    "Handler",
    "HealthCheckRequest",
    "HealthCheckResponse",
    "HealthListRequest",
    "HealthListResponse",
    "HealthService",
    "Server",
    "ServerInterceptor",
    "ServingStatus",
    "StreamNext",
    "UnaryNext",
    "server_ssl_context",
]

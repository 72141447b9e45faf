"""The server side: listeners, routing, call context, interceptors, shutdown."""

from ._context import Context
from ._health import HealthService, ServingStatus
from ._interceptors import ServerInterceptor
from ._listener import server_ssl_context
from ._server import Server

__all__ = [
    "Context",
    "HealthService",
    "Server",
    "ServerInterceptor",
    "ServingStatus",
    "server_ssl_context",
]

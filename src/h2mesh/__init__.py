"""h2mesh: typed Python microservices on HTTP/2.

One service definition, served on one port over Connect (JSON/MessagePack, curl-friendly)
with HTTP/2 and HTTP/1.1, and called through a multiplexing client with typed stubs.
"""

from ._errors import Code, RpcError
from ._loop import new_event_loop, run
from .client import (
    Channel,
    ClientCall,
    ClientInterceptor,
    ClientMetrics,
    SyncChannel,
    client_metrics,
)
from .protocol import ResponseMetadata
from .protocol._cors import CorsPolicy
from .server import (
    Context,
    HealthService,
    Server,
    ServerInterceptor,
    ServingStatus,
    server_ssl_context,
)
from .service import HttpRule, MethodDescriptor, MethodKind, Service, rpc
from .transport import TransportConfig

__version__ = "0.1.0"

__all__ = [
    "Channel",
    "ClientCall",
    "ClientInterceptor",
    "ClientMetrics",
    "Code",
    "Context",
    "CorsPolicy",
    "HealthService",
    "HttpRule",
    "MethodDescriptor",
    "MethodKind",
    "ResponseMetadata",
    "RpcError",
    "Server",
    "ServerInterceptor",
    "Service",
    "ServingStatus",
    "SyncChannel",
    "TransportConfig",
    "__version__",
    "client_metrics",
    "new_event_loop",
    "rpc",
    "run",
    "server_ssl_context",
]

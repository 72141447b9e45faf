"""h2mesh: typed Python microservices on HTTP/2.

One service definition, served on one port over Connect (JSON/MessagePack, curl-friendly)
with HTTP/2 and HTTP/1.1, and called through a multiplexing client with typed stubs.
"""

from ._endpoint import Endpoint
from ._errors import Code, RpcError
from ._loop import new_event_loop, run
from ._version import __version__
from .balancing import OutlierDetection
from .client import (
    Channel,
    ClientCall,
    ClientInterceptor,
    ClientMetrics,
    StreamCall,
    SyncChannel,
    UnaryCall,
    client_metrics,
)
from .discovery import Registrar, Resolver
from .protocol import Metadata, ResponseMetadata
from .protocol._cors import CorsPolicy
from .resilience import HedgingPolicy, RetryPolicy, RetryThrottle
from .server import (
    AppOptions,
    Context,
    Handler,
    HealthService,
    Server,
    ServerInterceptor,
    ServingStatus,
    StreamNext,
    UnaryNext,
    server_ssl_context,
)
from .service import HttpRule, MethodDescriptor, MethodKind, Service, rpc
from .transport import TransportConfig

__all__ = [
    "AppOptions",
    "Channel",
    "ClientCall",
    "ClientInterceptor",
    "ClientMetrics",
    "Code",
    "Context",
    "CorsPolicy",
    "Endpoint",
    "Handler",
    "HealthService",
    "HedgingPolicy",
    "HttpRule",
    "Metadata",
    "MethodDescriptor",
    "MethodKind",
    "OutlierDetection",
    "Registrar",
    "Resolver",
    "ResponseMetadata",
    "RetryPolicy",
    "RetryThrottle",
    "RpcError",
    "Server",
    "ServerInterceptor",
    "Service",
    "ServingStatus",
    "StreamCall",
    "StreamNext",
    "SyncChannel",
    "TransportConfig",
    "UnaryCall",
    "UnaryNext",
    "__version__",
    "client_metrics",
    "new_event_loop",
    "rpc",
    "run",
    "server_ssl_context",
]

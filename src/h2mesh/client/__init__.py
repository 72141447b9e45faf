"""The client side: channels, typed stubs, interceptors and the synchronous facade."""

from ._channel import Channel
from ._interceptors import ClientCall, ClientInterceptor, StreamCall, UnaryCall
from ._metrics import ClientMetrics, client_metrics
from ._sync import SyncChannel

__all__ = [
    "Channel",
    "ClientCall",
    "ClientInterceptor",
    "ClientMetrics",
    "StreamCall",
    "SyncChannel",
    "UnaryCall",
    "client_metrics",
]

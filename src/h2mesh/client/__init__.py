"""The client side: channels, typed stubs, interceptors and the synchronous facade."""

from ._channel import Channel
from ._interceptors import ClientCall, ClientInterceptor
from ._metrics import ClientMetrics, client_metrics
from ._sync import SyncChannel

__all__ = [
    "Channel",
    "ClientCall",
    "ClientInterceptor",
    "ClientMetrics",
    "SyncChannel",
    "client_metrics",
]

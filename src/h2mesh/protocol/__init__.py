"""Wire protocols: how an RPC maps onto HTTP requests and responses.

One module per protocol, each implementing ``ServerProtocol`` and ``ClientProtocol``;
``negotiate`` picks the server side from the request's method and content type.
"""

from ._base import (
    ClientProtocol,
    Metadata,
    ResponseMetadata,
    ServerCall,
    ServerProtocol,
    error_from_transport,
    metadata_from_headers,
)
from .connect import CONNECT, ConnectClient, ConnectServer
from .grpc import GRPC, GrpcClient, GrpcServer
from .grpc_web import CORS_PREFLIGHT, GRPC_WEB, GRPC_WEB_TEXT, GrpcWebClient, GrpcWebServer

__all__ = [
    "CONNECT",
    "ClientProtocol",
    "ConnectClient",
    "ConnectServer",
    "GrpcClient",
    "GrpcServer",
    "GrpcWebClient",
    "GrpcWebServer",
    "Metadata",
    "ResponseMetadata",
    "ServerCall",
    "ServerProtocol",
    "error_from_transport",
    "metadata_from_headers",
    "negotiate",
]

# Most specific first: gRPC's ``application/grpc*`` would otherwise look like Connect.
# CORS_PREFLIGHT answers browsers' OPTIONS requests (they carry no content type).
_PROTOCOLS: list[ServerProtocol] = [GRPC_WEB_TEXT, GRPC_WEB, GRPC, CORS_PREFLIGHT, CONNECT]


_CACHE: dict[tuple[bytes | None, bytes | None], ServerProtocol] = {}


def negotiate(method: bytes | None, content_type: bytes | None) -> ServerProtocol | None:
    """The protocol that serves a request with this method and content type."""
    key = (method, content_type)
    proto = _CACHE.get(key)
    if proto is not None:
        return proto
    for proto in _PROTOCOLS:
        if proto.accepts(method, content_type):
            if len(_CACHE) < 256:
                _CACHE[key] = proto
            return proto
    return None

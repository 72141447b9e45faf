"""The client side of a wire protocol, by name: what ``Channel(protocol=, codec=)`` uses."""

from __future__ import annotations

from ..codec import Codec, codec_for
from ..protocol import ClientProtocol, ConnectClient, GrpcClient, GrpcWebClient

__all__ = ["client_protocol"]


def _codec(name: str) -> Codec:
    codec = codec_for(name)
    if codec is None:
        raise ValueError(f"unknown codec {name!r}; use 'json', 'msgpack' or 'proto'")
    return codec


def client_protocol(
    protocol: str, codec: str | None, compression: str | None, use_get: bool
) -> ClientProtocol:
    """``protocol`` (connect, grpc, grpc-web, grpc-web-text) with ``codec`` (default
    msgpack for Connect, proto for the gRPC family) and request ``compression``."""
    if protocol == "connect":
        return ConnectClient(_codec(codec or "msgpack"), use_get=use_get, compression=compression)
    if protocol == "grpc":
        return GrpcClient(_codec(codec or "proto"), compression)
    if protocol in ("grpc-web", "grpc-web-text"):
        return GrpcWebClient(
            _codec(codec or "proto"), compression, text=protocol == "grpc-web-text"
        )
    raise ValueError(
        f"unsupported protocol {protocol!r}; use 'connect', 'grpc', 'grpc-web' or 'grpc-web-text'"
    )

"""``Channel``: calls to one target over one multiplexed HTTP/2 connection."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .._deadline import effective_timeout
from .._errors import Code, RpcError
from ..codec import Codec, codec_for
from ..protocol import (
    ClientProtocol,
    ConnectClient,
    GrpcClient,
    GrpcWebClient,
    Metadata,
    ResponseMetadata,
)
from ..service import MethodDescriptor, Service
from ..transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    ConnectionRefused,
    Stream,
    TransportConfig,
)
from ._pool import EndpointPool

__all__ = ["Channel"]

S = TypeVar("S", bound=Service)

_CLIENT_CONFIG = TransportConfig(idle_timeout=None, keepalive_interval=30.0)


def _codec(name: str) -> Codec:
    codec = codec_for(name)
    if codec is None:
        raise ValueError(f"unknown codec {name!r}; use 'json', 'msgpack' or 'proto'")
    return codec


def _client_protocol(
    protocol: str, codec: str | None, compression: str | None, use_get: bool
) -> ClientProtocol:
    if protocol == "connect":
        if compression not in (None, "identity"):
            raise ValueError("compression is supported with protocol='grpc' or 'grpc-web'")
        return ConnectClient(_codec(codec or "msgpack"), use_get=use_get)
    if protocol == "grpc":
        return GrpcClient(_codec(codec or "proto"), compression)
    if protocol in ("grpc-web", "grpc-web-text"):
        return GrpcWebClient(
            _codec(codec or "proto"), compression, text=protocol == "grpc-web-text"
        )
    raise ValueError(
        f"unsupported protocol {protocol!r}; use 'connect', 'grpc', 'grpc-web' or 'grpc-web-text'"
    )


class Channel:
    """A client for one target URL (``http://host:port`` or ``https://host:port``).

    ``protocol`` is ``"connect"`` (default codec ``msgpack``), ``"grpc"``, ``"grpc-web"``
    or ``"grpc-web-text"`` (default codec ``proto``); ``compression`` (``"gzip"``,
    ``"deflate"``, ``"zstd"``) compresses gRPC request messages.

    Calls are multiplexed over one HTTP/2 connection, opened on first use and reopened
    after a failure. Use as an async context manager, or call ``close()``.

    ::

        async with Channel("http://127.0.0.1:8080") as ch:
            greeter = ch.stub(Greeter)
            reply = await greeter.say_hello(HelloRequest(name="x"), timeout=1.0)
    """

    def __init__(
        self,
        target: str,
        *,
        protocol: str = "connect",
        codec: str | None = None,
        compression: str | None = None,
        timeout: float | None = None,
        headers: Metadata | None = None,
        ssl_context: ssl.SSLContext | None = None,
        use_get: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        config: TransportConfig | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        url = urlsplit(target)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"target must look like http://host:port, got {target!r}")
        self.target = target
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.tls = url.scheme == "https"
        if self.tls and ssl_context is None:
            ssl_context = ssl.create_default_context()
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["h2"])
        self._ssl = ssl_context
        self.protocol: ClientProtocol = _client_protocol(protocol, codec, compression, use_get)
        self.default_timeout = timeout
        self.default_headers = headers
        self.max_message_size = max_message_size
        self.config = config or _CLIENT_CONFIG
        self.connect_timeout = connect_timeout
        authority = url.netloc.rpartition("@")[2].encode()
        self._base_headers: list[tuple[bytes, bytes]] = [
            (b":method", b"POST"),
            (b":scheme", url.scheme.encode()),
            (b":authority", authority),
        ]
        self._pool = EndpointPool(
            self.host,
            self.port,
            ssl_context=ssl_context,
            config=self.config,
            connect_timeout=connect_timeout,
        )

    # -- connection management -----------------------------------------------------
    async def _open_stream(self, headers: Sequence[tuple[bytes, bytes]], end: bool) -> Stream:
        pool = self._pool
        conn = pool.connection_nowait()
        if conn is None:
            conn = await pool.connection()
        try:
            return conn.open_stream(headers, end)
        except ConnectionRefused:
            # The connection started closing between the check and the send: one retry
            # on another connection is safe because nothing reached the server.
            conn = await pool.connection()
            return conn.open_stream(headers, end)

    async def close(self) -> None:
        """Close the connections after in-flight calls finish (5 s at most)."""
        await self._pool.close()

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- calls ----------------------------------------------------------------------
    def _metadata(self, headers: Metadata | None) -> Metadata | None:
        if self.default_headers is None:
            return headers
        if headers is None:
            return self.default_headers
        return {**self.default_headers, **headers}

    async def unary(
        self,
        method: MethodDescriptor,
        request: Any,
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
    ) -> Any:
        """Make a unary call; returns the response message or raises ``RpcError``."""
        timeout = effective_timeout(timeout if timeout is not None else self.default_timeout)
        call = self.protocol.unary(
            self._open_stream,
            self._base_headers,
            method,
            request,
            timeout,
            self._metadata(headers),
            metadata,
            self.max_message_size,
        )
        if timeout is None:
            return await call
        if timeout <= 0:
            call.close()
            raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded before the call started")
        try:
            async with asyncio.timeout(timeout):
                return await call
        except TimeoutError:
            raise RpcError(Code.DEADLINE_EXCEEDED, f"deadline of {timeout:.3f}s exceeded") from None

    async def stream(
        self,
        method: MethodDescriptor,
        request: Any = None,
        requests: AsyncIterable[Any] | None = None,
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
    ) -> AsyncIterator[Any]:
        """Make a streaming call; yields response messages.

        Pass ``request`` for server streams, ``requests`` for client and bidi streams.
        """
        timeout = effective_timeout(timeout if timeout is not None else self.default_timeout)
        if timeout is not None and timeout <= 0:
            raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded before the call started")
        responses = self.protocol.stream(
            self._open_stream,
            self._base_headers,
            method,
            requests,
            request,
            timeout,
            self._metadata(headers),
            metadata,
            self.max_message_size,
        )
        try:
            if timeout is None:
                async for message in responses:
                    yield message
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            try:
                while True:
                    async with asyncio.timeout_at(deadline):
                        message = await anext(responses)
                    yield message
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise RpcError(
                    Code.DEADLINE_EXCEEDED, f"deadline of {timeout:.3f}s exceeded"
                ) from None
        finally:
            await responses.aclose()  # type: ignore[attr-defined]

    def stub(self, service: type[S]) -> S:
        """A client for ``service`` whose methods mirror the service's.

        Unary and client-streaming methods are coroutines; server-streaming and bidi
        methods return async iterators. Every method also takes keyword arguments
        ``timeout``, ``headers`` and ``metadata`` (a ``ResponseMetadata`` to fill).
        """
        from ._stub import make_stub

        return make_stub(self, service)

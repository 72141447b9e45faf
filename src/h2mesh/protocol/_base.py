"""What every wire protocol provides, server side and client side.

A wire protocol maps an RPC onto HTTP: headers, body framing, trailers and errors. The
server core and the client core only talk to these interfaces, so Connect, gRPC and
gRPC-Web sit side by side and are picked per request by ``negotiate``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from .._errors import Code, RpcError, UnprocessedError
from .._http2 import ErrorCode
from ..codec import Codec
from ..service import MethodDescriptor
from ..transport import (
    ConnectionRefused,
    Headers,
    MessageTooLarge,
    Stream,
    StreamReset,
    TransportError,
)
from ._envelope import MessageReader

Metadata = dict[str, str]
OpenStream = Callable[[Sequence[tuple[bytes, bytes]], bool], Awaitable[Stream]]

# Headers that belong to the transport or the protocol, never to user metadata.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "te",
        "user-agent",
        "host",
        "connection",
        "transfer-encoding",
        "keep-alive",
        "upgrade",
    }
)


class HttpStatusError(RpcError):
    """An error answered with an HTTP status of its own rather than its code's, and
    extra headers: ``405`` with ``allow`` for a method the path does not serve."""

    __slots__ = ("headers", "status")

    def __init__(
        self, code: Code, message: str, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        super().__init__(code, message)
        self.status = status
        self.headers = headers


def method_not_allowed(path: str, method: str, allowed: Sequence[str]) -> HttpStatusError:
    """``405``: ``path`` is served, but not for ``method``."""
    return HttpStatusError(
        Code.UNIMPLEMENTED,
        f"{method} is not allowed on {path} (allowed: {', '.join(allowed)})",
        405,
        [(b"allow", ", ".join(allowed).encode())],
    )


def error_status_headers(error: RpcError, content_type: bytes) -> list[tuple[bytes, bytes]]:
    """``:status`` and content type of an error answered in one HTTP response."""
    if isinstance(error, HttpStatusError):
        status = str(error.status).encode()
        return [(b":status", status), (b"content-type", content_type), *error.headers]
    return [(b":status", _STATUS_BYTES[error.code]), (b"content-type", content_type)]


_STATUS_BYTES = {code: str(code.http_status).encode() for code in Code}


def metadata_from_headers(headers: Sequence[tuple[bytes, bytes]]) -> Metadata:
    """User-visible metadata: every header but pseudo-headers and protocol headers."""
    out: Metadata = {}
    for name, value in headers:
        if name[:1] == b":":
            continue
        key = name.decode("latin-1")
        if key in RESERVED_HEADERS or key.startswith(("connect-", "grpc-")):
            continue
        out[key] = value.decode("latin-1")
    return out


def encode_metadata(md: Metadata | None, prefix: str = "") -> list[tuple[bytes, bytes]]:
    """Metadata as header fields, names lower-cased and optionally prefixed."""
    if not md:
        return []
    return [
        ((prefix + k).lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in md.items()
    ]


def error_from_transport(exc: BaseException) -> RpcError:
    """Translate a transport failure into the status a caller sees."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, MessageTooLarge):
        return RpcError(Code.RESOURCE_EXHAUSTED, str(exc))
    if isinstance(exc, StreamReset):
        if exc.error_code == ErrorCode.CANCEL:
            return RpcError(Code.CANCELED, "stream canceled")
        if exc.error_code == ErrorCode.ENHANCE_YOUR_CALM:
            return RpcError(Code.RESOURCE_EXHAUSTED, "peer asked to slow down (ENHANCE_YOUR_CALM)")
        if exc.error_code == ErrorCode.INADEQUATE_SECURITY:
            return RpcError(Code.PERMISSION_DENIED, "insufficient transport security")
        if exc.refused:
            return UnprocessedError(str(exc))
        return RpcError(Code.UNAVAILABLE, str(exc))
    if isinstance(exc, ConnectionRefused):
        return UnprocessedError(str(exc))
    if isinstance(exc, TransportError):
        return RpcError(Code.UNAVAILABLE, str(exc))
    return RpcError(Code.UNKNOWN, str(exc))


class ServerCall:
    """One RPC on the server, framed by a wire protocol.

    The server core drives it: ``receive``/``receive_stream`` for the request,
    ``send_unary`` or ``send_message`` + ``finish`` for the response.
    """

    __slots__ = ("codec", "max_size", "method", "stream", "timeout")

    def __init__(
        self,
        stream: Stream,
        method: MethodDescriptor,
        codec: Codec,
        timeout: float | None,
        max_size: int,
    ) -> None:
        self.stream = stream
        self.method = method
        self.codec = codec
        self.timeout = timeout
        self.max_size = max_size

    async def receive(self) -> Any:
        """The single request message (unary and server-streaming methods)."""
        raise NotImplementedError

    def receive_stream(self) -> AsyncIterator[Any]:
        """The request messages (client-streaming and bidi methods)."""
        raise NotImplementedError

    async def send_unary(
        self, message: Any, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        """Send the single response message and end the call successfully."""
        raise NotImplementedError

    async def send_message(self, message: Any, headers: Metadata | None) -> None:
        """Send one streamed response message (headers go with the first)."""
        raise NotImplementedError

    async def finish(
        self, error: RpcError | None, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        """End the call: with ``error`` or successfully (after streamed messages)."""
        raise NotImplementedError

    @property
    def headers_sent(self) -> bool:
        raise NotImplementedError


class EnvelopedServerCall(ServerCall):
    """A call whose request is a stream of enveloped messages (Connect streams, gRPC).

    Subclasses set ``_reader`` and ``_sent`` and say which code a malformed request
    stream earns (``request_error_code``).
    """

    __slots__ = ("_reader", "_sent")

    request_error_code = Code.INTERNAL
    _reader: MessageReader
    _sent: bool

    @property
    def headers_sent(self) -> bool:
        return self._sent

    async def receive(self) -> Any:
        reader = self._reader
        payload = reader.take_single()  # the whole body already here: no waiting
        if payload is not None:
            return self.method.request_decoder(self.codec)(payload)
        payload = await reader.next()
        if payload is None:
            raise RpcError(self.request_error_code, "request has no message")
        if await reader.next() is not None:
            raise RpcError(self.request_error_code, "request has more than one message")
        return self.method.request_decoder(self.codec)(payload)

    async def receive_stream(self) -> AsyncIterator[Any]:
        decode = self.method.request_decoder(self.codec)
        reader = self._reader
        while (payload := await reader.next()) is not None:
            yield decode(payload)


class ServerProtocol:
    """A wire protocol, server side: recognises requests and makes ``ServerCall``s."""

    name: str

    def accepts(self, method: bytes | None, content_type: bytes | None) -> bool:
        """True if this protocol serves requests with this method and content type."""
        raise NotImplementedError

    def server_call(
        self,
        stream: Stream,
        method: MethodDescriptor,
        request: dict[bytes, bytes],
        max_size: int,
    ) -> ServerCall:
        """Start a call; raises ``RpcError`` if the request cannot be served."""
        raise NotImplementedError

    async def reject(self, stream: Stream, request: dict[bytes, bytes], error: RpcError) -> None:
        """Answer a request that never became a call (unknown method, bad headers)."""
        raise NotImplementedError


class ClientProtocol:
    """A wire protocol, client side."""

    name: str

    async def unary(
        self,
        open_stream: OpenStream,
        base_headers: list[tuple[bytes, bytes]],
        method: MethodDescriptor,
        request: Any,
        timeout: float | None,
        metadata: Metadata | None,
        response_md: ResponseMetadata | None,
        max_size: int,
    ) -> Any:
        raise NotImplementedError

    def stream(
        self,
        open_stream: OpenStream,
        base_headers: list[tuple[bytes, bytes]],
        method: MethodDescriptor,
        requests: AsyncIterable[Any] | None,
        request: Any,
        timeout: float | None,
        metadata: Metadata | None,
        response_md: ResponseMetadata | None,
        max_size: int,
    ) -> AsyncIterator[Any]:
        raise NotImplementedError


class ResponseMetadata:
    """Filled in by a client call with the response headers and trailers."""

    __slots__ = ("headers", "trailers")

    def __init__(self) -> None:
        self.headers: Metadata = {}
        self.trailers: Metadata = {}

    def __repr__(self) -> str:
        return f"ResponseMetadata(headers={self.headers!r}, trailers={self.trailers!r})"


async def pump_requests(
    stream: Stream,
    requests: AsyncIterable[Any],
    encode: Callable[[Any], bytes],
) -> None:
    """Send each request message, then end the stream (client side of streams)."""
    try:
        async for item in requests:
            await stream.send_data(encode(item))
        stream.end()
    except (TransportError, asyncio.CancelledError):
        raise
    except BaseException:
        stream.reset(ErrorCode.CANCEL)
        raise


class RequestSender:
    """Sends a client stream's request messages while its response is read."""

    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None

    async def start(
        self,
        stream: Stream,
        requests: AsyncIterable[Any] | None,
        request: Any,
        frame: Callable[[Any], bytes],
    ) -> None:
        """Send the single ``request``, or start pumping ``requests`` in a task."""
        if requests is None:
            await stream.send_data(frame(request), end_stream=True)
        else:
            self.task = asyncio.ensure_future(pump_requests(stream, requests, frame))

    def failure(self) -> BaseException | None:
        """The request iterator's own error, if it failed: the real cause of a reset."""
        task = self.task
        if task is None or not task.done() or task.cancelled():
            return None
        cause = task.exception()
        return None if isinstance(cause, TransportError) else cause

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


def header_list(headers: Headers | None) -> list[tuple[bytes, bytes]]:
    return headers if headers is not None else []

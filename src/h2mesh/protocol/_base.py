"""What every wire protocol provides, server side and client side.

A wire protocol maps an RPC onto HTTP: headers, body framing, trailers and errors. The
server core and the client core only talk to these interfaces, so Connect, gRPC and
gRPC-Web sit side by side and are picked per request by ``negotiate``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .._errors import Code, RpcError, UnprocessedError
from .._http2 import ErrorCode
from ..codec import Codec, DecodeFn
from ..service import MethodDescriptor
from ..transport import (
    ConnectionRefused,
    MessageTooLarge,
    Stream,
    StreamReset,
    TransportError,
)
from ._envelope import MessageReader, unpack_prefix

Metadata = dict[str, str]

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
        # Every other code (PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, ...) means
        # the stream broke after the server took it: INTERNAL, as gRPC's HTTP/2 mapping
        # says, and not retried as UNAVAILABLE would be.
        return RpcError(Code.INTERNAL, str(exc))
    if isinstance(exc, ConnectionRefused):
        return UnprocessedError(str(exc))
    if isinstance(exc, TransportError):
        return RpcError(Code.UNAVAILABLE, str(exc))
    return RpcError(Code.UNKNOWN, str(exc))


class ServerCall:
    """One RPC on the server, framed by a wire protocol.

    The server core drives it: ``receive``/``receive_stream`` for the request,
    ``send_unary`` or ``send_message`` + ``finish`` for the response. ``decode`` is the
    request decoder of ``method`` in ``codec``.
    """

    __slots__ = ("codec", "decode", "max_size", "method", "stream", "timeout")

    def __init__(
        self,
        stream: Stream,
        method: MethodDescriptor,
        codec: Codec,
        timeout: float | None,
        max_size: int,
        decode: DecodeFn | None = None,
    ) -> None:
        self.stream = stream
        self.method = method
        self.codec = codec
        self.decode = decode if decode is not None else method.request_decoder(codec)
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

    Subclasses set ``_reader`` (None: made by ``_new_reader`` when first needed; a call
    whose body has a framing around its envelopes makes it at once) and ``_sent``. A
    unary request stream that holds no message or more than one is a
    cardinality violation: ``UNIMPLEMENTED``, on the server as on the client (the gRPC
    status-code table says so for both sides).
    """

    __slots__ = ("_reader", "_sent")

    _reader: MessageReader | None
    _sent: bool

    @property
    def headers_sent(self) -> bool:
        return self._sent

    def _new_reader(self) -> MessageReader:
        """The reader of the request's messages."""
        raise NotImplementedError

    async def receive(self) -> Any:
        reader = self._reader
        if reader is None:
            # The whole body already here, one envelope: no reader, no waiting.
            chunks = self.stream.take_chunks(self.max_size + 5)
            if chunks is not None and len(chunks) == 1:
                body = chunks[0]
                # (single_payload inline: this runs for every unary request)
                if len(body) >= 5:
                    flags, length = unpack_prefix(body, 0)
                    if not flags and length + 5 == len(body):
                        return self.decode(body[5:])
            reader = self._reader = self._new_reader()
            if chunks is not None:
                # In pieces (a large message), compressed, none or several: the reader
                # joins a message's pieces once, and next() judges.
                for chunk in chunks:
                    reader.feed_body(chunk)
        payload = await reader.next()
        if payload is None:
            raise RpcError(Code.UNIMPLEMENTED, "request has no message, expected 1")
        if await reader.next() is not None:
            raise RpcError(Code.UNIMPLEMENTED, "request has more than one message, expected 1")
        return self.decode(payload)

    async def receive_stream(self) -> AsyncIterator[Any]:
        decode = self.decode
        reader = self._reader
        if reader is None:
            reader = self._reader = self._new_reader()
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

    def bind(self, method: MethodDescriptor, content_type: bytes) -> CallMaker:
        """What ``server_call`` does for ``POST`` requests of ``method`` with this content
        type, with all that depends on those two alone worked out once: the server keeps
        one per route and content type, so a call pays only for its own headers. Raises
        ``RpcError`` as ``server_call`` would for every such request."""
        server_call = self.server_call

        def make(stream: Stream, request: dict[bytes, bytes], max_size: int) -> ServerCall:
            return server_call(stream, method, request, max_size)

        return make

    async def reject(self, stream: Stream, request: dict[bytes, bytes], error: RpcError) -> None:
        """Answer a request that never became a call (unknown method, bad headers)."""
        raise NotImplementedError


#: Starts one call of a bound method and content type: ``make(stream, request, max_size)``.
CallMaker = Callable[[Stream, dict[bytes, bytes], int], ServerCall]


class ClientProtocol:
    """A wire protocol, client side: the hooks the client's call flow calls.

    The flow itself (open a stream, send, read the response, map transport errors, reset
    the stream if the call ends early) lives once, in ``client/_call.py``; a protocol only
    says how a call looks on the wire. Streams, and unary calls of protocols whose unary
    calls are enveloped too (gRPC), use ``request_headers``, ``frame``, ``open_response``
    and ``finish``; protocols with ``bare_unary`` (Connect) also answer
    ``unary_request`` and ``unary_response``.
    """

    name: str
    codec: Codec
    #: A unary call sends and receives one plain body rather than one envelope each way.
    bare_unary = False
    #: Envelope flags that close the response's messages (end-stream, trailers).
    end_flags = 0

    def request_headers(
        self,
        base: list[tuple[bytes, bytes]],
        method: MethodDescriptor,
        timeout: float | None,
        metadata: Metadata | None,
    ) -> list[tuple[bytes, bytes]]:
        """The request headers of an enveloped call."""
        raise NotImplementedError

    def frame(self, message: Any) -> bytes:
        """One request message as sent on the stream (encoded, compressed, enveloped)."""
        raise NotImplementedError

    def open_response(
        self,
        stream: Stream,
        headers: list[tuple[bytes, bytes]],
        response_md: ResponseMetadata | None,
        max_size: int,
    ) -> MessageReader | None:
        """Check the response head; return the reader of its messages, or None if the
        call already ended well with the head. Raises the call's ``RpcError`` (no I/O: an
        error whose body is still on its way comes from the reader's ``next()``)."""
        raise NotImplementedError

    def finish(
        self, stream: Stream, end: bytes | None, response_md: ResponseMetadata | None
    ) -> None:
        """The response's messages are over: ``end`` is the payload of the envelope that
        closed them (one with ``end_flags``), None if the body just ended. Raises the
        call's error, if it failed."""
        raise NotImplementedError

    def unary_request(
        self,
        base: list[tuple[bytes, bytes]],
        method: MethodDescriptor,
        request: Any,
        timeout: float | None,
        metadata: Metadata | None,
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        """(``bare_unary``) The headers and body of a unary request; body None: the
        request is all in the headers (a GET)."""
        raise NotImplementedError

    def unary_response(
        self,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        method: MethodDescriptor,
        response_md: ResponseMetadata | None,
        max_size: int,
    ) -> Any:
        """(``bare_unary``) The response message of a unary call, or raise its error."""
        raise NotImplementedError


class ResponseMetadata:
    """Filled in by a client call with the response headers and trailers."""

    __slots__ = ("headers", "trailers")

    def __init__(self) -> None:
        self.headers: Metadata = {}
        self.trailers: Metadata = {}

    def __repr__(self) -> str:
        return f"ResponseMetadata(headers={self.headers!r}, trailers={self.trailers!r})"

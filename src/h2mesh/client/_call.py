"""One call flow for every wire protocol: one attempt of a call on one stream.

Open a stream, send the request (one message, or a task pumping the request iterator),
wait for the response head, read its messages, map transport failures to ``RpcError``
and reset the stream if the call ends before its response did. The protocol (Connect,
gRPC, gRPC-Web) only plugs in through the hooks of ``ClientProtocol``: request headers,
framing of a request message, the check of the response head, the end of the response,
and, for Connect's plain unary calls, the request and response bodies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from .._errors import Code, RpcError
from .._http2 import ErrorCode
from ..protocol import ClientProtocol, Metadata, ResponseMetadata, error_from_transport
from ..service import MethodDescriptor
from ..transport import Stream, TransportError

__all__ = [
    "CallFlow",
    "CallOptions",
    "RequestSender",
    "StreamOpener",
    "cardinality_error",
    "collect_one",
]

_CANCEL = ErrorCode.CANCEL


class CallOptions:
    """One call's options: what a stub passes down and what interceptors see and change.

    ``headers`` is the request metadata, ``timeout`` the call's deadline in seconds from
    now, ``metadata`` a ``ResponseMetadata`` to fill with the response headers and
    trailers, ``key`` the ring-hash key.
    """

    __slots__ = ("headers", "key", "metadata", "method", "timeout")

    def __init__(
        self,
        method: MethodDescriptor,
        headers: Metadata | None = None,
        timeout: float | None = None,
        metadata: ResponseMetadata | None = None,
        key: bytes | str | None = None,
    ) -> None:
        self.method = method
        self.headers = headers
        self.timeout = timeout
        self.metadata = metadata
        self.key = key

    def __repr__(self) -> str:
        return f"<CallOptions {self.method.path}>"


def cardinality_error(method: MethodDescriptor, count: int) -> RpcError:
    """A call that wanted one response message got ``count``: UNIMPLEMENTED, as the gRPC
    status-code table says of cardinality violations (and Connect follows)."""
    return RpcError(
        Code.UNIMPLEMENTED, f"{method.path} returned {count} response messages, expected 1"
    )


async def collect_one(responses: AsyncIterator[Any], method: MethodDescriptor) -> Any:
    """The single message of ``responses`` (a unary or client-streaming response)."""
    result: Any = None
    count = 0
    try:
        async for message in responses:
            result = message
            count += 1
    finally:
        aclose = getattr(responses, "aclose", None)
        if aclose is not None:
            await aclose()
    if count != 1:
        raise cardinality_error(method, count)
    return result


async def _pump(
    stream: Stream, requests: AsyncIterable[Any], frame: Callable[[Any], bytes]
) -> None:
    """Send each request message, then end the stream."""
    try:
        async for item in requests:
            await stream.send_data(frame(item))
        stream.end()
    except (TransportError, asyncio.CancelledError):
        raise
    except BaseException:
        stream.reset(_CANCEL)
        raise


class RequestSender:
    """Sends a stream's request messages while its response is read."""

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
            self.task = asyncio.ensure_future(_pump(stream, requests, frame))

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


class StreamOpener(Protocol):
    """Where an attempt gets its stream: an endpoint's pool of connections."""

    def open_stream_nowait(
        self, headers: Sequence[tuple[bytes, bytes]], end: bool, body: bytes | None = None
    ) -> Stream | None:
        """A new stream on a connection that has room now; None if none has (no I/O).
        ``body`` is the whole request body, sent with the headers (the stream ends)."""
        ...

    async def open_stream(
        self, headers: Sequence[tuple[bytes, bytes]], end: bool, body: bytes | None = None
    ) -> Stream:
        """A new stream, waiting for a connection if need be."""
        ...


class _Deadline:
    """The timer of one attempt: when it fires, the attempt's stream is reset, and the
    flow reports DEADLINE_EXCEEDED instead of the reset. One timer handle per attempt
    costs a fraction of an ``asyncio.timeout`` scope; an attempt with no deadline makes
    none, and reads no clock."""

    __slots__ = ("expired", "handle", "stream")

    def __init__(self, stream: Stream, when: float) -> None:
        self.expired = False
        self.stream = stream
        self.handle = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self.expired = True
        self.stream.reset(_CANCEL)

    def error(self) -> RpcError:
        return RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded")


def _time_left(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (None: no deadline); DEADLINE_EXCEEDED if none."""
    if deadline is None:
        return None
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded before the call started")
    return left


def _attempt_error(
    exc: TransportError, timer: _Deadline | None, sender: RequestSender | None
) -> BaseException:
    """What an attempt that failed in the transport raises: DEADLINE_EXCEEDED if its timer
    reset the stream, the request iterator's own error if that failed first, else the
    transport failure as an ``RpcError``."""
    if timer is not None and timer.expired:
        return timer.error()
    cause = sender.failure() if sender is not None else None
    return cause if cause is not None else error_from_transport(exc)


async def _open(
    opener: StreamOpener,
    headers: list[tuple[bytes, bytes]],
    end: bool,
    body: bytes | None,
    deadline: float | None,
) -> Stream:
    """A stream from ``opener`` when no connection has room: connecting counts against
    the deadline too."""
    if deadline is None:
        return await opener.open_stream(headers, end, body)
    try:
        async with asyncio.timeout_at(deadline):
            return await opener.open_stream(headers, end, body)
    except TimeoutError:
        raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded while connecting") from None


class CallFlow:
    """Runs attempts of calls over ``protocol``: headers start with ``base_headers``,
    response messages are limited to ``max_size`` bytes.

    ``deadline`` is an event-loop time (``loop.time()``), or None for no deadline: the
    attempt's stream is reset when it passes, and the call fails with DEADLINE_EXCEEDED.
    """

    __slots__ = ("base_headers", "max_size", "protocol")

    def __init__(
        self,
        protocol: ClientProtocol,
        base_headers: list[tuple[bytes, bytes]],
        max_size: int,
    ) -> None:
        self.protocol = protocol
        self.base_headers = base_headers
        self.max_size = max_size

    def unary(
        self, opener: StreamOpener, call: CallOptions, request: Any, deadline: float | None
    ) -> Awaitable[Any]:
        """One attempt of a unary call: awaited, the response message, or ``RpcError``.
        (The protocol's own coroutine, with no coroutine around it.)"""
        if self.protocol.bare_unary:
            return self._bare_unary(opener, call, request, deadline)
        return self._enveloped_unary(opener, call, request, deadline)

    async def _bare_unary(
        self, opener: StreamOpener, call: CallOptions, request: Any, deadline: float | None
    ) -> Any:
        """One attempt of a unary call whose body is the message itself (Connect)."""
        protocol = self.protocol
        method = call.method
        timer: _Deadline | None = None
        timeout = None if deadline is None else _time_left(deadline)
        headers, body = protocol.unary_request(
            self.base_headers, method, request, timeout, call.headers
        )
        end = body is None
        try:
            # The body goes with the headers: nothing of the request is left to await.
            stream = opener.open_stream_nowait(headers, end, body)
            if stream is None:
                stream = await _open(opener, headers, end, body, deadline)
            if deadline is not None:
                timer = _Deadline(stream, deadline)
            try:
                head = await stream.wait_response()
                # The body came with the head (one read, as it mostly does): no waiting.
                data = stream.take_body(self.max_size)
                if data is None:
                    data = await stream.read_all(self.max_size)
            except BaseException:
                stream.reset(_CANCEL)
                raise
        except TransportError as exc:
            raise _attempt_error(exc, timer, None) from None
        finally:
            if timer is not None:
                timer.handle.cancel()
        return protocol.unary_response(head, data, method, call.metadata, self.max_size)

    async def _enveloped_unary(
        self, opener: StreamOpener, call: CallOptions, request: Any, deadline: float | None
    ) -> Any:
        """One attempt of a unary call whose messages are enveloped (gRPC): the request
        message leaves with the headers, and the response is read as ``_messages`` reads
        a stream's, counting its messages (no generator between the call and its stream)."""
        protocol = self.protocol
        md = call.metadata
        method = call.method
        timer: _Deadline | None = None
        timeout = None if deadline is None else _time_left(deadline)
        headers = protocol.request_headers(self.base_headers, method, timeout, call.headers)
        body = protocol.frame(request)
        stream: Stream | None = None
        finished = False
        result: Any = None
        count = 0
        try:
            stream = opener.open_stream_nowait(headers, False, body)
            if stream is None:
                stream = await _open(opener, headers, False, body, deadline)
            if deadline is not None:
                timer = _Deadline(stream, deadline)
            head = await stream.wait_response()
            reader = protocol.open_response(stream, head, md, self.max_size)
            # (None: the call ended well with its head, and had no message.)
            finished = reader is None
            if reader is not None:
                decode = method.response_decoder(protocol.codec)
                payload = reader.take_single()  # the whole body already here, one message
                if payload is not None:
                    result = decode(payload)
                    count = 1
                    finished = True
                    protocol.finish(stream, None, md)  # (the body has ended)
                end_flags = protocol.end_flags
                while not finished:
                    payload = await reader.next()
                    if timer is not None and timer.expired:
                        raise timer.error()
                    if payload is None or reader.flags & end_flags:
                        finished = True
                        protocol.finish(stream, payload, md)  # (payload: the closing one)
                    else:
                        result = decode(payload)
                        count += 1
        except TransportError as exc:
            raise _attempt_error(exc, timer, None) from None
        finally:
            if timer is not None:
                timer.handle.cancel()
            if stream is not None and not finished:
                stream.reset(_CANCEL)
        if count != 1:
            raise cardinality_error(method, count)
        return result

    async def _messages(
        self,
        opener: StreamOpener,
        call: CallOptions,
        request: Any,
        requests: AsyncIterable[Any] | None,
        deadline: float | None,
    ) -> AsyncIterator[Any]:
        """One attempt of a streaming call (or an enveloped unary one): its messages."""
        protocol = self.protocol
        md = call.metadata
        timer: _Deadline | None = None
        timeout = None if deadline is None else _time_left(deadline)
        headers = protocol.request_headers(self.base_headers, call.method, timeout, call.headers)
        sender = RequestSender()
        stream: Stream | None = None
        finished = False
        try:
            stream = opener.open_stream_nowait(headers, False)
            if stream is None:
                stream = await _open(opener, headers, False, None, deadline)
            if deadline is not None:
                timer = _Deadline(stream, deadline)
            await sender.start(stream, requests, request, protocol.frame)
            head = await stream.wait_response()
            reader = protocol.open_response(stream, head, md, self.max_size)
            if reader is None:
                finished = True
                return
            decode = call.method.response_decoder(protocol.codec)
            end_flags = protocol.end_flags
            while True:
                payload = await reader.next()
                if timer is not None and timer.expired:
                    raise timer.error()
                if payload is None:
                    finished = True
                    protocol.finish(stream, None, md)
                    return
                if reader.flags & end_flags:
                    finished = True
                    protocol.finish(stream, payload, md)
                    return
                yield decode(payload)
        except TransportError as exc:
            raise _attempt_error(exc, timer, sender) from None
        finally:
            if timer is not None:
                timer.handle.cancel()
            sender.stop()
            if stream is not None and not finished:
                stream.reset(_CANCEL)

    #: One attempt of a streaming call: its response messages. (``unary`` calls
    #: ``_messages`` itself, so that a subclass wrapping ``stream`` wraps streams only.)
    stream = _messages

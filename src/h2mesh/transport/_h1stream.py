"""One HTTP/1.1 exchange (``H1Stream``) and a connection after it switched protocols
(``H1Tunnel``), as the layers above see them.

A response is framed when its first body bytes are written: a body sent whole by one
``send_data(..., end_stream=True)`` gets ``content-length`` and goes out in a single
write with its head; anything else is chunked (or, for an HTTP/1.0 client, delimited by
closing the connection). The bytes come from ``_h1wire``; the connection (``_h1``) owns
the socket, the parser and the order in which requests are answered.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._http2 import ErrorCode
from ._errors import ConnectionLost, MessageTooLarge, StreamReset
from ._h1wire import (
    CHUNKED,
    DONE,
    LAST_CHUNK,
    LENGTH,
    NOT_STARTED,
    RAW,
    chunk,
    field_block,
    frame_response,
    switching_head,
    trailer_section,
)
from ._stream import Headers, Stream

if TYPE_CHECKING:
    from ._h1 import H1Connection

__all__ = ["H1Stream", "H1Tunnel"]

_CANCEL = ErrorCode.CANCEL


class H1Tunnel:
    """The raw bytes of a connection after ``101 Switching Protocols``, both ways.

    ``read()`` returns ``b""`` once the peer closed; ``write()`` waits while the socket's
    send buffer is full and raises ``ConnectionLost`` once the connection is gone.
    ``on_shutdown`` (set by the protocol on top) is called when the server shuts down.
    """

    __slots__ = ("_chunks", "_conn", "_eof", "_waiter", "on_shutdown")

    def __init__(self, conn: H1Connection, initial: bytes) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque([initial] if initial else ())
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self.on_shutdown: Callable[[], None] | None = None

    async def read(self) -> bytes:
        chunks = self._chunks
        while not chunks:
            if self._eof:
                return b""
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = chunks.popleft()
        self._conn._consumed(len(data))
        return data

    async def write(self, data: bytes) -> None:
        conn = self._conn
        if conn.lost:
            raise ConnectionLost("connection closed")
        conn._write(data)
        if conn.writing_paused:
            await conn._wait_writable()
            if conn.lost:
                raise ConnectionLost("connection closed")

    @property
    def pending(self) -> bool:
        """Whether bytes have arrived that ``read()`` has not returned yet."""
        return bool(self._chunks)

    def close(self) -> None:
        self._conn._close()

    def abort(self) -> None:
        transport = self._conn.transport
        if transport is not None:
            transport.abort()

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._wake()

    def _end(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class H1Stream(Stream):
    """One HTTP/1.1 request and its response, seen through the ``Stream`` interface."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_done_waiter",
        "_eof",
        "_error",
        "_expect_continue",
        "_framing",
        "_head_request",
        "_http10",
        "_keep_alive",
        "_length",
        "_read_waiter",
        "_response",
        "_status",
        "fields",
        "headers",
        "peer",
        "received",
        "sent",
        "task",
        "trailers",
        "upgrade",
    )

    _conn: H1Connection
    fields: dict[bytes, bytes]  # (slots, where Stream has properties)
    peer: Any
    http_version = "1.1"
    supports_trailers = False

    def __init__(
        self,
        conn: H1Connection,
        headers: Headers,
        keep_alive: bool,
        http10: bool,
        head_request: bool,
        expect_continue: bool,
    ) -> None:
        self._conn = conn
        self.headers: Headers | None = headers
        # (Plain slots, not Stream's properties: read for every request.)
        self.fields = dict(headers)
        self.peer = conn.peer
        # Trailer fields of a chunked request body, if it had any.
        self.trailers: Headers | None = None
        self.task: asyncio.Task[Any] | None = None
        self._chunks: deque[bytes] = deque()
        self._eof = False
        self._error: BaseException | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._done_waiter: asyncio.Future[None] | None = None
        # Whether the client allows reuse; once the head is written, whether we agreed.
        self._keep_alive = keep_alive
        self._http10 = http10
        self._head_request = head_request
        self._expect_continue = expect_continue
        self._framing = NOT_STARTED
        # The response fields (a field_block) from send_headers, until the body starts.
        self._response: bytes | None = None
        self._status = 0
        # The content-length the application declared (-1: none); then the bytes still due.
        self._length = -1
        # The protocol the client asked to switch to, if this connection may switch.
        self.upgrade: bytes | None = None
        self.received = self.sent = 0  # body bytes, for metrics and the access log

    # -- reading ------------------------------------------------------------------
    @property
    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    async def wait_closed(self) -> None:
        while self._framing != DONE and self._error is None:
            self._done_waiter = self._conn.loop.create_future()
            try:
                await self._done_waiter
            finally:
                self._done_waiter = None

    async def read(self) -> bytes:
        """The next chunk of the request body; ``b""`` once it has all been read."""
        chunks = self._chunks
        while not chunks:
            if self._eof:
                return b""
            if self._error is not None:
                raise self._error
            if self._expect_continue:
                # The client holds the body back until told to go on; it is told only
                # now that the body is wanted, so an early rejection costs no upload.
                self._expect_continue = False
                self._conn._send_continue(self)
            self._read_waiter = self._conn.loop.create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        data = chunks.popleft()
        if data.__class__ is not bytes:  # (small pieces gathered: see _stream.gather)
            data = bytes(data)
        self._conn._consumed(len(data))
        return data

    async def read_all(self, limit: int) -> bytes:
        """The whole request body; raises ``MessageTooLarge`` past ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = await self.read()
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise MessageTooLarge(limit)
            parts.append(chunk)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    # -- writing ------------------------------------------------------------------
    def send_headers(
        self, headers: Iterable[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        """Set the response head; it is written with the first body bytes (or now if
        ``end_stream``), so that a body sent whole can get a ``content-length``."""
        if self._error is not None:
            raise self._error
        if self._response is not None or self._framing != NOT_STARTED:
            raise RuntimeError("response headers were already sent")
        status, self._length, fields = field_block(headers)
        if not 200 <= status <= 999:
            raise ValueError(f"unsupported response status {status}")
        self._status = status
        self._response = fields
        if end_stream:
            self._start(b"", end=True)

    async def send_data(self, data: bytes, end_stream: bool = False) -> None:
        """Write body bytes; waits while the socket's send buffer is full."""
        if self._error is not None:
            raise self._error
        conn = self._conn
        self.sent += len(data)
        framing = self._framing
        if framing == NOT_STARTED:
            self._start(data, end_stream)
        elif framing == CHUNKED:
            if data:
                conn._write(chunk(data, end_stream))
            elif end_stream:
                conn._write(LAST_CHUNK)
        elif framing == RAW:
            if data:
                conn._write(data)
        elif framing == LENGTH:
            if len(data) > self._length:
                self.reset()
                raise StreamReset(_CANCEL, "response body longer than its content-length")
            self._length -= len(data)
            if data:
                conn._write(data)
        elif framing == DONE:
            raise StreamReset(_CANCEL, "the response has already ended")
        if end_stream and framing != NOT_STARTED:
            self._finish()
        if conn.writing_paused:
            await conn._wait_writable()
            if self._error is not None:
                raise self._error

    def try_respond(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> bool:
        if self._conn.writing_paused or trailers is not None:
            return False  # (send_data writes, then waits; trailers need a chunked body)
        self.send_headers(headers)
        self.sent += len(body)
        self._start(body, True)
        return True

    def send_trailers(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """End the response, with ``headers`` as trailer fields if it is chunked."""
        if self._error is not None:
            raise self._error
        if self._framing != CHUNKED:
            # A content-length or close-delimited body has nowhere to carry trailers.
            self.end()
            return
        self._conn._write(trailer_section(headers))
        self._finish()

    def end(self) -> None:
        """End the response body (an empty one if no body was sent)."""
        framing = self._framing
        if framing == DONE or self._error is not None:
            return
        if framing == NOT_STARTED:
            self._start(b"", end=True)
            return
        if framing == CHUNKED:
            self._conn._write(LAST_CHUNK)
        self._finish()

    def reset(self, error_code: int = _CANCEL) -> None:
        """Abandon the exchange. HTTP/1.1 cannot cancel one message, so the connection
        closes; a client sees a missing or cut-off response."""
        if self._framing == DONE or self._error is not None:
            return
        self._error = StreamReset(error_code, "stream reset locally")
        self._framing = DONE
        self._wake()
        self._conn._stream_reset(self)

    async def wait_response(self) -> Headers:
        raise NotImplementedError("HTTP/1.1 streams are server-side only")

    def switch(self, headers: Iterable[tuple[bytes, bytes]]) -> H1Tunnel:
        """Answer ``101 Switching Protocols`` (with ``headers``) to an upgrade request and
        hand over the connection's raw bytes."""
        if self.upgrade is None or self._framing != NOT_STARTED or self._error is not None:
            raise RuntimeError("this request cannot switch protocols")
        head = switching_head(headers, self.upgrade)
        self._framing = DONE
        self._response = None
        conn = self._conn
        tunnel = conn._open_tunnel(self)
        conn._write(head)
        if self._done_waiter is not None:
            self._wake()
        return tunnel

    def _start(self, body: bytes, end: bool) -> None:
        """Write the response head with the framing ``body``/``end`` calls for, and the body."""
        fields = self._response
        if fields is None:
            raise RuntimeError("send_headers() must come before the response body")
        self._response = None
        conn = self._conn
        # A request body still arriving would have to be read to its end before the
        # next request could be parsed; close instead of keeping the connection.
        data, self._framing, self._length, self._keep_alive = frame_response(
            self._status,
            fields,
            self._length,
            body,
            end,
            head_request=self._head_request,
            http10=self._http10,
            keep=self._keep_alive and self._eof and not conn.closing,
        )
        conn._write(data)
        if end:
            conn._response_done(self)
            if self._done_waiter is not None:
                self._wake()

    def _finish(self) -> None:
        if self._framing == LENGTH and self._length:
            # Fewer bytes than declared: only closing tells the client the body is cut.
            self._keep_alive = False
        self._framing = DONE
        self._conn._response_done(self)
        if self._done_waiter is not None:
            self._wake()

    # -- connection-side notifications ------------------------------------------
    def _wake(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        waiter = self._done_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException, cancel_task: bool) -> None:
        if self._error is None and not (self._eof and self._framing == DONE):
            self._error = exc
        self._wake()
        if cancel_task and self.task is not None and not self.task.done():
            self.task.cancel()

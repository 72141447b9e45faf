"""One HTTP/2 connection over asyncio, driven by the ngh2 (libnghttp2) engine.

The protocol object only feeds bytes to the engine, flushes what the engine wants to
send, and dispatches engine events through a table to ``H2Stream`` objects. Writes
from many streams in one loop iteration are coalesced into one ``transport.write``.

Flow control is end to end: the engine runs with automatic window updates off, and a
stream acknowledges received bytes only when the application reads them. A sender
waits while more than ``send_high_water`` bytes of its stream are queued in the engine
(because the peer's window is closed) or while the socket's buffer is full. Before it
hands the engine more, it also waits while its connection has ``connection_send_buffer``
bytes queued, or all the connections sharing its ``SendBudget`` (a server's) have
``server_send_buffer``; those waits end first come, first served (see ``_budget.py``).

One module because ``H2Connection`` and ``H2Stream`` are one engine binding: the stream's
methods drive the connection's engine and the connection's event table completes the
streams; the frame checks that run before the engine live in ``_guard.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import ngh2

from .._http2 import ErrorCode
from ._budget import SendBudget
from ._config import TransportConfig
from ._errors import ConnectionLost, ConnectionRefused, MessageTooLarge, StreamReset
from ._guard import InboundGuard
from ._stream import SMALL_PIECE, Headers, Stream, gather
from ._timers import wheel_of

# Module constants rather than ErrorCode.X in the hot path: an enum member lookup
# costs about 0.3 µs on Python 3.11.
_CANCEL = ErrorCode.CANCEL
_FLUSH_CHUNK = 64 * 1024
_REFUSED = ErrorCode.REFUSED_STREAM
_NO_ERROR = ErrorCode.NO_ERROR
_PROTOCOL_ERROR = ErrorCode.PROTOCOL_ERROR
_INTERNAL_ERROR = ErrorCode.INTERNAL_ERROR
_ENHANCE_YOUR_CALM = ErrorCode.ENHANCE_YOUR_CALM
_GOAWAY_FRAME = 0x7
_RST_STREAM_FRAME = 0x3
# A header list over the advertised limit costs the peer its stream (431 or a reset);
# only one this many times larger makes the engine give up on the whole connection.
_HEADER_LIMIT_FACTOR = 4
# RST_STREAM frames a client may send in a burst, and per second after it (the engine's
# defaults; real cancellations stay far below).
_RESET_LIMIT = (1000, 33)
_HEADERS_TOO_LARGE = [(b":status", b"431")]
_BAD_REQUEST = [(b":status", b"400"), (b"content-type", b"text/plain; charset=utf-8")]
_DEFAULT_PORTS = {b"http": b":80", b"https": b":443"}
_monotonic = time.monotonic  # (one global lookup, not two, where it runs per call)
# What a connection with no stalled stream holds (never changed: replaced when needed).
_NO_MARKS: Mapping[int, tuple[int, float]] = MappingProxyType({})
_ADDRESSES: dict[Any, Any] = {}
_ADDRESSES_KEPT = 64


def _shared_address(address: Any) -> Any:
    """One object for equal local addresses (a server's connections have a few)."""
    try:
        shared = _ADDRESSES.get(address)
    except TypeError:  # (not hashable: kept as it is)
        return address
    if shared is None:
        if len(_ADDRESSES) >= _ADDRESSES_KEPT:
            _ADDRESSES.clear()
        shared = _ADDRESSES[address] = address
    return shared


@functools.cache
def _engine_config(max_header_list_size: int) -> ngh2.Configuration:
    """The engine's options (one object shared by the connections with the same limits)."""
    return ngh2.Configuration(
        auto_window_update=False,
        max_inbound_header_list_size=max_header_list_size * _HEADER_LIMIT_FACTOR,
        # The guard enforces _RESET_LIMIT first, and answers ENHANCE_YOUR_CALM where the
        # engine's own limiter would say INTERNAL_ERROR.
        stream_reset_rate_limit=(2 * _RESET_LIMIT[0], 2 * _RESET_LIMIT[1]),
    )


def _frame(kind: int, sid: int, payload: bytes) -> bytes:
    """One frame written by hand, for what the engine cannot send."""
    return len(payload).to_bytes(3, "big") + bytes((kind, 0)) + sid.to_bytes(4, "big") + payload


def _header_list_size(headers: list[tuple[bytes, bytes]]) -> int:
    # RFC 9113 section 6.5.2: name and value lengths plus 32 bytes per field. (A plain
    # loop: measured cheaper than sum(map(len, chain.from_iterable(...))), which makes an
    # iterator per field.)
    size = 32 * len(headers)
    for name, value in headers:
        size += len(name) + len(value)
    return size


# What one header block in a single HEADERS frame can decode to, at most (RFC 7541): a
# field taken from a table, name or all, counts at most the dynamic table's size (an entry
# is its name and value plus 32 bytes, and the table holds SETTINGS_HEADER_TABLE_SIZE,
# 4,096 bytes: never raised here); the literal strings of the block, within the frame's
# 16,384 bytes (SETTINGS_MAX_FRAME_SIZE, never raised here either), decode to at most 8/5
# as many bytes (the shortest Huffman code is 5 bits).
_MAX_TABLE_FIELD = 4096
_MAX_LITERALS = 16_384 * 8 // 5


def _fields_that_fit(max_header_list_size: int) -> int:
    """How many fields a request's header list may have and still be known to be within
    ``max_header_list_size`` without adding it up, if it came in one HEADERS frame."""
    return max(0, (max_header_list_size - _MAX_LITERALS) // _MAX_TABLE_FIELD)


def _authority_problem(headers: list[tuple[bytes, bytes]], host: bytes) -> str | None:
    """Check a request's ``host`` against its ``:authority`` (RFC 9113 section 8.3.1).

    Without ``:authority`` (as proxies such as HAProxy send), ``host`` stands in for it and
    is copied into the list. Both present and naming different origins: the request is
    malformed, and the reason is returned.
    """
    authority = scheme = None
    for name, value in headers:
        if name == b":authority":
            authority = value
        elif name == b":scheme":
            scheme = value
        elif name[:1] != b":":
            break  # pseudo-header fields come first
    if authority is None:
        headers.insert(0, (b":authority", host))
        return None
    default_port = _DEFAULT_PORTS.get(scheme or b"")

    def origin(value: bytes) -> bytes:
        value = value.strip().lower()
        if default_port is not None and value.endswith(default_port):
            value = value[: -len(default_port)]
        return value

    if origin(authority) == origin(host):
        return None
    return (
        f"host header {host.decode('latin-1')!r} disagrees with "
        f":authority {authority.decode('latin-1')!r}"
    )


# The request fields of a client's own stream: none (nothing writes to it).
_NO_FIELDS: dict[bytes, bytes] = {}


class H2Stream(Stream):
    """One HTTP/2 stream: request or response headers, a body, and trailers."""

    __slots__ = (
        "_acked",
        "_chunks",
        "_closed_waiter",
        "_conn",
        "_eof",
        "_error",
        "_head",
        "_head_waiter",
        "_read_waiter",
        "_send_waiter",
        "closed",
        "ended_local",
        "fields",
        "headers",
        "id",
        "peer",
        "received",
        "sent",
        "trailers",
    )

    _conn: H2Connection
    fields: dict[bytes, bytes]  # (slots, where Stream has properties)
    peer: Any
    http_version = "2"
    supports_trailers = True
    inline_start = True

    def __init__(
        self,
        conn: H2Connection,
        stream_id: int,
        headers: Headers | None,
        fields: dict[bytes, bytes],
        eof: bool = False,
    ) -> None:
        # (Every slot is set here, once: this runs for every call.)
        self._conn = conn
        self.id = stream_id
        self.headers: Headers | None = headers
        # Plain slots, not Stream's properties: the router and the application host
        # read them on every request.
        self.fields = fields
        self.peer = conn.peer
        # Received chunks not yet read: a list read from index _head (a deque costs
        # more to make than every unary call would ever gain from it).
        self._chunks: list[bytes] = []
        self._eof = eof
        self.closed = self.ended_local = False
        # Body bytes: received (and sent) for metrics; of those received, how many were
        # acknowledged (the rest are the stream's share of the peer's window, held).
        self._head = self._acked = self.received = self.sent = 0
        # The reader waits for the response headers (client) on _head_waiter, for body
        # bytes on _read_waiter.
        self.trailers: Headers | None = None
        self._error: BaseException | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._head_waiter: asyncio.Future[Headers] | None = None
        self._send_waiter: asyncio.Future[None] | None = None
        self._closed_waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[Any] | None = None

    # -- reading ------------------------------------------------------------------
    @property
    def _unacked(self) -> int:
        """Body bytes received and not yet acknowledged to the peer."""
        return self.received - self._acked

    @property
    def at_eof(self) -> bool:
        return self._eof and self._head == len(self._chunks)

    async def wait_closed(self) -> None:
        while not self.closed and self._error is None:
            self._closed_waiter = self._conn.loop.create_future()
            try:
                await self._closed_waiter
            finally:
                self._closed_waiter = None

    async def read(self) -> bytes:
        """The next chunk of the body; ``b""`` once the peer ended the stream."""
        chunks = self._chunks
        while self._head == len(chunks):
            if self._eof:
                return b""
            if self._error is not None:
                raise self._error
            self._read_waiter = self._conn.loop.create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        head = self._head
        data = chunks[head]
        if data.__class__ is not bytes:  # (small pieces gathered: see _stream.gather)
            data = bytes(data)
        head += 1
        if head == len(chunks):
            chunks.clear()
            head = 0
        elif head >= 64 and 2 * head >= len(chunks):
            del chunks[:head]  # (amortised: each chunk is moved at most once)
            head = 0
        else:
            chunks[head - 1] = b""  # not held any longer than needed
        self._head = head
        if not (self._eof and not chunks):
            self._ack(len(data))
        # else: the peer has ended the stream, so reopening its window is moot; the
        # connection window gets the bytes back when the stream closes.
        return data

    async def read_all(self, limit: int) -> bytes:
        """The whole body; raises ``MessageTooLarge`` past ``limit`` bytes."""
        chunks = self._chunks
        if self._eof and len(chunks) == 1 and not self._head and len(chunks[0]) <= limit:
            # The common unary case: the body arrived in one frame (a gathering of small
            # pieces turned back into bytes, as everywhere: see _stream.gather).
            body = chunks.pop()
            return body if body.__class__ is bytes else bytes(body)
        # Whatever has arrived is taken at once (one window update for it, none once the
        # peer has ended the stream), not chunk by chunk.
        parts: list[bytes] = []
        size = 0
        while True:
            if chunks:
                n = sum(map(len, chunks))
                size += n
                if size > limit:
                    raise MessageTooLarge(limit)
                parts += chunks
                chunks.clear()
                if not self._eof:
                    self._ack(n)
            if self._eof:
                break
            if self._error is not None:
                raise self._error
            self._read_waiter = self._conn.loop.create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        if len(parts) == 1:
            body = parts[0]
            return body if body.__class__ is bytes else bytes(body)
        return b"".join(parts)

    def take_body(self, limit: int) -> bytes | None:
        if not self._eof or self._head or self._error is not None:
            return None
        chunks = self._chunks
        if len(chunks) == 1:
            if len(chunks[0]) > limit:
                return None
            body = chunks.pop()  # the common case: the body arrived in one frame
            return body if body.__class__ is bytes else bytes(body)
        if not chunks:
            return b""
        if sum(map(len, chunks)) > limit:
            return None
        body = b"".join(chunks)
        chunks.clear()
        return body  # (the connection window gets the bytes back when the stream closes)

    def take_chunks(self, limit: int) -> list[bytes] | None:
        if not self._eof or self._head or self._error is not None:
            return None
        chunks = self._chunks
        if len(chunks) == 1:  # (the common case: the body arrived in one frame)
            only = chunks[0]
            if len(only) > limit:
                return None
            self._chunks = []  # (the list itself is handed over: the body has ended)
            if only.__class__ is not bytes:  # (small pieces gathered: see _stream.gather)
                chunks[0] = bytes(only)
            return chunks
        if sum(map(len, chunks)) > limit:
            return None
        self._chunks = []
        if any(chunk.__class__ is not bytes for chunk in chunks):
            return [bytes(chunk) for chunk in chunks]
        return chunks

    def _ack(self, n: int) -> None:
        if n:
            self._acked += n
            conn = self._conn
            if not self.closed:
                engine = conn.engine
                engine.acknowledge_received_data(n, self.id)
                # The engine sends WINDOW_UPDATE once half a window is consumed: most reads
                # make none due, and then there is nothing to flush.
                if engine.want_write and not conn._flush_pending:
                    conn._flush_pending = True
                    conn.loop.call_soon(conn._flush)

    # -- writing ------------------------------------------------------------------
    def send_headers(
        self, headers: Iterable[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        if self._error is not None:
            raise self._error
        conn = self._conn
        try:
            if conn.is_client:
                raise RuntimeError("client streams send headers when opened")
            conn.engine.send_response(self.id, headers, end_stream=end_stream)
        except ngh2.NGH2Error as exc:
            raise self._closed_error(exc) from None
        if end_stream:
            self.ended_local = True
        if not conn._flush_pending:  # (schedule_flush inline: once per response)
            conn._flush_pending = True
            conn.loop.call_soon(conn._flush)

    async def send_data(self, data: bytes, end_stream: bool = False) -> None:
        if self._error is not None:
            raise self._error
        conn = self._conn
        queued = conn.queued
        if queued:
            budget = conn.budget
            if queued >= conn.send_limit or conn.room_waiters or budget.queued >= budget.limit:
                await self._wait_for_room()
        try:
            conn.engine.send_data(self.id, data, end_stream=end_stream)
        except ngh2.NGH2Error as exc:
            raise self._closed_error(exc) from None
        n = len(data)
        self.sent += n
        conn.queued = queued = conn.queued + n  # (not the one above: waiting moved it)
        conn.budget.queued += n
        if end_stream:
            self.ended_local = True
        if not conn._flush_pending:  # (schedule_flush inline: once per response)
            conn._flush_pending = True
            conn.loop.call_soon(conn._flush)
        # The connection's count includes this stream's: under the mark, so is the
        # stream's (and the engine need not be asked).
        if conn.writing_paused or (
            queued > conn.high_water and conn.engine.queued_body_size(self.id) > conn.high_water
        ):
            await self._wait_writable()

    def try_respond(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> bool:
        if self._error is not None:
            raise self._error
        conn = self._conn
        queued = conn.queued
        n = len(body)
        # Where send_data would wait, before or after queueing the body, this leaves it
        # to send_data (a body over the mark may be one it waits for).
        if conn.writing_paused or n > conn.high_water or conn.is_client:
            return False
        if queued:
            budget = conn.budget
            if queued >= conn.send_limit or conn.room_waiters or budget.queued >= budget.limit:
                return False
        engine = conn.engine
        try:
            if trailers is not None:
                engine.send_response(self.id, headers)
                if n:
                    engine.send_data(self.id, body)
                engine.send_trailers(self.id, trailers)
            elif n:
                engine.send_response(self.id, headers)
                engine.send_data(self.id, body, end_stream=True)
            else:
                engine.send_response(self.id, headers, end_stream=True)
        except ngh2.NGH2Error as exc:
            raise self._closed_error(exc) from None
        self.sent += n
        conn.queued = queued + n
        conn.budget.queued += n
        self.ended_local = True
        if not conn._flush_pending:
            conn._flush_pending = True
            conn.loop.call_soon(conn._flush)
        return True

    def send_trailers(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        if self._error is not None:
            raise self._error
        conn = self._conn
        try:
            conn.engine.send_trailers(self.id, headers)
        except ngh2.NGH2Error as exc:
            raise self._closed_error(exc) from None
        self.ended_local = True
        if not conn._flush_pending:  # (schedule_flush inline: once per gRPC response)
            conn._flush_pending = True
            conn.loop.call_soon(conn._flush)

    def end(self) -> None:
        if self.ended_local or self._error is not None:
            return
        try:
            self._conn.engine.end_stream(self.id)
        except ngh2.NGH2Error as exc:
            raise self._closed_error(exc) from None
        self.ended_local = True
        self._conn.schedule_flush()

    def reset(self, error_code: int = _CANCEL) -> None:
        if self.closed:
            return
        if self._error is None:
            self._error = StreamReset(error_code, "stream reset locally")
        with contextlib.suppress(ngh2.NGH2Error):
            self._conn.engine.reset_stream(self.id, error_code)
        self._conn.schedule_flush()
        self._wake_all()

    def switch(self, headers: Iterable[tuple[bytes, bytes]]) -> H2Tunnel:
        """(server) Answer an extended CONNECT (RFC 8441) with 200 and ``headers``; the
        stream's DATA frames then carry the new protocol's bytes both ways."""
        self.send_headers([(b":status", b"200"), *headers])
        return H2Tunnel(self)

    def wait_response(self) -> asyncio.Future[Headers]:
        """(client) The response headers, once they arrive: a future the engine's event
        resolves (or fails with the stream's error), so no coroutine is made per call."""
        waiter: asyncio.Future[Headers] = self._conn.loop.create_future()
        if self.headers is not None:
            waiter.set_result(self.headers)
        elif self._error is not None:
            waiter.set_exception(self._error)
        else:
            self._head_waiter = waiter
        return waiter

    async def _wait_writable(self) -> None:
        conn = self._conn
        while conn.writing_paused or conn.engine.queued_body_size(self.id) > conn.high_water:
            if self._error is not None:
                raise self._error
            self._send_waiter = conn.loop.create_future()
            conn.send_waiters[self] = None
            try:
                await self._send_waiter
            finally:
                self._send_waiter = None
                conn.send_waiters.pop(self, None)
        if self._error is not None:
            raise self._error

    async def _wait_for_room(self) -> None:
        """Wait, behind the connection's earlier senders, until it and its budget have room.

        A stream whose peer's window is open goes ahead: its bytes leave with the next
        flush, so they take no room (and the room freed by what it sent is not handed
        to streams whose bytes cannot leave).
        """
        if self._can_send_now():
            return
        conn = self._conn
        waiters = conn.room_waiters
        waiters.append(self)
        try:
            while True:
                if self._error is not None:
                    raise self._error
                if self._can_send_now():
                    return
                if waiters[0] is self:
                    if conn.has_room():
                        return
                    if conn.queued < conn.send_limit:
                        conn.budget.wait(conn)  # only the server's budget is short
                self._send_waiter = conn.loop.create_future()
                try:
                    await self._send_waiter
                finally:
                    self._send_waiter = None
        finally:
            was_first = waiters[0] is self
            waiters.remove(self)
            if was_first and waiters:
                # The next one checks for room once this one has queued its bytes.
                waiters[0]._wake(waiters[0]._send_waiter)
            elif not waiters:
                conn.budget.forget(conn)

    def _can_send_now(self) -> bool:
        """True if the peer's windows have room beyond what the stream already queued (and
        the socket takes bytes)."""
        conn = self._conn
        if conn.writing_paused:
            return False
        engine = conn.engine
        try:
            window = engine.stream_remote_window_size(self.id)
        except ngh2.NGH2Error:
            return False  # closed: the caller finds out when it sends
        return min(window, engine.remote_window_size) > engine.queued_body_size(self.id)

    def _refuse_headers(self, what: str) -> None:
        """Give up on a stream whose headers or trailers are over the configured limit."""
        limit = self._conn.config.max_header_list_size
        if self._error is None:
            self._error = StreamReset(_CANCEL, f"{what} header list over the {limit}-byte limit")
        self.reset(_CANCEL)

    def _closed_error(self, exc: BaseException) -> BaseException:
        if self._error is not None:
            return self._error
        if self._conn.lost:
            return ConnectionLost("connection closed")
        return StreamReset(_CANCEL, f"stream is closed: {exc}")

    # -- engine-side notifications -----------------------------------------------
    def _wake(self, waiter: asyncio.Future[None] | None) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_all(self) -> None:
        head = self._head_waiter
        if head is not None and self._error is not None:
            # (Woken with neither headers nor an error, it would only wait again.)
            self._head_waiter = None
            if not head.done():
                head.set_exception(self._error)
        self._wake(self._read_waiter)
        self._wake(self._send_waiter)
        self._wake(self._closed_waiter)

    def _fail(self, exc: BaseException, cancel_task: bool) -> None:
        if self._error is None and not (self._eof and self.ended_local):
            self._error = exc
        self._wake_all()
        if cancel_task and self.task is not None and not self.task.done():
            self.task.cancel()


class H2Tunnel:
    """The bytes of an HTTP/2 stream opened by extended CONNECT, both ways."""

    __slots__ = ("_stream", "on_shutdown")

    def __init__(self, stream: H2Stream) -> None:
        self._stream = stream
        self.on_shutdown: Callable[[], None] | None = None

    async def read(self) -> bytes:
        try:
            return await self._stream.read()
        except (StreamReset, ConnectionLost):
            return b""

    async def write(self, data: bytes) -> None:
        await self._stream.send_data(data)

    @property
    def pending(self) -> bool:
        """Whether bytes have arrived that ``read()`` has not returned yet."""
        return bool(self._stream._chunks)

    def close(self) -> None:
        stream = self._stream
        if not stream.ended_local:
            with contextlib.suppress(StreamReset, ConnectionLost):
                stream.end()

    def abort(self) -> None:
        # What the peer's window lets go leaves first: the engine drops the stream's
        # queued DATA once it is reset.
        self._stream._conn._flush()
        self._stream.reset(_CANCEL)


class H2Connection(asyncio.Protocol):
    """An asyncio protocol that runs one HTTP/2 connection (server or client role)."""

    # A server holds thousands of these, mostly idle: slots rather than an instance dict
    # (about 1.5 KiB each), and what only some connections need is made when first needed.
    __slots__ = (
        "_arrived",
        "_closed",
        "_flush_pending",
        "_guard",
        "_heard",
        "_oversized",
        "_ping_sent_at",
        "_settings_waiter",
        "_silent_since",
        "_stalled",
        "_timer",
        "budget",
        "bytes_received",
        "bytes_sent",
        "closing",
        "config",
        "connect_protocol",
        "engine",
        "goaway_last_stream_id",
        "high_water",
        "is_client",
        "last_activity",
        "last_stream_id",
        "loop",
        "lost",
        "on_close",
        "on_stream",
        "peer",
        "peer_max_concurrent_streams",
        "peer_settings_received",
        "queued",
        "room_waiters",
        "send_limit",
        "send_waiters",
        "sockname",
        "streams",
        "transport",
        "writing_paused",
    )

    # Engine event -> handler, one table per class (not per connection: with 2,000
    # connections, a dict of bound methods each is megabytes). Subclasses may override
    # the handlers; __init_subclass__ builds their own table.
    _EVENTS = {
        ngh2.RequestReceived: "_on_request",
        ngh2.ResponseReceived: "_on_response",
        ngh2.DataReceived: "_on_data",
        ngh2.TrailersReceived: "_on_trailers",
        ngh2.StreamReset: "_on_reset",
        ngh2.StreamClosed: "_on_closed",
        ngh2.WindowUpdated: "_on_window",
        ngh2.SettingsReceived: "_on_settings",
        ngh2.GoAwayReceived: "_on_goaway",
        ngh2.ConnectionClosed: "_on_connection_closed",
        ngh2.PingAcknowledged: "_on_ping_ack",
    }
    _dispatch: dict[type, Callable[[Any, Any], None]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._dispatch = _event_table(cls)

    def __init__(
        self,
        *,
        client: bool,
        config: TransportConfig | None = None,
        on_stream: Callable[[H2Stream], None] | None = None,
        on_close: Callable[[H2Connection], None] | None = None,
        connect_protocol: bool = False,
        send_budget: SendBudget | None = None,
    ) -> None:
        self.config = cfg = config or TransportConfig()
        self.is_client = client
        # (server) Offer RFC 8441 extended CONNECT (WebSockets over HTTP/2).
        self.connect_protocol = connect_protocol
        self.loop = asyncio.get_running_loop()
        self.engine = ngh2.Connection(
            ngh2.Role.CLIENT if client else ngh2.Role.SERVER,
            _engine_config(cfg.max_header_list_size),
        )
        self.high_water = cfg.send_high_water
        # Body bytes handed to the engine and not yet framed (also counted in the budget;
        # counted again at each flush), the limit above which senders wait, and those
        # waiting (see _budget.py).
        self.queued = 0
        self.send_limit = cfg.connection_send_buffer
        self.budget = send_budget or SendBudget(cfg.server_send_buffer)
        # (A list, not a deque: an empty deque takes 760 bytes, and senders leave this
        # queue from anywhere in it, not only its front.)
        self.room_waiters: list[H2Stream] = []
        # (server) Streams with queued bytes: how many, and since when (see _reset_stalled).
        self._stalled: Mapping[int, tuple[int, float]] = _NO_MARKS
        self.streams: dict[int, H2Stream] = {}
        # Server side: frame checks the engine leaves out (see _guard.py).
        self._guard = (
            None
            if client
            else InboundGuard(
                max_frame_size=cfg.max_frame_size,
                reset_limit=_RESET_LIMIT,
                open_streams=self.streams,
                window=self._send_window,
                fitting_fields=_fields_that_fit(cfg.max_header_list_size),
            )
        )
        # Streams whose headers held a field too long for the engine: they get a 431.
        self._oversized: dict[int, None] = {} if self._guard is None else self._guard.oversized
        # Streams waiting for their queue to drain (a dict as an ordered set: an empty one
        # takes 64 bytes, an empty set 216).
        self.send_waiters: dict[H2Stream, None] = {}
        self._arrived: list[H2Stream] | None = None  # requests of this read, not yet handed on
        self.on_stream = on_stream
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.sockname: Any = None
        self.writing_paused = False
        self.lost = False
        self.closing = False  # GOAWAY sent or received: no new streams
        self.goaway_last_stream_id: int | None = None
        self.last_activity = time.monotonic()
        self.last_stream_id = 0
        # The peer's SETTINGS_MAX_CONCURRENT_STREAMS; 100 is assumed until its SETTINGS arrive.
        self.peer_max_concurrent_streams = 100
        # The peer's first SETTINGS frame (its half of the connection preface) has come.
        self.peer_settings_received = False
        self._settings_waiter: asyncio.Future[None] | None = None
        self._flush_pending = False
        # Bytes read from and written to the socket (frames, headers and bodies).
        self.bytes_received = self.bytes_sent = 0
        self._timer: dict[Any, None] | None = None  # the slot of the next check (_timers.py)
        self._ping_sent_at: float | None = None
        self._heard = 0  # bytes_received at the last check (keepalive: silence since then)
        self._silent_since = self.last_activity
        self._closed: asyncio.Future[None] | None = None  # made by the first ``closed``

    # -- asyncio.Protocol -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        sockname = transport.get_extra_info("sockname")
        # A server's connections share the few addresses it listens on (one tuple each).
        self.sockname = sockname if self.is_client else _shared_address(sockname)
        cfg = self.config
        self.engine.initiate_connection(
            {
                ngh2.Setting.MAX_CONCURRENT_STREAMS: cfg.max_concurrent_streams,
                ngh2.Setting.INITIAL_WINDOW_SIZE: cfg.stream_window,
                ngh2.Setting.MAX_HEADER_LIST_SIZE: cfg.max_header_list_size,
                ngh2.Setting.ENABLE_PUSH: 0,
            }
            if self.is_client
            else {
                ngh2.Setting.MAX_CONCURRENT_STREAMS: cfg.max_concurrent_streams,
                ngh2.Setting.INITIAL_WINDOW_SIZE: cfg.stream_window,
                ngh2.Setting.MAX_HEADER_LIST_SIZE: cfg.max_header_list_size,
                **({ngh2.Setting.ENABLE_CONNECT_PROTOCOL: 1} if self.connect_protocol else {}),
            }
        )
        if cfg.connection_window > 65_535:
            self.engine.set_local_window_size(cfg.connection_window)
        self._flush()
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        engine = self.engine
        self.bytes_received += len(data)
        guard = self._guard
        if guard is not None:
            data = guard.feed(data)
        # What the events queue is written by the flush below: no flush of its own.
        pending = self._flush_pending
        self._flush_pending = True
        try:  # (_receive inline: this runs for every read)
            engine.receive_data(data)
        except ngh2.NGH2Error as exc:
            self._engine_failed(exc)
            self._flush_pending = pending
            return
        self._dispatch_events(engine.events())
        if guard is not None and guard.violation is not None and not self._answer(guard):
            self._flush_pending = pending
            return
        # Most reads (a response, a message of a stream) leave nothing to send and nothing
        # that _flush would account for or wake: then it is not called.
        if engine.want_write or self.queued or self.send_waiters or self.closing:
            self._flush()
        else:
            self._flush_pending = pending
        # (The engine stops reading only once a GOAWAY went either way, which set
        # ``closing``: the two engine calls are not made for every read.)
        if self.closing and not engine.want_read and not engine.want_write:
            self._abort()

    def _receive(self, data: bytes) -> bool:
        """Feed the engine and handle its events; False if it gave up on the peer."""
        try:
            self.engine.receive_data(data)
        except ngh2.NGH2Error as exc:
            self._engine_failed(exc)
            return False
        self._dispatch_events(self.engine.events())
        return True

    def _engine_failed(self, exc: ngh2.NGH2Error) -> None:
        # The engine has queued a GOAWAY describing the violation; send it and close.
        # If the engine failed outright, it has nothing to send: say why ourselves.
        try:
            self._flush()
        except ngh2.NGH2Error:
            self._send_last_goaway(exc)
        self._abort()

    def _answer(self, guard: InboundGuard) -> bool:
        """Answer the client's errors that the guard found; False once the connection ends."""
        while guard.violation is not None:
            sid, code = guard.violation
            guard.violation = None
            if sid == 0:
                with contextlib.suppress(ngh2.NGH2Error):
                    self.engine.terminate_connection(code)
                return True  # the flush sends the GOAWAY, then the connection closes
            if sid in self.streams:
                with contextlib.suppress(ngh2.NGH2Error):
                    self.engine.reset_stream(sid, code)
            else:  # idle or forgotten: the engine would not send it, so say it by hand
                self._flush()
                if self.transport is not None and not self.lost:
                    self.transport.write(_frame(_RST_STREAM_FRAME, sid, code.to_bytes(4, "big")))
            if not self._receive(guard.feed(b"")):
                return False
        return True

    def _dispatch_events(self, events: list[ngh2.Event]) -> None:
        dispatch = self._dispatch
        for event in events:
            dispatch[type(event)](self, event)  # (every ngh2 event type is in the table)
        arrived = self._arrived
        if arrived is not None:
            self._arrived = None
            on_stream = self.on_stream
            if on_stream is not None:
                for stream in arrived:
                    # One the peer reset in the same read is not handed on: as before,
                    # when its task was cancelled before it ever ran.
                    if stream._error is None:
                        on_stream(stream)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.closing = True
        if self._timer is not None:
            self._timer.pop(self, None)
            self._timer = None
        err = ConnectionLost(f"connection lost: {exc}" if exc else "connection closed")
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.closed = True
            stream._fail(err, cancel_task=True)
        for stream in list(self.send_waiters):
            stream._wake_all()
        budget = self.budget
        budget.queued -= self.queued
        self.queued = 0
        budget.forget(self)
        if budget.waiting:
            budget.release()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        waiter = self._settings_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)
            # Its waiter may have been cancelled (the call's deadline) while the shielded
            # future lived on: mark the exception seen so asyncio does not log it.
            waiter.exception()
        if self.on_close is not None:
            self.on_close(self)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        for stream in self.room_waiters:  # those with open windows may go now
            stream._wake(stream._send_waiter)
        self._flush()

    # -- output -----------------------------------------------------------------
    def schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        transport = self.transport
        if transport is None or self.writing_paused or self.lost or transport.is_closing():
            return
        engine = self.engine
        # Events come from reading (handled as they come) and from sending: with nothing
        # to send there are none, and neither call below is made.
        while engine.want_write:
            # At most _FLUSH_CHUNK bytes per call: bigger buffers are mmap'ed by malloc,
            # and their page faults cost more than the copy (measured 8x on 256 KiB).
            data = engine.data_to_send(_FLUSH_CHUNK)
            if data:
                transport.write(data)
                n = len(data)
                self.bytes_sent += n
                if n == _FLUSH_CHUNK:
                    continue
            # Sending can complete streams (StreamClosed): handle those events now.
            # (_dispatch_events inline, less its hand-on of requests: sending brings none.)
            events = engine.events()
            if not events:
                break
            dispatch = self._dispatch
            for event in events:
                dispatch[type(event)](self, event)
            if self.lost or self.writing_paused:
                return
        counted = self.queued
        if counted:
            # Inline: this runs after every response (usually all of it has left). With no
            # stream left, neither is any of their bytes: the engine need not be asked.
            self.queued = left = engine.queued_body_size() if self.streams else 0
            budget = self.budget
            budget.queued -= counted - left
            if self.room_waiters or budget.waiting:
                self._wake_for_room()
        waiters = self.send_waiters
        if waiters and not self.writing_paused:
            high = self.high_water
            queued = self.engine.queued_body_size
            for stream in list(waiters):
                if stream.closed or queued(stream.id) <= high:
                    stream._wake(stream._send_waiter)
        if self.closing and not self.streams and not self.engine.want_write:
            self._close_when_done()

    def _wake_for_room(self) -> None:
        """Wake the senders there is room for now: this connection's first, and the
        connections waiting for the budget."""
        if self.room_waiters and self.has_room():
            self.wake_sender()
        budget = self.budget
        if budget.waiting and budget.queued < budget.limit:
            budget.release()

    def has_room(self) -> bool:
        """True if a sender may hand the engine more bytes now (see _budget.py)."""
        queued = self.queued
        return not queued or (queued < self.send_limit and not self.budget.full)

    def wake_sender(self) -> None:
        """Wake the first sender waiting for room (it checks again when it runs)."""
        if self.room_waiters:
            first = self.room_waiters[0]
            first._wake(first._send_waiter)

    def _abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()

    def _send_window(self, sid: int) -> int | None:
        """The peer's window for stream ``sid``, an open one (or one opened by the same read,
        which has sent nothing yet)."""
        if sid in self.streams:
            with contextlib.suppress(ngh2.NGH2Error):
                return self.engine.stream_remote_window_size(sid)
        return self.engine.remote_settings.get(ngh2.Setting.INITIAL_WINDOW_SIZE, 65_535)

    def _send_last_goaway(self, exc: BaseException) -> None:
        """Write a GOAWAY frame by hand, for when the engine itself has failed."""
        if isinstance(exc, ngh2.DenialOfServiceError):
            code = _ENHANCE_YOUR_CALM
        elif isinstance(exc, ngh2.ProtocolError):
            code = _PROTOCOL_ERROR
        else:
            code = _INTERNAL_ERROR
        payload = self.last_stream_id.to_bytes(4, "big") + code.to_bytes(4, "big")
        if self.transport is not None and not self.lost and not self.transport.is_closing():
            self.transport.write(_frame(_GOAWAY_FRAME, 0, payload))

    # -- event handlers -----------------------------------------------------------
    def _on_request(self, ev: ngh2.RequestReceived) -> None:
        sid = ev.stream_id
        self.last_stream_id = sid
        headers = list(ev.headers)
        oversized = self._oversized
        guard = self._guard  # (None on a client, which gets no requests)
        if (
            (guard is None or len(headers) > guard.fitting_fields)
            and _header_list_size(headers) > self.config.max_header_list_size
        ) or (oversized and sid in oversized):
            oversized.pop(sid, None)
            self._refuse(sid, ev.end_stream, _HEADERS_TOO_LARGE)
            return
        fields = dict(headers)
        if b"host" in fields:
            problem = _authority_problem(headers, fields[b"host"])
            if problem is not None:
                self._refuse(sid, ev.end_stream, _BAD_REQUEST, problem.encode() + b"\n")
                return
            fields = dict(headers)  # :authority may have been filled in
        self.streams[sid] = stream = H2Stream(self, sid, headers, fields, ev.end_stream)
        if self.on_stream is None:
            stream.reset(_REFUSED)
            return
        # Handed on once the whole read is dispatched: by then its body (if it came in
        # the same read) is there, and a call may run to its end at once.
        arrived = self._arrived
        if arrived is None:
            self._arrived = [stream]
        else:
            arrived.append(stream)

    def _refuse(
        self, sid: int, request_ended: bool, head: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> None:
        """Answer a request the transport will not pass on (431, 400), on that stream only."""
        # (A request served is activity from when its stream closes; this one never opens.)
        self.last_activity = _monotonic()
        if not request_ended and self._guard is not None:
            self._guard.tolerate(sid)  # its body may still be on the way
        with contextlib.suppress(ngh2.NGH2Error):
            self.engine.send_response(sid, head, end_stream=not body)
            if body:
                self.engine.send_data(sid, body, end_stream=True)
        if not request_ended:
            # Nothing will read the body: tell the client to stop (RFC 9113 8.1), once
            # the response is on the wire (the engine would send the reset first).
            self.loop.call_soon(self._stop_request_body, sid)

    def _stop_request_body(self, sid: int) -> None:
        if not self.lost:
            with contextlib.suppress(ngh2.NGH2Error):
                self.engine.reset_stream(sid, _NO_ERROR)
            self._flush()

    def _on_response(self, ev: ngh2.ResponseReceived) -> None:
        stream = self.streams.get(ev.stream_id)
        if stream is not None:
            headers = list(ev.headers)
            if _header_list_size(headers) > self.config.max_header_list_size:
                stream._refuse_headers("response")
                return
            stream.headers = headers
            if ev.end_stream:
                stream._eof = True
            # Woken and forgotten at once: the stream's close (often in the same read)
            # then finds no waiter left to wake.
            waiter = stream._head_waiter
            if waiter is not None:
                stream._head_waiter = None
                if not waiter.done():
                    waiter.set_result(headers)

    def _on_data(self, ev: ngh2.DataReceived) -> None:
        stream = self.streams.get(ev.stream_id)
        data = ev.data
        if stream is None or stream._error is not None:
            # Nobody will read it (the stream is gone or was given up): let it go.
            if data:
                self.engine.acknowledge_received_data(len(data), ev.stream_id)
            return
        if data:
            chunks = stream._chunks
            if chunks and len(data) < SMALL_PIECE and len(chunks) > stream._head:
                gather(chunks, data)  # a small piece behind an unread one
            else:
                chunks.append(data)
            stream.received += len(data)  # (unacknowledged until read: see _unacked)
        if ev.end_stream:
            stream._eof = True
        waiter = stream._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_trailers(self, ev: ngh2.TrailersReceived) -> None:
        stream = self.streams.get(ev.stream_id)
        if stream is not None:
            trailers = list(ev.headers)
            oversized = self._oversized
            if _header_list_size(trailers) > self.config.max_header_list_size or (
                oversized and ev.stream_id in oversized
            ):
                oversized.pop(ev.stream_id, None)
                stream._refuse_headers("trailer")
                return
            stream.trailers = trailers
            stream._eof = True
            stream._wake_all()

    def _on_reset(self, ev: ngh2.StreamReset) -> None:
        stream = self.streams.get(ev.stream_id)
        if stream is not None:
            stream._fail(StreamReset(ev.error_code), cancel_task=True)

    def _on_closed(self, ev: ngh2.StreamClosed) -> None:
        streams = self.streams
        stream = streams.pop(ev.stream_id, None)
        if stream is None:
            if ev.error_code != _NO_ERROR and self._guard is not None:
                # Refused before it became a stream (431, 400, the engine's own checks):
                # the client may still be sending on it.
                self._guard.tolerate(ev.stream_id)
            return
        unacked = stream.received - stream._acked
        if unacked:
            # Return the unread bytes to the connection window (pointless, and refused by
            # the engine, once a GOAWAY exchange has left nothing more to read). A plain
            # try costs nothing here; contextlib.suppress would cost every request.
            try:  # noqa: SIM105
                self.engine.acknowledge_received_data(unacked, ev.stream_id)
            except ngh2.ConnectionStateError:
                pass
            stream._acked = stream.received
        stream.closed = True
        code = ev.error_code
        if code or not stream._eof:  # (code != NO_ERROR, which is 0)
            if not stream._eof and self._guard is not None:
                self._guard.tolerate(ev.stream_id)  # reset while the client was sending
            if ev.local_error is not None:
                exc: BaseException = StreamReset(code or _CANCEL, str(ev.local_error))
            else:
                exc = StreamReset(code or _CANCEL)
            stream._fail(exc, cancel_task=code != _NO_ERROR)
        elif stream._read_waiter or stream._send_waiter or stream._closed_waiter:
            stream._wake_all()
        if not streams:
            self.last_activity = _monotonic()
            # Frees the table the emptied dict keeps (160 bytes) while the connection idles.
            streams.clear()

    def _on_settings(self, ev: ngh2.SettingsReceived) -> None:
        limit = ev.settings.get(ngh2.Setting.MAX_CONCURRENT_STREAMS)
        if limit is not None:
            self.peer_max_concurrent_streams = limit
        if not self.peer_settings_received:
            self.peer_settings_received = True
            waiter = self._settings_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _on_window(self, ev: ngh2.WindowUpdated) -> None:
        # The flush that follows event dispatch wakes senders whose queue drained; a
        # sender waiting for room may now have a window of its own (see _wait_for_room).
        if self.room_waiters:
            sid = ev.stream_id
            for stream in self.room_waiters if sid == 0 else (self.streams.get(sid),):
                if stream is not None and stream._send_waiter is not None:
                    stream._wake(stream._send_waiter)

    def _on_goaway(self, ev: ngh2.GoAwayReceived) -> None:
        self.closing = True
        self.goaway_last_stream_id = ev.last_stream_id
        if self.is_client:
            for sid, stream in list(self.streams.items()):
                if sid > ev.last_stream_id:
                    stream._fail(StreamReset(_REFUSED, "refused by GOAWAY"), cancel_task=False)

    def _on_connection_closed(self, ev: ngh2.ConnectionClosed) -> None:
        self.closing = True
        self.loop.call_soon(self._abort)

    def _on_ping_ack(self, ev: ngh2.PingAcknowledged) -> None:
        self._ping_sent_at = None

    # -- client API ---------------------------------------------------------------
    def is_available(self) -> bool:
        """True if the connection can take a new stream now."""
        return not self.closing and not self.lost and self.engine.can_send_request

    async def wait_peer_settings(self) -> None:
        """Wait for the peer's first SETTINGS frame: only then is an HTTP/2 server known
        to serve this connection (a listening socket accepts connections into its backlog
        for a process that is hung, or dying, and will never answer them). Raises
        ``ConnectionLost`` if the connection ends first."""
        if self.peer_settings_received:
            return
        if self.lost:
            raise ConnectionLost("connection closed before the peer's SETTINGS")
        if self._settings_waiter is None:
            self._settings_waiter = self.loop.create_future()
        await asyncio.shield(self._settings_waiter)

    def open_stream(
        self, headers: Sequence[tuple[bytes, bytes]], end_stream: bool, body: bytes | None = None
    ) -> H2Stream:
        """(client) Send request headers on a new stream; with ``body``, the whole request
        body too (the stream ends with it), queued in the engine without waiting."""
        engine = self.engine
        if self.closing or self.lost or not engine.can_send_request:  # (is_available inline)
            raise ConnectionRefused("connection is closing")
        try:
            sid = engine.send_request(headers, end_stream=end_stream and body is None)
        except (ngh2.ConnectionClosingError, ngh2.NoAvailableStreamIDError) as exc:
            self.closing = True
            raise ConnectionRefused(str(exc)) from None
        if body is not None:
            try:
                engine.send_data(sid, body, end_stream=True)
            except ngh2.NGH2Error as exc:
                with contextlib.suppress(ngh2.NGH2Error):
                    engine.reset_stream(sid, _CANCEL)
                raise ConnectionRefused(str(exc)) from None
            end_stream = True
        self.streams[sid] = stream = H2Stream(self, sid, None, _NO_FIELDS)
        stream.ended_local = end_stream
        # (No clock read: last_activity matters only while no stream is open, and the
        # close of the last one sets it.)
        if not self._flush_pending:  # (schedule_flush inline)
            self._flush_pending = True
            self.loop.call_soon(self._flush)
        return stream

    # -- lifecycle ----------------------------------------------------------------
    def shutdown(self) -> None:
        """Start a graceful close: GOAWAY now, close once in-flight streams finish."""
        if self.closing or self.lost:
            if not self.streams:
                self._close_when_done()
            return
        self.closing = True
        try:
            if self.is_client:
                self.engine.send_goaway(_NO_ERROR)
            else:
                self.engine.send_goaway(_NO_ERROR, last_stream_id=self.last_stream_id)
        except ngh2.NGH2Error:
            pass
        self._flush()

    @property
    def closed(self) -> asyncio.Future[None]:
        """A future done once the connection is closed."""
        closed = self._closed
        if closed is None:
            closed = self._closed = self.loop.create_future()
            if self.lost:
                closed.set_result(None)
        return closed

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)

    def abort(self) -> None:
        """Close the connection now; open streams fail with ``ConnectionLost``.

        What the streams already queued (final statuses, trailers) goes out first, and
        streams still open get RST_STREAM (NO_ERROR once their response is complete),
        so that the peer sees each call end before the connection does.
        """
        if self.transport is not None and not self.lost:
            with contextlib.suppress(ngh2.NGH2Error):
                for stream in list(self.streams.values()):
                    self.engine.reset_stream(
                        stream.id, _NO_ERROR if stream.ended_local else _CANCEL
                    )
                self._flush()
        self._abort()

    def active_streams(self) -> list[H2Stream]:
        """The streams open now."""
        return list(self.streams.values())

    def _reset_stalled(self, now: float, limit: float) -> None:
        """Reset the streams whose peer has taken none of their queued bytes for ``limit``
        seconds (as nginx's ``send_timeout``), and those that waited that long for room
        to queue theirs: a peer that never opens its window must not hold a response,
        and the handler waiting to send more, forever."""
        queued = self.engine.queued_body_size
        waiting = set(self.room_waiters)
        marks = self._stalled
        kept: dict[int, tuple[int, float]] = {}
        for sid, stream in list(self.streams.items()):
            left = queued(sid)
            if not left and stream not in waiting:
                continue
            mark = marks.get(sid)
            if mark is None or mark[0] != left:
                kept[sid] = (left, now)  # new, or the peer took some: the clock restarts
            elif now - mark[1] < limit:
                kept[sid] = mark
            else:
                if stream._error is None:
                    stream._error = StreamReset(
                        _CANCEL, f"the peer took none of the response for {limit:g} s"
                    )
                stream.reset(_CANCEL)
        self._stalled = kept

    def _close_when_done(self) -> None:
        if self.transport is not None and not self.lost and not self.transport.is_closing():
            self.transport.close()

    def _arm_timer(self) -> None:
        cfg = self.config
        send_timeout = None if self.is_client else cfg.send_timeout
        periods = [p for p in (cfg.idle_timeout, cfg.keepalive_interval, send_timeout) if p]
        if not periods:
            return
        loop = self.loop
        self._timer = wheel_of(loop).schedule(loop, self, min(min(periods), cfg.keepalive_timeout))

    def on_timer(self) -> None:
        """The periodic check: idle timeout, keepalive, stalled streams."""
        self._timer = None
        if self.lost:
            return
        cfg = self.config
        now = time.monotonic()
        if self._ping_sent_at is not None and now - self._ping_sent_at > cfg.keepalive_timeout:
            self.engine.terminate_connection(_NO_ERROR)
            self._flush()
            self._abort()
            return
        if self._heard != self.bytes_received:
            self._heard = self.bytes_received
            self._silent_since = now
        if self.queued and cfg.send_timeout is not None and not self.is_client:
            self._reset_stalled(now, cfg.send_timeout)
        elif self._stalled:
            self._stalled = _NO_MARKS
        idle = now - self.last_activity
        if cfg.idle_timeout is not None and not self.streams and idle > cfg.idle_timeout:
            self.shutdown()
            self._close_when_done()
            return
        if (
            cfg.keepalive_interval is not None
            and self._ping_sent_at is None
            and now - self._silent_since > cfg.keepalive_interval
        ):
            self._ping_sent_at = now
            self.engine.ping()
            self._flush()
        self._arm_timer()


def _event_types(kind: type) -> list[type]:
    found: list[type] = []
    sub: type
    for sub in kind.__subclasses__():
        found += [sub, *_event_types(sub)]
    return found


def _ignore(conn: H2Connection, event: ngh2.Event) -> None:
    """The handler of the events a connection has no use for (PING, SETTINGS ack...)."""


def _event_table(cls: type[H2Connection]) -> dict[type, Callable[[Any, Any], None]]:
    # Every event type has an entry, so that dispatching is one subscript.
    table: dict[type, Callable[[Any, Any], None]] = dict.fromkeys(_event_types(ngh2.Event), _ignore)
    table.update({kind: getattr(cls, name) for kind, name in cls._EVENTS.items()})
    return table


H2Connection._dispatch = _event_table(H2Connection)

"""The stream interface the RPC layers see, whatever the HTTP version underneath."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableSequence, Sequence
from typing import Any, Protocol

from .._http2 import ErrorCode

Headers = list[tuple[bytes, bytes]]

# A received body piece under SMALL_PIECE bytes joins the unread piece before it, if that
# one is small too or already such a gathering (a bytearray, up to GATHER_LIMIT): a peer
# sending a body in tiny DATA frames or chunks to a reader that does not keep up would
# otherwise cost an object per piece, some 20x their bytes (see ``gather``).
SMALL_PIECE = 1024
GATHER_LIMIT = 64 * 1024


def gather(chunks: MutableSequence[Any], data: bytes) -> None:
    """Add the small piece ``data`` behind the unread ``chunks[-1]`` (whose reader turns
    a gathering back into bytes when it takes it)."""
    last = chunks[-1]
    if last.__class__ is bytearray and len(last) < GATHER_LIMIT:
        last += data  # (a bytearray: extended in place)
    elif len(last) < SMALL_PIECE:
        chunks[-1] = bytearray(last) + data
    else:
        chunks.append(data)


class Stream:
    """One HTTP exchange: headers, a body read in chunks, and an optional trailer block.

    On a server, ``headers`` holds the request headers (HTTP/2 pseudo-headers included,
    also for HTTP/1.1). On a client, ``wait_response()`` returns the response headers.
    ``read()`` returns ``b""`` at the end of the body and raises a ``TransportError``
    if the stream was reset or the connection lost. ``task`` is the task serving the
    stream; the transport cancels it when the peer resets the stream (a server that
    wants to tell the application in another way sets it to None).
    """

    __slots__ = ("_fields", "task")

    http_version: str
    supports_trailers: bool
    headers: list[tuple[bytes, bytes]] | None
    trailers: list[tuple[bytes, bytes]] | None
    task: asyncio.Task[Any] | None
    ended_local: bool
    #: Body bytes received and sent so far (DATA payloads; HTTP/1.1 bodies, unchunked).
    received: int
    sent: int
    #: The protocol a request asks to switch to (``b"websocket"``), where the connection
    #: may switch; ``switch()`` then answers and hands over the raw bytes.
    upgrade: bytes | None = None
    #: True if the transport hands the stream on from a point where the call may run
    #: at once, to its end (HTTP/2: after the whole read is dispatched); False if the
    #: server must start it in a task of its own (HTTP/1.1: from inside the parser).
    inline_start = False

    #: The connection the stream belongs to (each subclass holds it in a slot of its own);
    #: it has ``peer``, ``sockname`` and ``transport``.
    _conn: Any

    _fields: dict[bytes, bytes] | None

    @property
    def fields(self) -> dict[bytes, bytes]:
        """The request headers as a dict (a repeated name keeps its last value), made once."""
        fields = self._fields
        if fields is None:
            fields = self._fields = dict(self.headers or ())
        return fields

    @property
    def peer(self) -> Any:
        """The peer's socket address (``getpeername()``) of the connection."""
        return self._conn.peer

    @property
    def local(self) -> Any:
        """This side's socket address (``getsockname()``) of the connection."""
        return self._conn.sockname

    @property
    def scheme(self) -> bytes:
        """``b"https"`` if the connection is TLS, else ``b"http"``: how the client reached
        this server, whatever the request's own ``:scheme`` claims."""
        transport = self._conn.transport
        if transport is not None and transport.get_extra_info("ssl_object") is not None:
            return b"https"
        return b"http"

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        """The peer's verified TLS certificate (``ssl.SSLSocket.getpeercert()``), if any."""
        transport = self._conn.transport
        return transport.get_extra_info("peercert") if transport is not None else None

    @property
    def at_eof(self) -> bool:
        raise NotImplementedError

    async def wait_closed(self) -> None:
        """Wait until the exchange is over: the response ended and the stream closed, the
        stream was reset, or the connection lost."""
        raise NotImplementedError

    async def read(self) -> bytes:
        raise NotImplementedError

    async def read_all(self, limit: int) -> bytes:
        raise NotImplementedError

    def take_body(self, limit: int) -> bytes | None:
        """The whole body at once, if the peer has ended it and all of it (at most
        ``limit`` bytes) is here; None otherwise (then ``read``/``read_all`` as usual).
        Taken: later reads see the end of the body."""
        return None

    def take_chunks(self, limit: int) -> list[bytes] | None:
        """``take_body``, as the chunks the body came in (not joined: for a reader that
        takes it apart anyway)."""
        return None

    def send_headers(
        self, headers: Iterable[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        raise NotImplementedError

    async def send_data(self, data: bytes, end_stream: bool = False) -> None:
        raise NotImplementedError

    def try_respond(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> bool:
        """Send a whole response (its head, then ``body``, ending the stream; with
        ``trailers``, those end it) if that takes no waiting: what ``send_headers``,
        ``send_data`` and ``send_trailers`` would do, without a coroutine. False, with
        nothing sent, if the connection has no room for it now (or the stream cannot send
        trailers this way): then those do it, waiting as they must."""
        return False

    def send_trailers(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError

    def reset(self, error_code: int = ErrorCode.CANCEL) -> None:
        raise NotImplementedError

    def wait_response(self) -> Awaitable[Headers]:
        """(client) The response headers, once they arrive (an awaitable: HTTP/2's is a
        future, with no coroutine of its own)."""
        raise NotImplementedError

    def switch(self, headers: Iterable[tuple[bytes, bytes]]) -> Tunnel:
        raise NotImplementedError


class Tunnel(Protocol):
    """The raw bytes of an exchange that switched protocols (e.g. to WebSocket)."""

    on_shutdown: Callable[[], None] | None

    async def read(self) -> bytes:
        """The next bytes from the peer; ``b""`` once it closed."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data``; waits while the peer is not taking it."""
        ...

    @property
    def pending(self) -> bool:
        """Whether bytes have arrived that ``read()`` has not returned yet."""
        ...

    def close(self) -> None:
        """End the exchange in order (HTTP/1.1: close the connection once what is queued
        has gone; HTTP/2: END_STREAM)."""
        ...

    def abort(self) -> None:
        """End it now, dropping what is still queued (HTTP/1.1: drop the connection;
        HTTP/2: RST_STREAM with CANCEL, RFC 8441's TCP reset)."""
        ...

"""HTTP/1.1 on the server side of one connection, parsed by httptools (llhttp).

This serves clients that do not speak HTTP/2: on the cleartext port once protocol
detection has seen an HTTP/1 request line, and on TLS when ALPN picks ``http/1.1``.
Each request becomes an ``H1Stream`` shaped like an HTTP/2 stream (pseudo-headers
first), so the RPC layers do not need to know which version carried it.

Requests on a connection are answered in order. A pipelined request waits in
``streams`` until the response before it is complete, and only then is it handed to
``on_stream``. How a response is framed is ``H1Stream``'s business (``_h1stream``); the
bytes on the wire come from the sans-IO helpers in ``_h1wire``.

Request bodies are buffered until the application reads them; past
``h1_buffer_limit`` unread bytes on the connection, reading from the socket pauses.

Upgrades are declined (answered in HTTP/1.1), except those named in ``upgrades``
(``websocket`` where an application can take it): such a request's stream has
``upgrade`` set, what follows its head is kept as raw bytes, and ``stream.switch()``
answers ``101 Switching Protocols`` and turns the connection into an ``H1Tunnel``.
If the application answers in HTTP instead, the connection closes after the response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from ._config import TransportConfig
from ._errors import ConnectionLost
from ._h1stream import H1Stream, H1Tunnel
from ._h1wire import (
    CONTINUE,
    NOT_STARTED,
    Reject,
    absolute_form,
    body_head,
    error_response,
    wanted_upgrade,
)
from ._stream import SMALL_PIECE, Headers, gather

__all__ = ["H1Connection", "H1Stream", "H1Tunnel"]

# Requests read ahead of the one being answered before reading pauses.
_MAX_PIPELINED = 16
# Responses to pipelined requests are written together (see _write), up to this many
# bytes at a time.
_HOLD_LIMIT = 64 * 1024
# Seconds to keep reading (and dropping) a request body that the response did not wait
# for. Closing a socket with unread input makes the kernel send a reset, which can
# destroy the response before the client has read it.
_LINGER_SECONDS = 2.0
# HTTP/2 counts 32 bytes of overhead per field against SETTINGS_MAX_HEADER_LIST_SIZE;
# counting the same way makes ``max_header_list_size`` mean the same on both versions.
_FIELD_OVERHEAD = 32
_NO_FIELD = (b"", b"")


class H1Connection(asyncio.Protocol):
    """An asyncio protocol that serves HTTP/1.1 requests on one connection, in order."""

    def __init__(
        self,
        *,
        config: TransportConfig | None = None,
        on_stream: Callable[[H1Stream], None],
        on_close: Callable[[H1Connection], None] | None = None,
        scheme: bytes = b"http",
        upgrades: frozenset[bytes] = frozenset(),
    ) -> None:
        self.config = cfg = config or TransportConfig()
        self.loop = asyncio.get_running_loop()
        self.on_stream = on_stream
        self.on_close = on_close
        self.scheme = scheme
        self.upgrades = upgrades
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.sockname: Any = None
        # Requests received and not yet answered; the first is the one being served.
        self.streams: list[H1Stream] = []
        self.lost = False
        self.closing = False  # shutdown() called: no new requests are served
        self.writing_paused = False
        self.closed: asyncio.Future[None] = self.loop.create_future()
        # Bytes read from and written to the socket (heads and bodies).
        self.bytes_received = self.bytes_sent = 0
        self._buffer_limit = cfg.h1_buffer_limit
        self._max_head = cfg.max_header_list_size
        self._callbacks = SimpleNamespace(
            on_message_begin=self._on_message_begin,
            on_url=self._on_url,
            on_header=self._on_header,
            on_headers_complete=self._on_headers_complete,
            on_body=self._on_body,
            on_message_complete=self._on_message_complete,
        )
        self._parser = HttpRequestParser(self._callbacks)
        # State of the request being parsed.
        self._receiving: H1Stream | None = None  # whose body is arriving
        self._head: Headers | None = None  # fields so far, while in the head
        self._url = b""
        self._host: bytes | None = None
        self._expect = False
        self._head_size = 0
        self._head_raw = 0
        self._messages = 0
        self._synthetic = False  # the next head is the made-up one of _skip_upgrade
        self._upgrade_body: bytes | None = None
        # Flow control and lifecycle.
        self._buffered = 0  # request body bytes received and not yet read
        self._reading_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._stopped = False  # the input is unusable (bad request) or the socket is gone
        self._peer_eof = False
        self._lingering = False
        self._fatal: bytes | None = None  # error response due after the ones in flight
        # Response bytes held back to go out with the next pipelined responses, their
        # size, and how many requests had been handed on when _release_held last looked.
        self._held: list[bytes] | None = None
        self._held_size = 0
        self._handed = self._seen = 0
        self._idle_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._tls = False
        # After a request that may switch protocols: the raw bytes that follow its head,
        # then (once switched) the tunnel they go to.
        self._raw: bytearray | None = None
        self._switching: H1Stream | None = None
        self._tunnel: H1Tunnel | None = None

    # -- asyncio.Protocol -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.sockname = transport.get_extra_info("sockname")
        self._tls = transport.get_extra_info("ssl_object") is not None
        self._idle_since = self.loop.time()
        timeout = self.config.idle_timeout
        if timeout is not None:
            self._timer = self.loop.call_later(timeout, self._tick)

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if self._stopped:
            if self._raw is not None:
                self._raw_received(data)
            return
        messages = self._messages
        in_head = self._head is not None
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as exc:
            if self._switching is not None:
                self._stopped = True  # what follows is the new protocol's
                self._raw = bytearray()
                self._raw_received(data[exc.args[0] :])
            else:
                self._skip_upgrade(data, exc.args[0])
            return
        except HttpParserError as exc:
            self._parse_failed(exc)
            return
        if self._head is not None:
            if in_head and messages == self._messages:
                # httptools buffers a header line until it ends, so a head that keeps
                # growing is bounded by the bytes received as well as by its fields.
                self._head_raw += len(data)
                if self._head_raw > self._max_head:
                    self._reject(431, "request header fields too large")
                    return
            # A head that did not arrive whole in one read must finish in time (a
            # slow-loris client otherwise holds the connection for the idle timeout).
            if self._head_timer is None and self.config.request_head_timeout is not None:
                self._head_timer = self.loop.call_later(
                    self.config.request_head_timeout, self._head_timed_out, self._messages
                )

    def eof_received(self) -> bool | None:
        if self._receiving is not None or self._lingering or not self.streams or self._tls:
            # Nothing left to answer, or a request was cut short: let the transport
            # close; connection_lost fails what is in flight.
            return None
        # The client half-closed after sending its requests: answer them, then close.
        self._peer_eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._held = None
        self._stopped = True
        for timer in (self._timer, self._linger_timer, self._head_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._linger_timer = self._head_timer = None
        err = ConnectionLost(f"connection lost: {exc}" if exc else "connection closed")
        streams = list(self.streams)
        self.streams.clear()
        receiving = self._receiving
        self._receiving = None
        for stream in streams:
            stream._fail(err, cancel_task=True)
        if receiving is not None and receiving not in streams:
            receiving._fail(err, cancel_task=False)
        if self._tunnel is not None:
            self._tunnel._end()
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_close is not None:
            self.on_close(self)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- parser callbacks -----------------------------------------------------------
    def _on_message_begin(self) -> None:
        self._messages += 1
        self._url = b""
        self._head = [_NO_FIELD, _NO_FIELD, _NO_FIELD, _NO_FIELD]  # pseudo-headers go here
        self._host = None
        self._expect = False
        self._head_size = 0
        self._head_raw = 0

    def _on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._max_head:
            raise Reject(431, "request header fields too large")

    def _on_header(self, name: bytes, value: bytes) -> None:
        size = self._head_size = self._head_size + len(name) + len(value) + _FIELD_OVERHEAD
        if size > self._max_head:
            raise Reject(431, "request header fields too large")
        name = name.lower()
        head = self._head
        if head is None:
            # After the head, fields are the trailer section of a chunked body.
            stream = self._receiving
            if stream is not None:
                if stream.trailers is None:
                    stream.trailers = []
                stream.trailers.append((name, value))
            return
        if name == b"host":
            if self._host is not None:
                raise Reject(400, "more than one Host header")
            self._host = value
            return
        if name == b"expect":
            self._expect = value.lower() == b"100-continue"
        head.append((name, value))

    def _on_headers_complete(self) -> None:
        head = self._head
        self._head = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._synthetic:
            self._synthetic = False
            return
        assert head is not None
        parser = self._parser
        method = parser.get_method()
        upgrade: bytes | None = None
        if parser.should_upgrade():
            if method == b"CONNECT":
                raise Reject(501, "CONNECT is not supported")
            upgrade = wanted_upgrade(head, self.upgrades) if method == b"GET" else None
            if upgrade is None:
                # Other upgrades (h2c, ...) are declined by answering in HTTP/1.1.
                self._upgrade_body = body_head(head)
        http10 = parser.get_http_version() == "1.0"
        url = self._url
        host = self._host
        if url[:1] != b"/" and url != b"*":
            # The authority in an absolute-form target overrides Host (RFC 9112 3.2.2).
            url, host = absolute_form(url)
        elif host is None and not http10:
            raise Reject(400, "missing Host header")
        if self.closing or self._lingering:
            return  # not served: the body is dropped and the connection closes
        head[0] = (b":method", method)
        head[1] = (b":path", url)
        head[2] = (b":scheme", self.scheme)
        if host is None:
            del head[3]
        else:
            head[3] = (b":authority", host)
        stream = H1Stream(
            self,
            head,
            parser.should_keep_alive(),
            http10,
            method == b"HEAD",
            self._expect and not http10,
        )
        if upgrade is not None:
            stream.upgrade = upgrade
            stream._keep_alive = False  # unless it switches, the connection ends with it
            self._switching = stream
        self._receiving = stream
        streams = self.streams
        streams.append(stream)
        self._idle_since = None
        if len(streams) == 1:
            self.on_stream(stream)
        elif len(streams) > _MAX_PIPELINED and not self._reading_paused:
            self._pause_reading()

    def _on_body(self, body: bytes) -> None:
        stream = self._receiving
        if stream is None:
            return
        chunks = stream._chunks
        if chunks and len(body) < SMALL_PIECE:
            gather(chunks, body)  # a small piece behind an unread one
        else:
            chunks.append(body)
        stream.received += len(body)
        if stream._expect_continue:
            stream._expect_continue = False  # the client sent the body without waiting
        waiter = stream._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._buffered += len(body)
        if self._buffered > self._buffer_limit and not self._reading_paused:
            self._pause_reading()

    def _on_message_complete(self) -> None:
        if self._upgrade_body is not None:
            return  # llhttp skipped the body of an upgrade request; _skip_upgrade reads it
        stream = self._receiving
        if stream is None:
            if self._lingering:
                self._close()
            return
        self._receiving = None
        stream._eof = True
        stream._wake()

    def _skip_upgrade(self, data: bytes, offset: int) -> None:
        """Go on in HTTP/1.1 after a request that asked to change protocols.

        llhttp stops at the end of an upgrade request's head and takes what follows
        for the new protocol, body included. A fresh parser, primed with a made-up head
        of the same body framing, reads that body for the request, then the requests
        after it.
        """
        while not self._stopped:
            rest = data[offset:]
            body_head = self._upgrade_body
            parser = self._parser
            if body_head is not None:
                self._upgrade_body = None
                parser = self._parser = HttpRequestParser(self._callbacks)
                self._synthetic = True
            try:
                if body_head is not None:
                    parser.feed_data(body_head)
                parser.feed_data(rest)
                return
            except HttpParserUpgrade as exc:
                data, offset = rest, exc.args[0]
            except HttpParserError as exc:
                self._parse_failed(exc)
                return

    # -- switching protocols ----------------------------------------------------------
    def _raw_received(self, data: bytes) -> None:
        if not data:
            return
        self._buffered += len(data)
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel._feed(data)
        else:
            assert self._raw is not None
            self._raw += data
        if self._buffered > self._buffer_limit and not self._reading_paused:
            self._pause_reading()

    def _open_tunnel(self, stream: H1Stream) -> H1Tunnel:
        if stream is not self._switching or self._raw is None:
            raise RuntimeError("this request cannot switch protocols")
        if stream in self.streams:
            self.streams.remove(stream)
        if self._receiving is stream:
            self._receiving = None
        raw, self._raw = bytes(self._raw), bytearray()
        tunnel = self._tunnel = H1Tunnel(self, raw)
        if self.lost:
            tunnel._end()
        return tunnel

    # -- flow control -------------------------------------------------------------
    def _pause_reading(self) -> None:
        self._reading_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self._buffered <= self._buffer_limit
            and len(self.streams) <= _MAX_PIPELINED
            and (not self._stopped or self._raw is not None)
            and self.transport is not None
        ):
            self._reading_paused = False
            self.transport.resume_reading()

    def _consumed(self, n: int) -> None:
        self._buffered -= n
        if self._reading_paused:
            self._maybe_resume_reading()

    async def _wait_writable(self) -> None:
        while self.writing_paused and not self.lost:
            drained = self._drained
            if drained is None or drained.done():
                drained = self._drained = self.loop.create_future()
            await drained

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.lost:
            return
        self.bytes_sent += len(data)
        held = self._held
        if held is None:
            if len(self.streams) < 2:
                transport.write(data)
                return
            # More requests are waiting behind this one (pipelined): their responses
            # join these bytes and leave in one write once none is left to run.
            held = self._held = []
            self._held_size = 0
            self._seen = self._handed
            self.loop.call_soon(self._release_held)
        held.append(data)
        self._held_size += len(data)
        if self._held_size >= _HOLD_LIMIT:
            self._write_held()

    def _release_held(self) -> None:
        if self._held is None:
            return
        if self._handed != self._seen and self.streams and not self.lost:
            # A request was handed on since the last look: its response (if it does not
            # have to wait) joins the held bytes, in the loop's next turn.
            self._seen = self._handed
            self.loop.call_soon(self._release_held)
            return
        self._write_held()

    def _write_held(self) -> None:
        held = self._held
        self._held = None
        if held and self.transport is not None and not self.lost:
            self.transport.write(b"".join(held))

    def _send_continue(self, stream: H1Stream) -> None:
        if stream._framing == NOT_STARTED and stream._response is None and not self._stopped:
            self._write(CONTINUE)

    # -- request and response lifecycle --------------------------------------------
    def _response_done(self, stream: H1Stream) -> None:
        """Called when ``stream``'s response is complete: serve the next or close."""
        streams = self.streams
        if streams and streams[0] is stream:
            del streams[0]
        elif stream in streams:
            streams.remove(stream)
        if not stream._eof:
            self._abandon(stream)
            return
        if not stream._keep_alive or self.closing:
            self._close()
            return
        if streams:
            if self._reading_paused:
                self._maybe_resume_reading()
            self._handed += 1
            self.on_stream(streams[0])
            return
        if self._fatal is not None:
            self._write(self._fatal)
            self._linger()
            return
        if self._peer_eof:
            self._close()
            return
        self._idle_since = self.loop.time()

    def _abandon(self, stream: H1Stream) -> None:
        """Drop the rest of a request body that its response did not wait for, then close."""
        if self._receiving is stream:
            self._receiving = None
        self._buffered -= sum(map(len, stream._chunks))
        stream._chunks.clear()
        stream._fail(
            ConnectionLost("the response ended before the request body was read"),
            cancel_task=False,
        )
        self._linger()

    def _linger(self) -> None:
        """Close once the client stops sending, or after a grace period.

        Closing a socket with unread input makes the kernel reset the connection, which
        can destroy the last response before the client has read it. So the write side
        is shut (where the transport can) and input is read and dropped meanwhile.
        """
        self._lingering = True
        transport = self.transport
        if transport is None or self.lost or transport.is_closing():
            return
        if self._held is not None:
            self._write_held()
        if self._peer_eof:
            self._close()  # the client has sent all it will
            return
        if transport.can_write_eof():
            transport.write_eof()
        self._linger_timer = self.loop.call_later(_LINGER_SECONDS, self._close)
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _stream_reset(self, stream: H1Stream) -> None:
        if stream in self.streams:
            self.streams.remove(stream)
        self._close()

    def _parse_failed(self, exc: HttpParserError) -> None:
        cause = exc.__context__
        if isinstance(cause, Reject):
            self._reject(cause.status, cause.message)
        elif isinstance(exc, HttpParserCallbackError) and cause is not None:
            # A failure on this side (in on_stream, say), not the client's fault.
            self.loop.call_exception_handler(
                {
                    "message": "HTTP/1.1 request dispatch failed",
                    "exception": cause,
                    "protocol": self,
                }
            )
            self._reject(500, "internal error")
        else:
            self._reject(400, f"malformed HTTP/1.1 request: {exc}")

    def _head_timed_out(self, message: int) -> None:
        self._head_timer = None
        if self._head is not None and self._messages == message and not self.lost:
            timeout = self.config.request_head_timeout
            self._reject(408, f"request head not complete within {timeout:g} s")

    def _reject(self, status: int, message: str) -> None:
        """Answer a request that cannot be served with ``status``, then close."""
        self._stopped = True  # what follows in the input cannot be parsed: drop it
        if self._lingering:
            self._close()
            return
        stream = self._receiving
        self._receiving = None
        if stream is not None:
            streams = self.streams
            active = bool(streams) and streams[0] is stream
            if stream in streams:
                streams.remove(stream)
            stream._fail(ConnectionLost(f"bad request: {message}"), cancel_task=True)
            if active and stream._framing != NOT_STARTED:
                self._close()  # its response has begun: nothing more can be said
                return
        response = error_response(status, message)
        if self.streams:
            self._fatal = response  # responses go out in order
            if not self._reading_paused:
                self._pause_reading()
        else:
            self._write(response)
            self._linger()

    def _close(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self._held is not None:
                self._write_held()
            transport.close()

    def _tick(self) -> None:
        # One timer per connection, re-armed only when it fires, rather than one per request.
        self._timer = None
        timeout = self.config.idle_timeout
        if self.lost or timeout is None:
            return
        now = self.loop.time()
        since = self._idle_since
        if since is not None and now - since >= timeout:
            self._close()
            return
        self._timer = self.loop.call_at((now if since is None else since) + timeout, self._tick)

    # -- lifecycle ----------------------------------------------------------------
    def shutdown(self) -> None:
        """Close gracefully: finish the response in progress, then close (now if idle).

        Pipelined requests not yet started are not served; the client sees the
        connection close before their responses and may retry them.
        """
        self.closing = True
        tunnel = self._tunnel
        if tunnel is not None:
            if tunnel.on_shutdown is not None:
                tunnel.on_shutdown()  # the protocol on top says goodbye in its own way
            else:
                self._close()
            return
        if not self.streams and not self._lingering:
            self._close()

    def abort(self) -> None:
        """Close the connection now; open streams fail with ``ConnectionLost``."""
        self._close()

    def active_streams(self) -> list[H1Stream]:
        """The requests in progress (or pipelined) now."""
        return list(self.streams)

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)

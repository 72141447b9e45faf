"""Hosting an ASGI 3 application: the ``http`` and ``lifespan`` scopes over h2mesh streams.

One request is one ``_Exchange``: the scope is built once from the headers the transport
has already parsed, and ``receive``/``send`` are two methods of that object. Request body
chunks are read from the stream only when the application asks for them, so the HTTP/2
window (or HTTP/1.1 socket reading) reopens at the application's pace; ``send`` awaits
while the peer's window or the socket buffer is full.

The transport does not cancel the application's task when the client resets the stream
or goes away: as ASGI expects, the application hears ``http.disconnect`` from
``receive()``, and ``send()`` raises ``ClientDisconnected`` (an ``OSError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from email.utils import formatdate
from time import time as _now
from typing import Any
from urllib.parse import unquote

from .._http2 import ErrorCode
from ..transport import Headers, Stream, TransportError
from ._asgi_types import ASGIApp, ClientDisconnected, Message
from ._forwarded import ProxyTrust, forwarded_client, forwarded_scheme

__all__ = [
    "ASGIApp",
    "AsgiHost",
    "ClientDisconnected",
    "LifespanFailed",
    "http_scope",
]

log = logging.getLogger("h2mesh.asgi")

_ASGI = {"version": "3.0", "spec_version": "2.4"}
_INTERNAL_ERROR = ErrorCode.INTERNAL_ERROR
_NO_ERROR = ErrorCode.NO_ERROR
# Connection-specific fields are not allowed in HTTP/2 (RFC 9113 8.2.2); HTTP/1.1 writes
# its own framing fields.
_H2_DROPPED = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# The fields response_head looks at: those it drops, and the two it adds unless given.
_SPECIAL = _H2_DROPPED | {b"server", b"date"}
_SERVER_ERROR_BODY = b"Internal Server Error"
_SERVER_ERROR = [
    (b":status", b"500"),
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"%d" % len(_SERVER_ERROR_BODY)),
]
# A response that ends before its request body: this much more of the body is read and
# dropped (so an HTTP/2 client is not left waiting for window; clients such as httpx send
# the whole body before reading the response), then the stream is reset with NO_ERROR,
# which RFC 9113 8.1 tells clients to take as "stop sending, the response stands".
_DRAIN_LIMIT = 8 * 1024 * 1024
_PSEUDO = frozenset({b":method", b":path", b":scheme", b":authority", b":protocol"})
_STATUS = {code: b"%d" % code for code in range(100, 600)}
_STATUS_FIELDS = {code: (b":status", value) for code, value in _STATUS.items()}
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
_SCHEMES = {b"http": "http", b"https": "https"}
_UNSET: Any = object()

# Response states of an exchange.
_START = 0  # waiting for http.response.start
_HEAD = 1  # start received; the head goes out with the first body message
_BODY = 2  # head sent, more body to come
_TRAILERS = 3  # body done, waiting for http.response.trailers
_DONE = 4


class LifespanFailed(RuntimeError):
    """The application answered ``lifespan.startup`` with ``lifespan.startup.failed``."""


def http_scope(
    headers: Headers,
    http_version: str,
    client: Any,
    server: Any,
    *,
    root_path: str = "",
    state: dict[str, Any] | None = None,
    trailers: bool = False,
) -> dict[str, Any]:
    """The ASGI ``http`` scope of a request, from its header list as the transport gives
    it (pseudo-headers first, for HTTP/1.1 too).

    ``:authority`` becomes a ``host`` header when the request has none (HTTP/2 clients
    send no ``host``), and HTTP/2's split ``cookie`` fields are joined (RFC 9113 8.2.3).
    """
    by_name = dict(headers)
    scheme = by_name.get(b":scheme", b"http")
    template = scope_template(
        http_version,
        _address(client),
        _address(server),
        root_path,
        _SCHEMES.get(scheme) or scheme.decode("latin-1"),
    )
    return _scope(headers, by_name, template, state, trailers)


def _address(sockname: Any) -> tuple[Any, Any] | None:
    """A socket address (four items for IPv6) as ASGI's ``(host, port)``; None for a
    Unix socket's path or no address."""
    return sockname[:2] if sockname.__class__ is tuple else None


def _scope(
    headers: Headers,
    by_name: dict[bytes, bytes],
    template: dict[str, Any],
    state: dict[str, Any] | None,
    trailers: bool,
) -> dict[str, Any]:
    """``http_scope``, given also the request's fields as a dict (``Stream.fields``,
    which the router has built already), and the ``scope_template`` of its connection."""
    # Every request pays for this, so no Python loop over the fields in the common case:
    # the dict answers the lookups, and a field list with no repeated name (the dict as
    # long as the list) has no cookies to join.
    get = by_name.get
    method = get(b":method", b"")
    target = get(b":path", b"")
    # The pseudo-header fields come first (RFC 9113 8.3; the HTTP/1.1 transport puts its
    # own first too): all of :method, :scheme and :path in a request other than CONNECT
    # (the engine refuses one without them, or with :protocol), and maybe :authority.
    authority = get(b":authority")
    if method != b"CONNECT":
        pseudo = 3 if authority is None else 4
    else:
        pseudo = len(_PSEUDO.intersection(by_name))
    if authority is None or b"host" in by_name:
        fields = headers[pseudo:]
        if len(by_name) != len(headers):
            fields = _join_cookies(fields)
    else:
        # (HTTP/2 clients send no host: :authority stands for it.) The last pseudo-header
        # field's place in the copy becomes the host field's.
        fields = headers[pseudo - 1 :]
        fields[0] = (b"host", authority)
        if len(by_name) != len(headers):
            fields = _join_cookies(fields)
    raw_path, _, query = target.partition(b"?")
    try:
        path = raw_path.decode()
    except UnicodeDecodeError:
        path = raw_path.decode("utf-8", "replace")
    if "%" in path:
        path = unquote(path)
    if not trailers:
        te = get(b"te")
        trailers = te is not None and te.lower().find(b"trailers") >= 0
    # A copy of a dict with the keys in place costs less than a dict display of them all.
    scope = template.copy()
    scope["method"] = _METHODS.get(method) or method.decode("latin-1")
    scope["path"] = path
    scope["raw_path"] = raw_path
    scope["query_string"] = query
    scope["headers"] = fields
    scope["state"] = state.copy() if state else {}
    scope["extensions"] = {"http.response.trailers": {}} if trailers else {}
    return scope


def scope_template(
    http_version: str, client: Any, server: Any, root_path: str, scheme: str = "http"
) -> dict[str, Any]:
    """The keys of an ``http`` scope in their order, with the values that every request
    of a connection shares (``client`` and ``server`` as ASGI has them, and the scheme:
    the connection's, TLS or not, as for HTTP/1.1, not what an HTTP/2 request's
    ``:scheme`` claims)."""
    return {
        "type": "http",
        "asgi": _ASGI,
        "http_version": http_version,
        "method": "GET",
        "scheme": scheme,
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": root_path,
        "headers": [],
        "client": client,
        "server": server,
        "state": None,
        "extensions": None,
    }


def _join_cookies(fields: Headers) -> Headers:
    """``fields`` with its ``cookie`` fields joined into one, where the first was (the
    same list if it has fewer than two)."""
    if sum(1 for name, _ in fields if name == b"cookie") < 2:
        return fields
    joined: Headers = []
    values: list[bytes] = []
    at = 0
    for field in fields:
        if field[0] == b"cookie":
            if not values:
                joined.append(field)  # replaced below
                at = len(joined) - 1
            values.append(field[1])
        else:
            joined.append(field)
    joined[at] = (b"cookie", b"; ".join(values))
    return joined


class AsgiHost:
    """Runs one ASGI 3 application for a ``Server``: requests, and the lifespan protocol
    (made by ``host_app``, with the options of ``server/_app.py``).

    ``lifespan``: ``"auto"`` runs it and carries on if the application does not support
    it, ``"on"`` requires it, ``"off"`` never sends it.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        root_path: str,
        lifespan: str,
        server_header: bool,
        date_header: bool,
        kind: str = "ASGI",
        ws_max_size: int,
        ws_ping_interval: float | None,
        ws_ping_timeout: float | None,
        ws_per_message_deflate: bool,
    ) -> None:
        if lifespan not in ("auto", "on", "off"):
            raise ValueError(f"lifespan must be 'auto', 'on' or 'off', not {lifespan!r}")
        self.app = app
        self.kind = kind
        self.root_path = root_path
        #: Largest WebSocket message taken (bytes); a larger one closes with 1009.
        self.ws_max_size = ws_max_size
        #: Seconds between the server's keepalive pings on a WebSocket (None: no pings),
        #: and how long the client may then stay silent before it is closed with 1011.
        self.ws_ping_interval = ws_ping_interval
        self.ws_ping_timeout = ws_ping_timeout
        #: Whether a client's permessage-deflate offer is taken.
        self.ws_per_message_deflate = ws_per_message_deflate
        #: Protocols an HTTP/1.1 request may switch to: ``websocket`` for an ASGI
        #: application, when wsproto (``h2mesh[websockets]``) is installed.
        self.upgrades: frozenset[bytes] = (
            frozenset({b"websocket"}) if kind == "ASGI" and _have_wsproto() else frozenset()
        )
        self.lifespan = lifespan
        #: The lifespan state; each request's ``scope["state"]`` is a shallow copy.
        self.state: dict[str, Any] = {}
        # What every response ends with unless the application gave its own: ``server``
        # and ``date``, the latter formatted again once a second (at _tail_until).
        self._extra: list[tuple[bytes, bytes]] = []
        self._date_header = date_header
        self.server_header = server_header  # (sets the tail, as date_header does)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Open WebSocket sessions (closed with 1012 when the server shuts down).
        self.websockets: set[Any] = set()
        self._lifespan: _Lifespan | None = None
        self.started = False
        #: Trusted proxies whose forwarding headers give ``scope["client"]`` (the server's).
        self.trust: ProxyTrust | None = None
        # The peer address of the last request and (client, server) as a scope has them.
        self._last_peer: Any = _UNSET
        self._last_template: dict[str, Any] = {}

    @property
    def server_header(self) -> bool:
        """Whether responses get a ``server: h2mesh`` field (the application's own wins);
        settable, like the other options, until the server starts."""
        return bool(self._extra)

    @server_header.setter
    def server_header(self, on: bool) -> None:
        self._extra = [(b"server", b"h2mesh")] if on else []
        self._reset_tail()

    @property
    def date_header(self) -> bool:
        """Whether responses get a ``date`` field (the application's own wins)."""
        return self._date_header

    @date_header.setter
    def date_header(self, on: bool) -> None:
        self._date_header = on
        self._reset_tail()

    def _reset_tail(self) -> None:
        self._tail = self._extra
        self._date = b""
        self._tail_until = 0.0 if self._date_header else float("inf")

    def describe(self) -> str:
        """What is mounted, for logs: ``ASGI application module:name``."""
        app = getattr(self.app, "app", None) if self.kind == "WSGI" else self.app
        name = getattr(app, "__qualname__", None) or type(app).__qualname__
        return f"{self.kind} application {getattr(app, '__module__', '?')}:{name}"

    # -- lifespan ---------------------------------------------------------------------
    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the application's answer (once)."""
        if self.started:
            return
        self.started = True
        if self.lifespan == "off":
            return
        lifespan = _Lifespan(self.app, self.state, required=self.lifespan == "on")
        if await lifespan.startup():
            self._lifespan = lifespan

    def going_away(self) -> None:
        """The server is shutting down: close open WebSockets (1012)."""
        for session in list(self.websockets):
            session.going_away()

    async def shutdown(self, cancel_after: float = 0.0) -> None:
        """Cancel requests still running after ``cancel_after`` seconds, then send
        ``lifespan.shutdown`` and wait for the application's answer."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=cancel_after)
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=1.0)
        lifespan, self._lifespan = self._lifespan, None
        self.started = False
        if lifespan is not None:
            await lifespan.shutdown()
        close = getattr(self.app, "close", None) if self.kind == "WSGI" else None
        if close is not None:
            close()

    # -- requests ---------------------------------------------------------------------
    async def serve(self, stream: Stream) -> None:
        """Run the application for one request, from scope to the end of the response."""
        task = stream.task
        # Resets reach the application as http.disconnect, not as a cancellation.
        stream.task = None
        if task is not None:
            self._tasks.add(task)
        peer = stream.peer
        scheme = None
        if self.trust is not None:
            peer = forwarded_client(stream.headers or (), peer, self.trust)
            scheme = forwarded_scheme(stream.headers or (), stream.peer, self.trust)
        if peer is not self._last_peer:
            # (A connection's requests share its address objects: held here, the peer
            # stands for the connection until a request of another one comes.)
            self._last_peer = peer
            self._last_template = scope_template(
                stream.http_version,
                _address(peer),
                _address(stream.local),
                self.root_path,
                _SCHEMES[stream.scheme],
            )
        scope = _scope(
            stream.headers or [],
            stream.fields,
            self._last_template,
            self.state,
            stream.supports_trailers,
        )
        if scheme is not None:
            scope["scheme"] = scheme  # (a WebSocket's becomes ws or wss from it)
        method = scope["method"]
        upgrade = stream.upgrade
        if upgrade is not None or (method == "CONNECT" and self.upgrades):
            if upgrade is None:
                upgrade = _connect_protocol(stream)  # RFC 8441: CONNECT with :protocol
            if upgrade == b"websocket":
                await self._serve_websocket(stream, scope, task)
                return
        # (Its fields set here, not by an __init__: a frame less on every request.)
        exchange = _new_exchange(_Exchange)
        exchange.host = self
        exchange.stream = stream
        exchange.method = method
        exchange.state = _START
        exchange.body_done = exchange.disconnected = False
        exchange.head = None
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except ClientDisconnected:
            pass
        except Exception:
            log.exception("%s application failed on %s %s", self.kind, method, scope["path"])
            await exchange.fail()
        else:
            if exchange.state != _DONE:
                if not exchange.disconnected:
                    log.error(
                        "%s application returned without completing the response to %s %s",
                        self.kind,
                        method,
                        scope["path"],
                    )
                await exchange.fail()
        finally:
            if task is not None:
                self._tasks.discard(task)
        if stream.http_version == "2" and not stream.at_eof:
            await _drain(stream)

    async def _serve_websocket(
        self, stream: Stream, scope: dict[str, Any], task: asyncio.Task[Any] | None
    ) -> None:
        from ._websocket import serve_websocket

        try:
            await serve_websocket(self, stream, scope)
        except TransportError:
            pass  # the client went away while the WebSocket was closing
        finally:
            if task is not None:
                self._tasks.discard(task)

    def response_head(self, status: int, headers: Any) -> list[tuple[bytes, bytes]]:
        """The response header list: ``:status``, the application's fields (names
        lowercased, connection-specific ones dropped), then ``server`` and ``date``."""
        if headers.__class__ is not list:
            headers = list(headers)  # (an iterator could not be gone through twice)
        head = [_STATUS_FIELDS.get(status) or (b":status", b"%d" % status)]
        append = head.append
        try:
            for field in headers:
                name, value = field
                # The common field, a tuple of lowercase bytes, goes in as it is.
                if not name.islower() or field.__class__ is not tuple:
                    name = name.lower()
                    field = (name, value)
                if name in _SPECIAL or value.__class__ is not bytes:
                    return self._careful_head(status, headers)
                append(field)
        except (TypeError, AttributeError):  # a bytearray name (unhashable), say
            return self._careful_head(status, headers)
        if _now() >= self._tail_until:
            self._next_second()
        head += self._tail
        return head

    def _careful_head(self, status: int, headers: Any) -> list[tuple[bytes, bytes]]:
        """``response_head`` for fields that need more work: names to make bytes, fields
        to drop, a ``server`` or ``date`` of the application's own."""
        head = [(b":status", _STATUS.get(status) or b"%d" % status)]
        append = head.append
        has_server = has_date = False
        for name, value in headers:
            name = bytes(name).lower()
            if name in _SPECIAL:
                if name in _H2_DROPPED:
                    continue
                if name == b"server":
                    has_server = True
                else:
                    has_date = True
            append((name, value if value.__class__ is bytes else bytes(value)))
        if not has_server:
            head += self._extra
        if self._date_header and not has_date:
            if _now() >= self._tail_until:
                self._next_second()
            append((b"date", self._date))
        return head

    def _next_second(self) -> None:
        second = int(_now())
        self._tail_until = second + 1.0
        self._date = formatdate(second, usegmt=True).encode()
        self._tail = [*self._extra, (b"date", self._date)]


def _connect_protocol(stream: Stream) -> bytes | None:
    for name, value in stream.headers or ():
        if name == b":protocol":
            return value.lower()
        if name[:1] != b":":
            break
    return None


def _have_wsproto() -> bool:
    import importlib.util

    return importlib.util.find_spec("wsproto") is not None


async def _drain(stream: Stream) -> None:
    """Read what is left of a request body the response did not wait for; past
    ``_DRAIN_LIMIT`` bytes, tell the client to stop (RST_STREAM NO_ERROR)."""
    left = _DRAIN_LIMIT
    with contextlib.suppress(TransportError):
        while left > 0:
            chunk = await stream.read()
            if not chunk:
                return
            left -= len(chunk)
        stream.reset(_NO_ERROR)


class _Exchange:
    """One request: the ``receive`` and ``send`` callables handed to the application.

    The common exchange (a request body read whole, or none; a response head and one
    body message) takes the first branch of each method and awaits nothing that does
    not have to wait.
    """

    __slots__ = (
        "body_done",
        "disconnected",
        "drop_body",
        "head",
        "host",
        "method",
        "state",
        "stream",
        "trailers",
        "wants_trailers",
    )

    # (Made by AsgiHost.serve, which sets the first six; wants_trailers and trailers are
    # set by http.response.start, drop_body by the first body message: nothing reads
    # them before.)
    host: AsgiHost
    stream: Stream
    method: str
    state: int
    body_done: bool
    disconnected: bool
    head: list[tuple[bytes, bytes]] | None
    wants_trailers: bool
    drop_body: bool
    trailers: list[tuple[bytes, bytes]]

    async def receive(self) -> Message:
        if not self.body_done:
            stream = self.stream
            try:
                data = await stream.read()
            except TransportError:
                self.disconnected = self.body_done = True
                return {"type": "http.disconnect"}
            if not data or stream.at_eof:
                self.body_done = True
                return {"type": "http.request", "body": data, "more_body": False}
            return {"type": "http.request", "body": data, "more_body": True}
        if self.state != _DONE and not self.disconnected:
            # Nothing more to read: the next event is the end of the exchange.
            await self.stream.wait_closed()
            self.disconnected = True
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.disconnected and self.state != _DONE:
            raise ClientDisconnected("the client has gone away")
        kind = message["type"]
        try:
            if kind == "http.response.body":
                body = message.get("body", b"")
                more = message.get("more_body", False)
                stream = self.stream
                head = self.head
                if head is not None:
                    # The first body message: the head goes out with it.
                    self.head = None
                    # (HTTP/1.1 drops a HEAD body itself, and says its length.)
                    drop = self.method == "HEAD" and stream.http_version == "2"
                    if drop:
                        body = b""
                    if not more and not self.wants_trailers:
                        # The common response: the head and the whole body.
                        self.state = _DONE
                        if body.__class__ is not bytes:
                            body = bytes(body)
                        if stream.try_respond(head, body):
                            return
                        if not body:
                            stream.send_headers(head, True)
                            return
                        stream.send_headers(head)
                        await stream.send_data(body, True)
                        return
                    stream.send_headers(head)
                    self.drop_body = drop
                elif self.state != _BODY:
                    raise RuntimeError(f"unexpected ASGI message {kind!r} in this state")
                elif self.drop_body:
                    body = b""
                end = not more and not self.wants_trailers
                self.state = _BODY if more else _DONE if end else _TRAILERS
                if body or end:
                    await stream.send_data(body if body.__class__ is bytes else bytes(body), end)
            elif kind == "http.response.start" and self.state == _START:
                self.head = self.host.response_head(
                    int(message["status"]), message.get("headers", ())
                )
                self.state = _HEAD
                if message.get("trailers", False):
                    self.wants_trailers = True
                    self.trailers = []
                else:
                    self.wants_trailers = False
            elif kind == "http.response.trailers" and self.state == _TRAILERS:
                trailers = self.trailers
                for name, value in message.get("headers", ()):
                    trailers.append((bytes(name).lower(), bytes(value)))
                if not message.get("more_trailers", False):
                    self.state = _DONE
                    self._send_trailers(trailers)
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r} in this state")
        except TransportError as exc:
            self.disconnected = True
            raise ClientDisconnected(str(exc)) from None

    def _send_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        stream = self.stream
        if trailers and (stream.supports_trailers or _takes_trailers(stream)):
            stream.send_trailers(trailers)
        else:
            stream.end()

    async def fail(self) -> None:
        """The application failed: answer 500 if nothing was sent yet, otherwise abort
        (RST_STREAM on HTTP/2, closing the connection on HTTP/1.1)."""
        stream = self.stream
        state = self.state
        self.state = _DONE
        if state == _DONE or self.disconnected:
            return
        if state <= _HEAD:
            with contextlib.suppress(TransportError):
                stream.send_headers(self.host.response_head(500, _SERVER_ERROR[1:]))
                await stream.send_data(_SERVER_ERROR_BODY, end_stream=True)
            return
        stream.reset(_INTERNAL_ERROR)


_new_exchange = object.__new__


def _takes_trailers(stream: Stream) -> bool:
    """Whether an HTTP/1.1 client said it accepts chunked trailers (``TE: trailers``)."""
    for name, value in stream.headers or ():
        if name == b"te":
            return value.lower().find(b"trailers") >= 0
    return False


# What a lifespan phase came to: done, failed (with the application's message), or
# not taken part in.
_OK = "ok"
_UNSUPPORTED = "unsupported"


class _Lifespan:
    """The ``lifespan`` scope: one task that runs the application from startup to shutdown."""

    def __init__(self, app: ASGIApp, state: dict[str, Any], *, required: bool) -> None:
        self.app = app
        self.state = state
        self.required = required
        loop = asyncio.get_running_loop()
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        # Each resolves to _OK, _UNSUPPORTED or ("failed", message).
        self.started: asyncio.Future[Any] = loop.create_future()
        self.stopped: asyncio.Future[Any] = loop.create_future()
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> bool:
        """True if the application took part; raises ``LifespanFailed`` if it failed."""
        self.task = asyncio.get_running_loop().create_task(self._run())
        self.inbox.put_nowait({"type": "lifespan.startup"})
        outcome = await self.started
        if outcome == _UNSUPPORTED:
            if self.required:
                raise LifespanFailed("the application does not support the lifespan protocol")
            return False
        if outcome != _OK:
            await asyncio.wait([self.task], timeout=1.0)
            raise LifespanFailed(f"ASGI lifespan startup failed: {outcome[1]}")
        return True

    async def shutdown(self) -> None:
        self.inbox.put_nowait({"type": "lifespan.shutdown"})
        outcome = await self.stopped
        if outcome not in (_OK, _UNSUPPORTED):
            log.error("ASGI lifespan shutdown failed: %s", outcome[1])
        if self.task is not None:
            await asyncio.wait([self.task], timeout=1.0)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self._send)
        except Exception as exc:
            if not self.started.done():
                if self.required:
                    log.exception("ASGI lifespan startup failed")
                    _resolve(self.started, ("failed", f"{type(exc).__name__}: {exc}"))
                else:
                    log.info("the ASGI application does not support lifespan (%r)", exc)
            elif not self.stopped.done():
                log.exception("ASGI lifespan failed")
                _resolve(self.stopped, ("failed", f"{type(exc).__name__}: {exc}"))
        finally:
            _resolve(self.started, _UNSUPPORTED)
            _resolve(self.stopped, _UNSUPPORTED)

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            _resolve(self.started, _OK)
        elif kind == "lifespan.startup.failed":
            _resolve(self.started, ("failed", message.get("message", "")))
        elif kind == "lifespan.shutdown.complete":
            _resolve(self.stopped, _OK)
        elif kind == "lifespan.shutdown.failed":
            _resolve(self.stopped, ("failed", message.get("message", "")))
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")


def _resolve(fut: asyncio.Future[Any], outcome: Any) -> None:
    if not fut.done():
        fut.set_result(outcome)

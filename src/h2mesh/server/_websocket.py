"""The ASGI ``websocket`` scope, over an HTTP/1.1 ``Upgrade: websocket`` request or an
HTTP/2 extended CONNECT with ``:protocol websocket`` (RFC 8441).

The handshake answer is written here (``Sec-WebSocket-Accept``, the chosen subprotocol,
permessage-deflate when the client offers it, unless turned off); framing, masking,
fragmentation, control frames and compression are wsproto's (the sans-IO WebSocket
library, ``h2mesh[websockets]``). Pings are answered with pongs. A message larger than
``max_size`` closes the connection with 1009; the server shutting down closes it with
1012. Sending waits while the client is not reading (the socket's buffer is full).

Keepalive: every ``ping_interval`` seconds the server sends a ping; a client that has
sent nothing in the ``ping_timeout`` seconds after it (no pong, nor anything else) is
taken for gone, and the WebSocket is failed (RFC 6455 7.1.7): a close frame with 1011 if
it can still be sent, then the connection is dropped (over HTTP/2 the stream is reset)
with no wait for a close frame a dead client would never send, nor (unlike the
``websockets`` library) for the TCP connection to end; the application's ``receive()``
gives ``websocket.disconnect`` with 1006, as under uvicorn. Frames
are only parsed when the application reads (that is the backpressure), so bytes that
arrived and wait unread count as a sign of life too. With permessage-deflate they go to
wsproto ``_INFLATE_SLICE`` bytes at a time, the message's size checked after each: a
small frame that inflates a thousandfold is refused (1009) before it is all inflated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from ..transport import Stream, TransportError, Tunnel
from ._asgi_types import ClientDisconnected, Message

if TYPE_CHECKING:
    from ._asgi import AsgiHost

__all__ = ["serve_websocket"]

log = logging.getLogger("h2mesh.asgi")

_CLOSE_TIMEOUT = 1.0
# With permessage-deflate, wsproto inflates at once all the bytes it is given, and deflate
# inflates up to 1032-fold: bytes go to it this many at a time (at most ~4 MiB inflated).
_INFLATE_SLICE = 4096
_MESSAGE_TOO_BIG = 1009
_INTERNAL_ERROR = 1011
_SERVICE_RESTART = 1012
_ABNORMAL = 1006
_FORBIDDEN = [(b":status", b"403"), (b"content-length", b"0")]
_SERVER_ERROR = [(b":status", b"500"), (b"content-length", b"0")]


def websocket_scope(http: dict[str, Any]) -> dict[str, Any]:
    """The ``websocket`` scope for a request whose ``http`` scope is given."""
    scope = dict(http)
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if http["scheme"] == "https" else "ws"
    del scope["method"]
    protocols: list[str] = []
    for name, value in http["headers"]:
        if name == b"sec-websocket-protocol":
            protocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    scope["subprotocols"] = protocols
    scope["extensions"] = {}
    return scope


async def serve_websocket(host: AsgiHost, stream: Stream, http: dict[str, Any]) -> None:
    """Run the application for one WebSocket request, from connect to close."""
    scope = websocket_scope(http)
    session = _Session(stream, http["headers"], host)
    host.websockets.add(session)
    try:
        await host.app(scope, session.receive, session.send)
    except ClientDisconnected:
        pass
    except Exception:
        log.exception("ASGI application failed on WebSocket %s", scope["path"])
        await session.finish(_INTERNAL_ERROR, failed=True)
        return
    finally:
        host.websockets.discard(session)
    await session.finish(1000)


class _Session:
    """One WebSocket: the ``receive`` and ``send`` callables handed to the application."""

    def __init__(
        self,
        stream: Stream,
        headers: list[tuple[bytes, bytes]],
        host: AsgiHost,
    ) -> None:
        self.stream = stream
        self.headers = headers
        self.max_size = host.ws_max_size
        self.ping_interval = host.ws_ping_interval
        self.ping_timeout = host.ws_ping_timeout
        self.deflate = host.ws_per_message_deflate
        self.keepalive: asyncio.Task[None] | None = None
        self.writing = asyncio.Lock()
        # Frames taken from the client (parsed or not), for the keepalive to see.
        self.heard = 0
        self.connect_sent = False
        self.tunnel: Tunnel | None = None
        self.ws: Any = None  # wsproto.connection.Connection once accepted
        self.answered = False  # accepted, or refused with an HTTP response
        self.close_sent = False
        self.close_code: int | None = None  # set once the WebSocket is closed
        self.parts: list[Any] = []
        self.size = 0
        self.events: deque[Any] = deque()
        self.inflating = False  # permessage-deflate was accepted
        # Bytes read and not yet given to wsproto (while inflating, see _INFLATE_SLICE).
        self.unparsed = memoryview(b"")

    # -- receive ---------------------------------------------------------------------
    async def receive(self) -> Message:
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        if self.tunnel is None:
            # Refused (or not yet answered): nothing more will come.
            await self.stream.wait_closed()
            return {"type": "websocket.disconnect", "code": self.close_code or _ABNORMAL}
        while self.close_code is None:
            message = await self._next_message()
            if message is not None:
                return message
        return {"type": "websocket.disconnect", "code": self.close_code}

    async def _next_message(self) -> Message | None:
        from wsproto.events import (
            BytesMessage,
            CloseConnection,
            Ping,
            TextMessage,
        )
        from wsproto.events import (
            Message as WsMessage,
        )

        ws, tunnel = self.ws, self.tunnel
        assert ws is not None and tunnel is not None
        while not self.events:
            data = self.unparsed
            if not data:
                try:
                    data = memoryview(await tunnel.read())
                except TransportError:
                    data = memoryview(b"")
                if not data:
                    if self.close_code is None:  # (the keepalive may have closed it first)
                        self.close_code = _ABNORMAL
                    return None
                self.heard += 1
            if self.inflating:
                # The next slice only once the events of this one are handled (and the
                # message's size checked): a client cannot make the server inflate more.
                data, self.unparsed = data[:_INFLATE_SLICE], data[_INFLATE_SLICE:]
            try:
                ws.receive_data(data)
            except Exception:  # wsproto's RemoteProtocolError: a broken frame
                self.close_code = 1002
                await self._close(1002, "protocol error")
                return None
            self.events.extend(ws.events())
        event = self.events.popleft()
        if isinstance(event, WsMessage):
            self.parts.append(event.data)
            self.size += len(event.data)
            if self.size > self.max_size:
                await self._close(_MESSAGE_TOO_BIG, "message too big")
                self.close_code = _MESSAGE_TOO_BIG
                return None
            if not event.message_finished:
                return None
            parts, self.parts, self.size = self.parts, [], 0
            if isinstance(event, TextMessage):
                return {"type": "websocket.receive", "text": "".join(parts)}
            assert isinstance(event, BytesMessage)
            return {"type": "websocket.receive", "bytes": b"".join(parts)}
        if isinstance(event, Ping):
            await self._write(ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if not self.close_sent:
                self.close_sent = True
                with contextlib.suppress(Exception):
                    await self._write(ws.send(event.response()))
            self.close_code = event.code
            tunnel.close()
            return {"type": "websocket.disconnect", "code": event.code, "reason": event.reason}
        return None

    # -- send --------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept" and not self.answered:
            self._accept(message)
        elif kind == "websocket.send" and self.ws is not None:
            if self.close_code is not None or self.close_sent:
                raise ClientDisconnected("the WebSocket is closed")
            from wsproto.events import BytesMessage, TextMessage

            data = message.get("bytes")
            event = (
                BytesMessage(data=data) if data is not None else TextMessage(data=message["text"])
            )
            await self._write(self.ws.send(event))
        elif kind == "websocket.close":
            if not self.answered:
                self._refuse(_FORBIDDEN)
            elif not self.close_sent:
                await self._close(int(message.get("code", 1000)), message.get("reason") or "")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in this state")

    def _accept(self, message: Message) -> None:
        from wsproto.connection import Connection, ConnectionType
        from wsproto.extensions import Extension, PerMessageDeflate
        from wsproto.utilities import generate_accept_token

        key = b""
        offers: list[str] = []
        for name, value in self.headers:
            if name == b"sec-websocket-key":
                key = value.strip()
            elif name == b"sec-websocket-extensions" and self.deflate:
                offers += [o.strip() for o in value.decode("latin-1").split(",")]
        # HTTP/2 (RFC 8441) has no key and no accept token: the 200 is the answer.
        headers = [] if not key else [(b"sec-websocket-accept", generate_accept_token(key))]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            headers.append((b"sec-websocket-protocol", subprotocol.encode()))
        extensions: list[Extension] = []
        for offer in offers:
            if offer.split(";")[0].strip() == "permessage-deflate":
                deflate = PerMessageDeflate()
                accepted = deflate.accept(offer)
                # accept() gives the parameters of the answer, without the name: "" for
                # a bare offer (RFC 7692 allows it), None or False to decline.
                if accepted is not None and accepted is not False:
                    reply = (
                        f"{deflate.name}; {accepted}"
                        if isinstance(accepted, str) and accepted
                        else deflate.name
                    )
                    headers.append((b"sec-websocket-extensions", reply.encode()))
                    extensions.append(deflate)
                    break
        for name, value in message.get("headers", ()):
            headers.append((bytes(name).lower(), bytes(value)))
        try:
            self.tunnel = self.stream.switch(headers)
        except TransportError as exc:
            raise ClientDisconnected(str(exc)) from None
        self.tunnel.on_shutdown = self._on_shutdown
        self.answered = True
        self.ws = Connection(ConnectionType.SERVER, extensions=extensions)
        self.inflating = bool(extensions)
        if self.ping_interval is not None:
            self.keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        """Ping every ``ping_interval`` seconds; close with 1011 when the client stays
        silent for ``ping_timeout`` seconds after a ping."""
        from wsproto.events import Ping

        ws, tunnel = self.ws, self.tunnel
        assert ws is not None and tunnel is not None and self.ping_interval is not None
        interval, timeout = self.ping_interval, self.ping_timeout
        sent = 0
        while True:
            await asyncio.sleep(interval)
            if self.close_code is not None or self.close_sent:
                return
            heard = self.heard
            if not self.writing.locked():
                # (A send in progress waits for the client to read: the ping would only
                # queue behind it, and the silence is judged all the same.)
                sent += 1
                try:
                    await self._write(ws.send(Ping(payload=b"%d" % sent)))
                except ClientDisconnected:
                    return
            if timeout is None:
                continue
            await asyncio.sleep(timeout)
            if self.close_code is not None or self.close_sent:
                return
            # Frames are parsed when the application reads; bytes that wait unread are
            # a sign of life the application has not looked at yet, so not judged.
            if self.heard == heard and not tunnel.pending:
                log.info("WebSocket client silent for %g s after a ping: failing it", timeout)
                await self._fail(_INTERNAL_ERROR, "keepalive ping timeout")
                return

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket (RFC 6455 7.1.7): send a close frame if the client lets it
        go within ``_CLOSE_TIMEOUT``, then drop the connection (HTTP/2: reset the stream)
        without waiting for the client's close frame. No close frame came back, so the
        application hears 1006 (RFC 6455 7.1.5), as under uvicorn."""
        assert self.tunnel is not None
        self.close_code = _ABNORMAL
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._close(code, reason)
        self.tunnel.abort()

    def _refuse(self, head: list[tuple[bytes, bytes]]) -> None:
        self.answered = True
        self.close_code = 1000
        with contextlib.suppress(TransportError):
            self.stream.send_headers(head, end_stream=True)

    async def _write(self, data: bytes) -> None:
        assert self.tunnel is not None
        try:
            # One write at a time: a write that waits for the client holds the others.
            async with self.writing:
                await self.tunnel.write(data)
        except TransportError as exc:
            self.close_code = self.close_code or _ABNORMAL
            raise ClientDisconnected(str(exc)) from None

    async def _close(self, code: int, reason: str) -> None:
        from wsproto.events import CloseConnection

        if self.close_sent or self.ws is None:
            return
        self.close_sent = True
        with contextlib.suppress(ClientDisconnected):
            await self._write(self.ws.send(CloseConnection(code=code, reason=reason)))

    def going_away(self) -> None:
        if self.tunnel is not None and not self.close_sent:
            self._on_shutdown()

    def _on_shutdown(self) -> None:
        task = asyncio.get_running_loop().create_task(self._close(_SERVICE_RESTART, "shutdown"))
        task.add_done_callback(lambda _: self.tunnel.close() if self.tunnel else None)

    # -- the end ----------------------------------------------------------------------
    async def finish(self, code: int, *, failed: bool = False) -> None:
        """After the application returned: answer if it never did, close the WebSocket
        (waiting briefly for the client's close frame), then the connection."""
        if self.keepalive is not None:
            self.keepalive.cancel()
        tunnel = self.tunnel
        if tunnel is None:
            if not self.answered:
                self._refuse(_SERVER_ERROR if failed else _FORBIDDEN)
            return
        if self.close_code is None:
            await self._close(code, "")
            with contextlib.suppress(TimeoutError, ClientDisconnected):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    while self.close_code is None:
                        await self._next_message()
        tunnel.close()

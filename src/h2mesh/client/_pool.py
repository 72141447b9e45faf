"""Connections to one endpoint: as few as possible, as many as the peer's limits need.

Calls share one HTTP/2 connection until it carries the peer's MAX_CONCURRENT_STREAMS;
then another is opened (up to ``max_connections``; past that, calls queue inside the
fullest-but-one connection's engine). Connections that received GOAWAY take no new
calls and are dropped once drained; idle extra connections are closed.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence

from .._errors import Code, RpcError, UnprocessedError
from ..transport import (
    ConnectionLost,
    ConnectionRefused,
    H2Connection,
    Stream,
    TransportConfig,
    create_connection,
)

__all__ = ["EndpointPool"]


class EndpointPool:
    """The HTTP/2 connections of a client to one ``host:port``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        config: TransportConfig,
        connect_timeout: float,
        max_connections: int = 8,
        idle_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._config = config
        self._connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connections: list[H2Connection] = []
        self._connecting: asyncio.Future[H2Connection] | None = None
        self._closed = False
        #: Connection attempts that failed in a row (0 once one succeeds).
        self.connect_failures = 0

    # -- predicates -----------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Streams open on all connections of this endpoint."""
        return sum(len(conn.streams) for conn in self.connections)

    @staticmethod
    def has_room(conn: H2Connection) -> bool:
        """True if ``conn`` takes a new stream now without queueing."""
        return conn.is_available() and len(conn.streams) < conn.peer_max_concurrent_streams

    # -- acquiring ------------------------------------------------------------------
    def connection_nowait(self) -> H2Connection | None:
        """A connection with room for one more stream, if one is open (no I/O)."""
        for conn in self.connections:
            if self.has_room(conn):
                return conn
        return None

    async def connection(self) -> H2Connection:
        """A connection for one more stream, opening one if every open one is full."""
        conn = self.connection_nowait()
        if conn is not None:
            return conn
        self._prune()
        usable = [c for c in self.connections if c.is_available()]
        if len(usable) >= self.max_connections:
            # At the cap: queue on the least loaded connection (its engine holds the
            # stream until the peer allows it).
            return min(usable, key=lambda c: len(c.streams))
        if self._closed:
            raise RpcError(Code.UNAVAILABLE, "channel is closed")
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        fut = self._connecting
        try:
            return await asyncio.shield(fut)
        finally:
            if fut.done() and self._connecting is fut:
                self._connecting = None

    async def _connect(self) -> H2Connection:
        """A new connection, once the server's SETTINGS came: no call is sent before it.

        A process that was just killed, or hangs, may still have its listening socket
        accept a connection (into the kernel's backlog) that nobody will ever answer;
        calls sent on it would be lost with it. Waiting for the server's half of the
        connection preface (as gRPC does before a subchannel is READY) makes that one
        more failed connection attempt, and the calls go elsewhere.
        """
        conn: H2Connection | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await create_connection(
                    lambda: H2Connection(client=True, config=self._config),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                )
                await conn.wait_peer_settings()
        except (OSError, TimeoutError, ConnectionLost) as exc:
            self.connect_failures += 1
            if conn is not None:
                conn.abort()
            what = "cannot connect to" if conn is None else "no HTTP/2 server answered at"
            reason = str(exc) or type(exc).__name__
            raise UnprocessedError(f"{what} {self.host}:{self.port}: {reason}") from None
        self.connect_failures = 0
        if self._ssl is not None:
            sslobj = conn.transport.get_extra_info("ssl_object") if conn.transport else None
            if sslobj is not None and sslobj.selected_alpn_protocol() != "h2":
                conn.abort()
                raise RpcError(
                    Code.UNAVAILABLE, f"{self.host}:{self.port} does not speak HTTP/2 (ALPN)"
                )
        if self._closed:
            conn.abort()
            raise RpcError(Code.UNAVAILABLE, "channel is closed")
        self.connections.append(conn)
        return conn

    def open_stream_nowait(
        self, headers: Sequence[tuple[bytes, bytes]], end: bool, body: bytes | None = None
    ) -> Stream | None:
        """Open a stream on a connection that has room now; None if none has (no I/O).
        ``body``: the whole request body, sent with the headers."""
        for conn in self.connections:
            # (open_stream checks is_available() itself, and refuses if not.)
            if len(conn.streams) < conn.peer_max_concurrent_streams:
                try:
                    return conn.open_stream(headers, end, body)
                except ConnectionRefused:
                    continue  # closing: another may take it, or ``open_stream`` finds one
        return None

    async def open_stream(
        self, headers: Sequence[tuple[bytes, bytes]], end: bool, body: bytes | None = None
    ) -> Stream:
        """Open a stream on a connection with room, connecting if every one is full."""
        conn = self.connection_nowait()
        if conn is None:
            conn = await self.connection()
        try:
            return conn.open_stream(headers, end, body)
        except ConnectionRefused:
            # The connection started closing between the check and the send: one retry
            # on another connection is safe because nothing reached the server.
            conn = await self.connection()
            return conn.open_stream(headers, end, body)

    # -- housekeeping ---------------------------------------------------------------
    def forget_connections(self) -> None:
        """Drop the connections of an event loop that has closed (they cannot be used or
        closed from another loop; their sockets are released with them)."""
        self.connections = []
        self._connecting = None

    def _prune(self) -> None:
        """Forget closed connections; close idle extras beyond the first."""
        now = time.monotonic()
        keep: list[H2Connection] = []
        for conn in self.connections:
            if conn.lost:
                continue
            if conn.closing:
                if not conn.streams:
                    conn.shutdown()
                    continue
            elif keep and not conn.streams and now - conn.last_activity > self.idle_timeout:
                conn.shutdown()
                continue
            keep.append(conn)
        self.connections = keep

    async def close(self, timeout: float = 5.0) -> None:
        """GOAWAY every connection; wait for in-flight calls up to ``timeout``."""
        self._closed = True
        conns, self.connections = self.connections, []
        for conn in conns:
            conn.shutdown()
        pending = [conn.closed for conn in conns if not conn.closed.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            if still:
                for conn in conns:
                    conn.abort()

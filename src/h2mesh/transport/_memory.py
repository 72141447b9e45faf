"""Connections inside one process: two protocols joined by in-memory transports.

``listen_memory(factory)`` gives a listener an address (``memory-N.invalid:80``; the
reserved ``.invalid`` name never resolves, so it cannot reach a network by mistake), and
``create_connection()`` — what clients call instead of ``loop.create_connection`` — joins a new
client protocol to a protocol of that listener's factory. Bytes a side writes are
delivered to the other's ``data_received`` on a later loop iteration, as a socket would,
so both ends run the same engines, flow control and backpressure as over TCP; only the
kernel is missing.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MemoryListener", "MemoryTransport", "create_connection", "listen_memory"]

ProtocolFactory = Callable[[], asyncio.Protocol]
P = TypeVar("P", bound=asyncio.Protocol)

# Bytes queued towards a peer that is not reading before the writer is paused.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024

_listeners: dict[tuple[str, int], MemoryListener] = {}
_ids = itertools.count(1)


class MemoryTransport(asyncio.Transport):
    """One end of an in-memory connection."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, extra: dict[str, Any]
    ) -> None:
        super().__init__(extra)
        self._loop = loop
        self._protocol = protocol
        self.peer: MemoryTransport | None = None
        self._inbox: deque[bytes] = deque()
        self._queued = 0  # bytes in the peer's inbox that this end wrote
        self._reading = True
        self._delivering = False
        self._writing_paused = False
        self._closing = False
        self._lost = False
        self._eof_pending = False

    # -- asyncio.BaseTransport -------------------------------------------------------
    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close after the bytes already written reach the peer (as a socket does)."""
        if self._closing:
            return
        self._closing = True
        peer = self.peer
        if peer is not None:
            peer._receive(None)
        self._loop.call_soon(self._connection_lost, None)

    def abort(self) -> None:
        if self._lost:
            return
        self._closing = True
        peer = self.peer
        if peer is not None:
            peer._inbox.clear()
            peer._receive(None)
        self._loop.call_soon(self._connection_lost, None)

    # -- asyncio.ReadTransport -------------------------------------------------------
    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._schedule_delivery()

    # -- asyncio.WriteTransport ------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        peer = self.peer
        if peer is None or peer._lost:
            return
        chunk = bytes(data)
        self._queued += len(chunk)
        peer._receive(chunk)
        if not self._writing_paused and self._queued > _HIGH_WATER:
            self._writing_paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        peer = self.peer
        if peer is not None and not self._closing:
            peer._eof_pending = True
            peer._schedule_delivery()

    def get_write_buffer_size(self) -> int:
        return self._queued

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return _LOW_WATER, _HIGH_WATER

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass  # fixed limits; nothing here depends on their exact values

    # -- delivery --------------------------------------------------------------------
    def _receive(self, chunk: bytes | None) -> None:
        """Bytes from the peer (None: the peer closed)."""
        if self._lost:
            return
        if chunk is None:
            self._eof_pending = True
            self._closing = True
        else:
            self._inbox.append(chunk)
        self._schedule_delivery()

    def _schedule_delivery(self) -> None:
        if not self._delivering:
            self._delivering = True
            self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._delivering = False
        while self._inbox and self._reading and not self._lost:
            chunk = self._inbox.popleft()
            peer = self.peer
            if peer is not None:
                peer._sent(len(chunk))
            self._protocol.data_received(chunk)
        if self._eof_pending and not self._inbox and not self._lost:
            self._connection_lost(None)

    def _sent(self, n: int) -> None:
        """``n`` bytes this end wrote were read by the peer."""
        self._queued -= n
        if self._writing_paused and self._queued <= _LOW_WATER and not self._lost:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._inbox.clear()
        self._protocol.connection_lost(exc)


class MemoryListener:
    """An address that in-process clients can connect to; each connection gets a new
    protocol from ``factory``. Closes like an ``asyncio.Server``."""

    sockets: tuple[Any, ...] = ()  # (none: it is not a socket)

    def __init__(self, factory: ProtocolFactory) -> None:
        self.factory = factory
        self.host = f"memory-{next(_ids)}.invalid"
        self.port = 80
        self.connections = 0
        _listeners[(self.host, self.port)] = self

    @property
    def address(self) -> str:
        """``host:port``, as an endpoint address or in an ``http://`` target."""
        return f"{self.host}:{self.port}"

    def is_serving(self) -> bool:
        return _listeners.get((self.host, self.port)) is self

    def close(self) -> None:
        """Refuse new connections (open ones go on until their protocols close them)."""
        if self.is_serving():
            del _listeners[(self.host, self.port)]

    async def wait_closed(self) -> None:
        return None

    def accept(self, loop: asyncio.AbstractEventLoop, client: asyncio.Protocol) -> MemoryTransport:
        """Join ``client`` to a new protocol of this listener; returns the client's end."""
        self.connections += 1
        peer = ("memory", self.connections)
        server = self.factory()
        client_end = MemoryTransport(
            loop, client, {"peername": (self.host, self.port), "sockname": peer}
        )
        server_end = MemoryTransport(
            loop, server, {"peername": peer, "sockname": (self.host, self.port)}
        )
        client_end.peer, server_end.peer = server_end, client_end
        server.connection_made(server_end)
        client.connection_made(client_end)
        return client_end


def listen_memory(factory: ProtocolFactory) -> MemoryListener:
    """A new in-memory listener whose connections start with a protocol of ``factory``."""
    return MemoryListener(factory)


async def create_connection(
    factory: Callable[[], P],
    host: str,
    port: int,
    *,
    ssl: ssl.SSLContext | None = None,
) -> tuple[asyncio.BaseTransport, P]:
    """``loop.create_connection`` for a client, which also reaches in-memory listeners."""
    loop = asyncio.get_running_loop()
    listener = _listeners.get((host, port))
    if listener is None:
        if host.endswith(".invalid") and host.startswith("memory-"):
            raise ConnectionRefusedError(f"no in-memory listener at {host}:{port}")
        return await loop.create_connection(factory, host, port, ssl=ssl)
    if ssl is not None:
        raise ConnectionRefusedError(f"{host}:{port} is in memory and speaks no TLS")
    await asyncio.sleep(0)  # (a real connect never completes within the call)
    client = factory()
    return listener.accept(loop, client), client

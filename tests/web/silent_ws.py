"""A WebSocket client that never answers pings: it completes the handshake (HTTP/1.1
Upgrade over a plain socket, framing by wsproto) or is handed an HTTP/2 stream, then only
reads, noting the pings and the close frame the server sends and when the server drops
the connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request

from h2mesh.transport import H2Stream, StreamReset


@dataclass
class Silence:
    """What a silent client saw, from the accepted handshake (``accepted``, monotonic
    seconds) to the end of the connection (``ended``)."""

    accepted: float
    pings: int = 0
    close_code: int | None = None
    close_reason: str = ""
    ended: float = 0.0
    how: str = ""  # "eof", "reset" (TCP RST), or "stream reset" (HTTP/2 RST_STREAM)
    error_code: int | None = None  # of the RST_STREAM
    log: list[str] = field(default_factory=list)

    @property
    def lasted(self) -> float:
        return self.ended - self.accepted

    def take(self, events: list[object]) -> None:
        for event in events:
            self.log.append(type(event).__name__)
            if isinstance(event, Ping):
                self.pings += 1  # and no pong: that is the point
            elif isinstance(event, CloseConnection):
                self.close_code, self.close_reason = event.code, event.reason


async def stay_silent_h1(host: str, port: int, path: str, deadline: float) -> Silence:
    """Upgrade to a WebSocket at ``path``, then read without answering until the server
    drops the connection; fails if that takes more than ``deadline`` seconds."""
    reader, writer = await asyncio.open_connection(host, port)
    ws = WSConnection(ConnectionType.CLIENT)
    writer.write(ws.send(Request(host=f"{host}:{port}", target=path)))
    try:
        silence: Silence | None = None
        while silence is None:
            data = await asyncio.wait_for(reader.read(65536), deadline)
            assert data, "the server closed before answering the handshake"
            ws.receive_data(data)
            for event in ws.events():
                if silence is None:
                    assert isinstance(event, AcceptConnection), event
                    silence = Silence(accepted=time.monotonic())
                else:  # (frames that came with the handshake's answer)
                    silence.take([event])
        return await _listen(silence, lambda: reader.read(65536), ws, deadline)
    finally:
        writer.close()


async def stay_silent_h2(stream: H2Stream, deadline: float) -> Silence:
    """The same over an accepted HTTP/2 extended CONNECT ``stream``: read its DATA
    without answering until the server ends or resets the stream."""
    silence = Silence(accepted=time.monotonic())
    return await _listen(silence, stream.read, Connection(ConnectionType.CLIENT), deadline)


async def _listen(
    silence: Silence,
    read: Callable[[], Awaitable[bytes]],
    ws: Connection | WSConnection,
    deadline: float,
) -> Silence:
    async with asyncio.timeout(deadline):
        while True:
            try:
                data = await read()
            except ConnectionResetError:
                silence.how = "reset"
                break
            except StreamReset as exc:
                silence.how, silence.error_code = "stream reset", exc.error_code
                break
            if not data:
                silence.how = "eof"
                break
            ws.receive_data(data)
            silence.take(list(ws.events()))
    silence.ended = time.monotonic()
    return silence

"""The listener that tells HTTP/2 from HTTP/1.1 on one cleartext port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from h2mesh import Server, TransportConfig

Run = Callable[[Coroutine[Any, Any, Any]], Any]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def test_silent_or_partial_preface_connections_are_dropped(run: Run) -> None:
    async def main() -> None:
        server = Server([], config=TransportConfig(handshake_timeout=0.3))
        await server.start()
        try:
            for opening in (b"", _PREFACE[:10]):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(opening)
                started = time.monotonic()
                assert await asyncio.wait_for(reader.read(), 3.0) == b""  # closed by server
                assert 0.2 < time.monotonic() - started < 2.0
                writer.close()
        finally:
            await server.stop(1.0)

    run(main())


def test_preface_split_across_packets_is_http2(run: Run) -> None:
    async def main() -> None:
        server = Server([], config=TransportConfig(handshake_timeout=5.0))
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            for i in range(0, len(_PREFACE), 5):
                writer.write(_PREFACE[i : i + 5])
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty SETTINGS
            frame = await asyncio.wait_for(reader.readexactly(9), 3.0)
            assert frame[3] == 0x4  # the server's SETTINGS frame: it speaks HTTP/2
            writer.close()
        finally:
            await server.stop(1.0)

    run(main())

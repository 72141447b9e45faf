"""A minimal HTTP/1.1 JSON client on asyncio streams and httptools, for etcd's gateway.

Only what the etcd JSON API needs: POST a JSON body, read a JSON reply, or read a
streamed reply as one JSON document per line. One request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httptools
import msgspec

__all__ = ["HttpError", "post_json", "stream_json"]

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class HttpError(Exception):
    """An HTTP exchange failed (connection, status or body)."""


class _Reply:
    """httptools callbacks collecting status and body chunks into a queue."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.status = 0
        self.headers_done = asyncio.Event()

    def on_headers_complete(self) -> None:
        self.headers_done.set()

    def on_body(self, body: bytes) -> None:
        self.chunks.put_nowait(bytes(body))

    def on_message_complete(self) -> None:
        self.chunks.put_nowait(None)


@contextlib.asynccontextmanager
async def _exchange(
    host: str, port: int, path: str, body: Any, timeout: float
) -> AsyncIterator[tuple[_Reply, asyncio.Task[None]]]:
    payload = _encode(body)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        raise HttpError(f"cannot connect to {host}:{port}: {exc}") from exc
    reply = _Reply()
    parser = httptools.HttpResponseParser(reply)

    async def pump() -> None:
        try:
            while data := await reader.read(65536):
                parser.feed_data(data)
        except httptools.HttpParserError as exc:
            reply.chunks.put_nowait(None)
            raise HttpError(f"bad HTTP reply: {exc}") from exc
        finally:
            reply.headers_done.set()
            reply.chunks.put_nowait(None)

    writer.write(
        b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n"
        % (path.encode(), host.encode(), port, len(payload))
        + payload
    )
    task = asyncio.get_running_loop().create_task(pump())
    try:
        try:
            async with asyncio.timeout(timeout):
                await reply.headers_done.wait()
        except TimeoutError as exc:
            raise HttpError(f"no reply from {host}:{port}{path} in {timeout}s") from exc
        reply.status = parser.get_status_code() if reply.headers_done.is_set() else 0
        yield reply, task
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def post_json(host: str, port: int, path: str, body: Any, timeout: float = 5.0) -> Any:
    """POST ``body`` as JSON and decode the JSON reply; raises ``HttpError`` on non-2xx."""
    async with _exchange(host, port, path, body, timeout) as (reply, _):
        parts: list[bytes] = []
        async with asyncio.timeout(timeout):
            while (chunk := await reply.chunks.get()) is not None:
                parts.append(chunk)
        data = b"".join(parts)
        if not 200 <= reply.status < 300:
            raise HttpError(f"{path}: HTTP {reply.status}: {data[:200]!r}")
        try:
            return _decode(data) if data else {}
        except msgspec.DecodeError as exc:
            raise HttpError(f"{path}: reply is not JSON: {data[:200]!r}") from exc


async def stream_json(
    host: str, port: int, path: str, body: Any, timeout: float = 5.0
) -> AsyncIterator[Any]:
    """POST ``body`` and yield each newline-delimited JSON document of a streamed reply."""
    async with _exchange(host, port, path, body, timeout) as (reply, _):
        if not 200 <= reply.status < 300:
            raise HttpError(f"{path}: HTTP {reply.status}")
        buf = b""
        while (chunk := await reply.chunks.get()) is not None:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    try:
                        yield _decode(line)
                    except msgspec.DecodeError as exc:
                        raise HttpError(f"{path}: bad stream line {line[:200]!r}") from exc
        if buf.strip():
            yield _decode(buf)

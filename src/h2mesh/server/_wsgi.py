"""Running a WSGI (PEP 3333) application in a bounded thread pool, as an ASGI callable.

The application runs in a worker thread and never on the event loop. ``wsgi.input``
streams the request body: a read that needs more data waits (in the thread) for the
next chunk from the loop. The response iterable is pulled in the thread; each chunk
is handed to the loop and the thread waits until the transport took it, so a client
that does not read stalls the thread, not memory. ``close()`` of the iterable is always
called. ``wsgi.errors`` writes to the ``h2mesh.wsgi`` logger.

A response that is complete in one piece (the common case: a list, or one chunk) costs
no hop back to the loop beyond the one that returns from the thread.

``wsgi.file_wrapper`` (what Flask's ``send_file`` and Django's ``FileResponse`` use) is
``FileWrapper``: when the application returns one, the file is read in the worker thread
in blocks of at least 256 KiB, each read overlapping the send of the block before, with
the same backpressure as any response body; a regular file's remaining size becomes the
``content-length`` when the application gave none. (A zero-copy ``sendfile`` would need the
socket to itself: it cannot carry HTTP/2 frames or TLS, and uvloop does not offer it.)
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._asgi_types import ClientDisconnected, Message, Receive, Scope, Send

__all__ = ["FileWrapper", "WsgiAdapter", "wsgi_environ"]

log = logging.getLogger("h2mesh.wsgi")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Bytes read from a wrapped file at a time (at least): fewer, larger hops to the loop.
_FILE_BLOCK = 256 * 1024


class FileWrapper:
    """``wsgi.file_wrapper`` (PEP 3333): a file-like object as a response iterable.

    Iterating reads ``block_size`` bytes at a time; ``close()`` closes the file. Returned
    to the server as it is, the file is sent in larger blocks (see the module docstring).
    """

    __slots__ = ("block_size", "filelike")

    def __init__(self, filelike: Any, block_size: int = 8192) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        read, size = self.filelike.read, self.block_size
        while chunk := read(size):
            yield chunk

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def wsgi_environ(scope: Scope, body: Any, errors: Any) -> dict[str, Any]:
    """The PEP 3333 environ of an ASGI ``http`` scope (strings are "bytes as latin-1")."""
    root = scope.get("root_path", "").encode("utf-8").decode("latin-1")
    path = scope["path"].encode("utf-8").decode("latin-1")
    if root and path.startswith(root):
        path = path[len(root) :]
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root,
        "PATH_INFO": path,
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/" + scope["http_version"],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope["scheme"],
        "wsgi.input": body,
        # The input ends where the body ends (chunked bodies too): read() to EOF is safe.
        "wsgi.input_terminated": True,
        "wsgi.errors": errors,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
    }
    client = scope.get("client")
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    for name, value in scope["headers"]:
        if name == b"content-type":
            key = "CONTENT_TYPE"
        elif name == b"content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        old = environ.get(key)
        environ[key] = text if old is None else old + "," + text
    return environ


class _Errors(io.TextIOBase):
    """``wsgi.errors``: each line written goes to the ``h2mesh.wsgi`` logger."""

    def __init__(self) -> None:
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            log.error("%s", line)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            log.error("%s", self._partial)
            self._partial = ""


async def _next(receive: Receive) -> Message:
    return await receive()


class _Input(io.RawIOBase):
    """``wsgi.input``: the request body, read in the worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Receive, first: Message) -> None:
        self._loop = loop
        self._receive = receive
        self._buffer = bytearray(first.get("body", b""))
        self._more = bool(first.get("more_body", False))
        if first["type"] == "http.disconnect":
            self._more = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Wait for the next chunk; False at the end of the body."""
        if not self._more:
            return False
        message = asyncio.run_coroutine_threadsafe(_next(self._receive), self._loop).result()
        if message["type"] == "http.disconnect":
            self._more = False
            raise ClientDisconnected("the client went away during the request body")
        self._buffer += message.get("body", b"")
        self._more = bool(message.get("more_body", False))
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            size = len(self._buffer)
        else:
            while len(self._buffer) < size and self._fill():
                pass
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or not self._fill():
                break
        end = len(self._buffer) if end < 0 else end + 1
        if size is not None and 0 <= size < end:
            end = size
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        return data

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class _Response:
    """``start_response`` and the response iterable of one call, on the worker thread."""

    __slots__ = ("headers", "loop", "send", "sent", "status")

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Send) -> None:
        self.loop = loop
        self.send = send
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.sent = False  # the head has gone to the loop

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            if self.sent:
                raise exc_info[1].with_traceback(exc_info[2])
        elif self.status:
            raise RuntimeError("start_response() called twice without exc_info")
        self.status = int(status.split(" ", 1)[0])
        self.headers = [
            # Surrounding whitespace is not part of a value (Django's set-cookie has some).
            (name.lower().encode("latin-1"), value.strip().encode("latin-1"))
            for name, value in headers
        ]
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: sends ``data`` now."""
        if data:
            self._hop(data, True)

    def _hop(self, body: bytes, more: bool) -> None:
        asyncio.run_coroutine_threadsafe(self._send(body, more), self.loop).result()

    async def _send(self, body: bytes, more: bool) -> None:
        if not self.sent:
            if not self.status:
                raise RuntimeError("the WSGI application sent a body before start_response()")
            self.sent = True
            await self.send(
                {"type": "http.response.start", "status": self.status, "headers": self.headers}
            )
        await self.send({"type": "http.response.body", "body": body, "more_body": more})

    def run(self, app: WSGIApp, environ: dict[str, Any]) -> bytes | None:
        """Call the application and stream its response; returns the body if it came in
        one piece and nothing was sent yet (the loop sends it), else None."""
        iterable = app(environ, self.start_response)
        try:
            if iterable.__class__ is FileWrapper:
                return self._send_file(iterable)
            if iterable.__class__ not in (list, tuple):
                length = self._declared_length()
                if length is not None:
                    return self._sized(iterable, length)
                self._stream(iterable)
                return None
            # A list: its parts are all there, so one is held back to end the body with
            # it, and a body of one part goes out with the head.
            pending: bytes | None = None
            for chunk in iterable:
                if not chunk:
                    continue
                if pending is not None:
                    self._hop(pending, True)
                pending = bytes(chunk)
            if not self.sent:
                return b"" if pending is None else pending
            self._hop(b"" if pending is None else pending, False)
            return None
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()

    def _declared_length(self) -> int | None:
        for name, value in self.headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else None
        return None

    def _sized(self, iterable: Iterable[bytes], length: int) -> bytes | None:
        """A body of declared length (Flask's, Django's): each part sent as it comes, the
        one that completes the length ending the body; a body of one part goes out with
        the head (returned, as ``run`` says)."""
        left = length
        for chunk in iterable:
            if not chunk:
                continue
            left -= len(chunk)
            if left <= 0:
                # What an app yields past its declared length is not sent (over HTTP/1.1
                # it would be read as the start of the next response).
                chunk = bytes(chunk[: len(chunk) + left] if left else chunk)
                if not self.sent:
                    return chunk
                self._hop(chunk, False)
                return None
            self._hop(bytes(chunk), True)
        if not self.sent:
            return b""
        self._hop(b"", False)
        return None

    def _stream(self, iterable: Iterable[bytes]) -> None:
        """A generator's parts, each sent as it comes: the next may be a while coming (a
        stream of events), so none is held back; an empty end closes the body."""
        for chunk in iterable:
            if chunk:
                self._hop(bytes(chunk), True)
        self._hop(b"", False)

    def _send_file(self, wrapper: FileWrapper) -> bytes | None:
        """Send a wrapped file's bytes, reading each block while the one before is sent."""
        filelike = wrapper.filelike
        read = filelike.read
        size = max(wrapper.block_size, _FILE_BLOCK)
        if not self.sent and all(name != b"content-length" for name, _ in self.headers):
            length = _remaining(filelike)
            if length is not None:  # (HTTP/1.1 then frames it by length, not in chunks)
                self.headers.append((b"content-length", b"%d" % length))
        block = bytes(read(size))
        following = bytes(read(size)) if block else b""
        if not following and not self.sent:
            return block  # the whole file in one block: the loop sends it with the head
        loop = self.loop
        while block:
            sending = asyncio.run_coroutine_threadsafe(self._send(block, bool(following)), loop)
            # Read ahead while the block is sent; wait for it before sending the next, so
            # the client's pace holds the thread (and memory stays at a few blocks).
            block, following = following, bytes(read(size)) if following else b""
            sending.result()
            if not block:
                return None
        self._hop(b"", False)  # an empty file after write(): end the body
        return None


def _remaining(filelike: Any) -> int | None:
    """The bytes left to read in a regular file (None for other file-likes)."""
    try:
        status = os.fstat(filelike.fileno())
        if not stat.S_ISREG(status.st_mode):
            return None
        return max(status.st_size - int(filelike.tell()), 0)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


class WsgiAdapter:
    """An ASGI application that runs the WSGI application ``app`` in ``threads`` threads."""

    def __init__(self, app: WSGIApp, *, threads: int = 40) -> None:
        if threads < 1:
            raise ValueError("a WSGI application needs at least one thread")
        self.app = app
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None  # started with the first request
        self._errors = _Errors()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError(f"a WSGI application cannot serve {scope['type']!r}")
        loop = asyncio.get_running_loop()
        # The first body chunk is awaited here, on the loop: a request without a body (or
        # with a small one) then never makes the thread wait for the loop.
        first = await receive()
        environ = wsgi_environ(scope, _Input(loop, receive, first), self._errors)
        response = _Response(loop, send)
        executor = self._executor
        if executor is None:
            executor = self._executor = ThreadPoolExecutor(
                max_workers=self.threads, thread_name_prefix="h2mesh-wsgi"
            )
        body = await loop.run_in_executor(executor, response.run, self.app, environ)
        if body is not None:
            await response._send(body, False)

    def close(self) -> None:
        """Let the worker threads end once the calls in them return."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

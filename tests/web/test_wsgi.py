"""WSGI hosting over real sockets: the bounded thread pool, ``wsgi.input`` streaming
without blocking the loop, backpressure on the response iterable, ``close()`` always
called, ``wsgi.errors`` going to logging, and ``wsgi.file_wrapper`` under Flask's
``send_file``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from h2mesh import Server
from h2mesh.server._wsgi import FileWrapper
from tests.web.apps import SECRET, Opened, TrackedFile

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class Recorder:
    """A WSGI application whose behaviour depends on the path, recording what it saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.closed: list[str] = []
        self.closing = threading.Condition()
        self.yielded = 0
        self.body_started = threading.Event()
        self.endless_closed = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if path == "/slow":
                threading.Event().wait(0.05)  # some work, in the thread
            if path == "/errors":
                environ["wsgi.errors"].write("first line\nsecond line\n")
            if path == "/echo":
                self.body_started.set()
                body = environ["wsgi.input"].read()
                head = [("content-type", "application/octet-stream")]
                start_response("200 OK", [*head, ("content-length", str(len(body)))])
                return _Closing([body], self, path)
            if path == "/endless":
                start_response("200 OK", [("content-type", "text/plain")])
                return _Closing(self._endless(), self, path)
            start_response("200 OK", [("content-type", "text/plain"), ("x-path", path)])
            return _Closing([b"ok ", path.encode()], self, path)
        finally:
            with self.lock:
                self.running -= 1

    def wait_closed(self, path: str, count: int, timeout: float = 5.0) -> bool:
        """Wait until ``close()`` ran ``count`` times for ``path``: the server calls it after
        the last byte is handed on, so it may run just after the client has the response."""
        with self.closing:
            return self.closing.wait_for(lambda: self.closed.count(path) >= count, timeout)

    def _endless(self) -> Iterator[bytes]:
        block = b"e" * 65536
        for _ in range(4096):  # 256 MiB if nothing held it back
            self.yielded += 1
            yield block


class _Closing:
    def __init__(self, parts: Any, recorder: Recorder, path: str) -> None:
        self._parts = parts
        self._recorder = recorder
        self._path = path

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._parts)

    def close(self) -> None:
        with self._recorder.closing:
            self._recorder.closed.append(self._path)
            self._recorder.closing.notify_all()
        if self._path == "/endless":
            self._recorder.endless_closed.set()


async def _serve(app: Any, **options: Any) -> Server:
    server = Server([], app=app, **options)
    await server.start("127.0.0.1", 0)
    return server


def test_the_thread_pool_is_bounded(run: Run) -> None:
    app = Recorder()

    async def main() -> None:
        server = await _serve(app, wsgi_threads=3)
        try:
            async with httpx.AsyncClient(http2=True, http1=False) as client:
                url = f"http://127.0.0.1:{server.port}/slow"
                replies = await asyncio.gather(*(client.get(url) for _ in range(12)))
            assert {r.text for r in replies} == {"ok /slow"}
            assert app.most <= 3
            assert await asyncio.to_thread(app.wait_closed, "/slow", 12)
            assert app.closed.count("/slow") == 12
        finally:
            await server.stop(1.0)

    run(main())


def test_a_thread_waiting_for_the_body_does_not_block_the_loop(run: Run) -> None:
    app = Recorder()

    async def main() -> None:
        server = await _serve(app)
        url = f"http://127.0.0.1:{server.port}"
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nhello")
            await writer.drain()
            await asyncio.to_thread(app.body_started.wait, 5.0)
            # The echo thread is blocked in wsgi.input.read(); the loop still serves.
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"{url}/other")).text == "ok /other"
            writer.write(b"world")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert b"content-length: 10" in head
            assert await reader.readexactly(10) == b"helloworld"
            writer.close()
        finally:
            await server.stop(1.0)

    run(main())


def test_an_unread_response_holds_the_iterable_and_close_is_called(run: Run) -> None:
    app = Recorder()

    async def main() -> None:
        server = await _serve(app)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /endless HTTP/1.1\r\nhost: x\r\n\r\n")
            await writer.drain()
            loop = asyncio.get_running_loop()
            last, since = -1, loop.time()
            while loop.time() - since < 0.3:  # until the iterable stops advancing
                if app.yielded != last:
                    last, since = app.yielded, loop.time()
                await asyncio.sleep(0.02)
            assert app.yielded < 256  # 16 MiB: socket buffers, not 256 MiB in memory
            writer.transport.abort()
            assert await asyncio.to_thread(app.endless_closed.wait, 5.0)
        finally:
            await server.stop(1.0)

    run(main())


def hashing_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers with the sha256 and size of ``wsgi.input`` read to its end, and how the
    body was framed."""
    sha, size = hashlib.sha256(), 0
    body = environ["wsgi.input"]
    while block := body.read(65536):
        sha.update(block)
        size += len(block)
    shown = {
        "sha256": sha.hexdigest(),
        "size": size,
        "transfer-encoding": environ.get("HTTP_TRANSFER_ENCODING"),
        "content-length": environ.get("CONTENT_LENGTH"),
    }
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(shown).encode()]


def test_a_chunked_http1_upload_reaches_wsgi_input_whole(
    run: Run, curl: str, big_file: tuple[Path, str]
) -> None:
    from tests.web.test_asgi import chunked_upload_reaches

    path, digest = big_file
    run(chunked_upload_reaches(hashing_app, curl, path, path.read_bytes(), digest))


class _FailingBody:
    """A response iterable that yields three chunks, then raises; counts its closes."""

    def __init__(self, closes: list[int], closed: threading.Event) -> None:
        self._closes = closes
        self._closed = closed

    def __iter__(self) -> Iterator[bytes]:
        for i in range(3):
            yield b"part %d;" % i
        raise ValueError(SECRET)

    def close(self) -> None:
        self._closes.append(1)
        self._closed.set()


@pytest.mark.parametrize("h2", [True, False], ids=["h2", "h1"])
def test_an_iterable_that_raises_mid_body_fails_the_response_and_is_closed(
    run: Run, caplog: pytest.LogCaptureFixture, h2: bool
) -> None:
    closes: list[int] = []
    closed = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/ok":
            start_response("200 OK", [("content-type", "text/plain")])
            return [b"fine"]
        start_response("200 OK", [("content-type", "text/plain")])
        return _FailingBody(closes, closed)

    async def main() -> None:
        server = await _serve(app)
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with httpx.AsyncClient(base_url=base, http2=h2, http1=not h2) as client:
                got = b""
                # The head and the first parts went out; then the HTTP/2 stream is reset,
                # or the HTTP/1.1 connection closed before the chunked body's end.
                with pytest.raises(httpx.RemoteProtocolError):
                    async with client.stream("GET", "/fail") as reply:
                        assert reply.status_code == 200
                        async for part in reply.aiter_raw():
                            got += part
                # Every part made before the failure (none is held back), and nothing
                # after it. (Over HTTP/2 the reset may overtake data still queued.)
                if h2:
                    assert b"part 0;part 1;part 2;".startswith(got)
                else:
                    assert got == b"part 0;part 1;part 2;"
                assert SECRET.encode() not in got and b"Traceback" not in got
                assert await asyncio.to_thread(closed.wait, 5.0)
                # The server goes on serving (over HTTP/2, on the same connection).
                ok = await client.get("/ok")
                assert (ok.status_code, ok.text) == (200, "fine")
            assert closes == [1]
        finally:
            await server.stop(1.0)

    with caplog.at_level(logging.ERROR):
        run(main())
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[1] is not None]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]
    assert failures[0].getMessage() == "WSGI application failed on GET /fail"
    assert isinstance(failures[0].exc_info[1], ValueError)  # type: ignore[index]
    assert str(failures[0].exc_info[1]) == SECRET  # type: ignore[index]


@pytest.mark.parametrize("sized", [False, True], ids=["unsized", "content-length"])
@pytest.mark.parametrize("h2", [True, False], ids=["h2", "h1"])
def test_a_streamed_flask_response_sends_each_part_as_it_is_made(
    run: Run, h2: bool, sized: bool
) -> None:
    # A stream of events (Flask's Response over a generator, with or without a declared
    # Content-Length): each part reaches the client before the generator makes the next,
    # here only once the client has the one before. A server holding a part back until
    # the next one came would leave the generator waiting for the client, which waits
    # for the part. (With a length, the part that completes it ends the body.)
    import flask

    app = flask.Flask("events")
    got_part = [threading.Event() for _ in range(3)]

    @app.get("/events")
    def events() -> flask.Response:
        def generate() -> Iterator[str]:
            for i in range(3):
                yield f"data: {i}\n\n"
                if not got_part[i].wait(10.0):
                    yield "data: the client never saw the part\n\n"
                    return

        headers = {"content-length": str(3 * len("data: 0\n\n"))} if sized else {}
        return flask.Response(generate(), mimetype="text/event-stream", headers=headers)

    async def main() -> None:
        server = await _serve(app)
        try:
            async with httpx.AsyncClient(http2=h2, http1=not h2) as client:
                url = f"http://127.0.0.1:{server.port}/events"
                async with client.stream("GET", url) as reply:
                    assert reply.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
                    assert reply.headers.get("content-length") == ("27" if sized else None)
                    parts = reply.aiter_text()
                    for i in range(3):
                        part = await asyncio.wait_for(anext(parts), 5.0)
                        assert part == f"data: {i}\n\n"
                        got_part[i].set()
                    assert [p async for p in parts] == []
        finally:
            await server.stop(1.0)

    run(main())


@pytest.mark.parametrize(
    "parts", [[b"hello world"], [b"hel", b"lo wo", b"rld"]], ids=["one", "three"]
)
def test_bytes_past_the_declared_length_are_not_sent(run: Run, parts: list[bytes]) -> None:
    # An app that declares 5 bytes and yields 11: the client gets the 5, and the next
    # response on the same HTTP/1.1 connection is read as the next response.
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("content-type", "text/plain"), ("content-length", "5")])
        return iter(parts)

    async def main() -> None:
        server = await _serve(app)
        try:
            async with httpx.AsyncClient(http1=True, http2=False) as client:
                url = f"http://127.0.0.1:{server.port}/"
                for _ in range(2):
                    reply = await client.get(url)
                    assert (reply.status_code, reply.content) == (200, b"hello")
        finally:
            await server.stop(1.0)

    run(main())


def test_wsgi_errors_go_to_logging(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        server = await _serve(Recorder())
        try:
            async with httpx.AsyncClient() as client:
                await client.get(f"http://127.0.0.1:{server.port}/errors")
        finally:
            await server.stop(1.0)

    with caplog.at_level(logging.ERROR, logger="h2mesh.wsgi"):
        run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "h2mesh.wsgi"]
    assert lines == ["first line", "second line"]


def _file_app(path: Path, opened: Opened) -> Any:
    from flask import Flask, request, send_file

    app = Flask(__name__)

    @app.get("/file")
    def download() -> Any:
        # send_file wraps the file with the server's wsgi.file_wrapper.
        assert request.environ["wsgi.file_wrapper"] is FileWrapper
        handle = TrackedFile(path)
        opened.append(handle)
        return send_file(handle, mimetype="application/octet-stream")

    return app


@pytest.mark.parametrize("h2", [True, False], ids=["h2", "h1"])
def test_flask_send_file_goes_through_the_file_wrapper(
    run: Run, big_file: tuple[Path, str], h2: bool
) -> None:
    path, digest = big_file
    opened = Opened()

    async def main() -> None:
        server = await _serve(_file_app(path, opened))
        try:
            async with httpx.AsyncClient(http2=h2, http1=not h2, timeout=30) as client:
                sha = hashlib.sha256()
                url = f"http://127.0.0.1:{server.port}/file"
                async with client.stream("GET", url) as reply:
                    assert reply.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
                    assert reply.headers["content-length"] == str(path.stat().st_size)
                    async for part in reply.aiter_raw():
                        sha.update(part)
            assert sha.hexdigest() == digest
            assert await asyncio.to_thread(opened[0].closed_event.wait, 5.0)
        finally:
            await server.stop(1.0)

    run(main())


def test_a_file_download_waits_for_the_client_and_closes_the_file_when_it_leaves(
    run: Run, tmp_path: Path
) -> None:
    path = tmp_path / "huge.bin"
    path.write_bytes(os.urandom(32 * 1024 * 1024))
    opened = Opened()

    async def main() -> None:
        server = await _serve(_file_app(path, opened))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.transport.set_write_buffer_limits(0)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            writer.write(b"GET /file HTTP/1.1\r\nhost: x\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")
            writer.transport.pause_reading()
            loop = asyncio.get_running_loop()
            assert await asyncio.to_thread(opened.first.wait, 10.0)
            handle = opened[0]
            last, since = -1, loop.time()
            while loop.time() - since < 0.5:  # until the reads stop advancing
                if handle.read_bytes != last:
                    last, since = handle.read_bytes, loop.time()
                await asyncio.sleep(0.02)
            # Held back by the client: socket buffers and a few blocks, not the 32 MiB.
            assert handle.read_bytes < 16 * 1024 * 1024
            writer.transport.abort()
            assert await asyncio.to_thread(handle.closed_event.wait, 5.0)
        finally:
            await server.stop(1.0)

    run(main())

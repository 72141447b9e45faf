"""HTTP/1.1 server connection over real sockets: raw clients and curl, on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

try:
    from h2mesh.transport._h1 import H1Connection, H1Stream
except ImportError:  # the package is importable straight from the source tree too
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from h2mesh.transport._h1 import H1Connection, H1Stream

from h2mesh.transport._config import TransportConfig
from h2mesh.transport._errors import ConnectionLost
from tests.conftest import wait_until

uvloop: Any
try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is not built for every platform
    uvloop = None

CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")
# A missing peer fails the test (through the conftest fixture); it never skips.
needs_curl = pytest.mark.usefixtures("curl")
App = Callable[[H1Stream], Awaitable[None]]


# Each run() of a test is bounded (the conftest's ``run`` reads this).
RUN_TIME_LIMIT = 20.0


# -- server side ------------------------------------------------------------------


class CountingConnection(H1Connection):
    """An H1Connection that counts its writes (``writes``) and those that reach the
    socket (``socket_writes``)."""

    writes = 0
    socket_writes = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(_CountingTransport(transport, self))

    def _write(self, data: bytes) -> None:
        self.writes += 1
        super()._write(data)


class _CountingTransport:
    def __init__(self, transport: Any, conn: CountingConnection) -> None:
        self._transport = transport
        self._conn = conn

    def write(self, data: bytes) -> None:
        self._conn.socket_writes += 1
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Server:
    """An asyncio server of H1Connections on 127.0.0.1, serving each request with ``app``."""

    def __init__(
        self,
        app: App,
        config: TransportConfig | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.tls = tls
        self.connections: list[CountingConnection] = []
        self.streams: list[H1Stream] = []
        self.port = 0

    def _on_stream(self, stream: H1Stream) -> None:
        self.streams.append(stream)
        stream.task = asyncio.get_running_loop().create_task(self.app(stream))

    def _make(self) -> CountingConnection:
        conn = CountingConnection(
            config=self.config,
            on_stream=self._on_stream,
            scheme=b"https" if self.tls else b"http",
        )
        self.connections.append(conn)
        return conn

    async def __aenter__(self) -> Server:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._make, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for conn in self.connections:
            conn.abort()
        for conn in self.connections:
            await asyncio.wait_for(conn.wait_closed(), 5)
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


async def echo(stream: H1Stream) -> None:
    body = await stream.read_all(1 << 26)
    stream.send_headers([(b":status", b"200"), (b"content-type", b"application/octet-stream")])
    await stream.send_data(body, end_stream=True)


async def streamer(stream: H1Stream) -> None:
    """Answers with three chunks and a trailer."""
    await stream.read_all(1 << 20)
    stream.send_headers([(b":status", b"200"), (b"content-type", b"text/plain")])
    for part in (b"one,", b"two,", b"three"):
        await stream.send_data(part)
    stream.send_trailers([(b"grpc-status", b"0"), (b"grpc-message", b"ok")])


# -- client side ------------------------------------------------------------------


@dataclass
class Response:
    status: int
    reason: bytes
    headers: dict[bytes, bytes]
    body: bytes = b""
    trailers: dict[bytes, bytes] = field(default_factory=dict)
    head: bytes = b""


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> Response:
    """Reads one response, decoding its framing independently of the server's parser."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw[:-4].split(b"\r\n")
    version, status, reason = lines[0].split(b" ", 2)
    assert version == b"HTTP/1.1"
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, value = line.split(b":", 1)
        assert name.lower() not in headers, f"duplicate {name!r}"
        headers[name.lower()] = value.strip()
    resp = Response(int(status), reason, headers, head=raw)
    if head or resp.status in (100, 204, 304):
        return resp
    if b"content-length" in headers:
        assert b"transfer-encoding" not in headers
        resp.body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            if size == 0:
                break
            parts.append(await reader.readexactly(size))
            assert await reader.readexactly(2) == b"\r\n"
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, value = line[:-2].split(b":", 1)
            resp.trailers[name.lower()] = value.strip()
        resp.body = b"".join(parts)
    else:
        resp.body = await reader.read()
    return resp


async def connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port, limit=1 << 20)


async def at_eof(reader: asyncio.StreamReader, timeout: float = 5) -> bool:
    """True if the server closes the connection (nothing more arrives) within ``timeout``."""
    try:
        rest = await asyncio.wait_for(reader.read(), timeout)
    except (ConnectionResetError, TimeoutError):
        return False
    return rest == b""


async def curl(*args: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    assert CURL is not None
    proc = await asyncio.create_subprocess_exec(
        CURL,
        "-sS",
        "--max-time",
        "10",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out, err


def split_curl_output(out: bytes) -> tuple[bytes, bytes]:
    """Splits ``curl -i`` output into the final response head and the body."""
    while True:
        head, _, body = out.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 1"):
            return head, body
        out = body


def request(
    method: str = "POST", path: str = "/svc/Method", body: bytes = b"", extra: str = ""
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}"
    if method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


# -- unary requests and request shape ---------------------------------------------


def test_unary_request_headers_and_single_write(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            writer.write(
                b"POST /svc/Method?x=1 HTTP/1.1\r\nHost: example.com:80\r\n"
                b"Content-Type: application/proto\r\nX-Custom: V\r\nContent-Length: 5\r\n\r\nhello"
            )
            resp = await read_response(reader)
            assert resp.head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert resp.headers[b"content-length"] == b"5"
            assert b"transfer-encoding" not in resp.headers
            assert b":status" not in resp.head
            assert resp.body == b"hello"
            stream = server.streams[0]
            assert stream.headers == [
                (b":method", b"POST"),
                (b":path", b"/svc/Method?x=1"),
                (b":scheme", b"http"),
                (b":authority", b"example.com:80"),
                (b"content-type", b"application/proto"),
                (b"x-custom", b"V"),
                (b"content-length", b"5"),
            ]
            assert stream.http_version == "1.1" and not stream.supports_trailers
            assert stream.peer == writer.get_extra_info("sockname")
            assert stream.at_eof
            # The unary hot path: status line, headers and body in one write.
            assert server.connections[0].writes == 1
            writer.close()

    run(main())


def test_whole_response_in_one_write_and_declined_while_writing_is_paused(run: Any) -> None:
    answers: list[bool] = []

    async def whole(stream: H1Stream) -> None:
        body = await stream.read_all(1 << 20)
        head = [(b":status", b"200"), (b"content-type", b"text/plain")]
        taken = stream.try_respond(head, body)
        answers.append(taken)
        if not taken:
            stream.send_headers(head)
            await stream.send_data(body, end_stream=True)

    async def main() -> None:
        async with Server(whole) as server:
            reader, writer = await connect(server)
            writer.write(request(body=b"first"))
            resp = await read_response(reader)
            assert (resp.head.split(b"\r\n")[0], resp.body) == (b"HTTP/1.1 200 OK", b"first")
            assert resp.headers[b"content-length"] == b"5"
            conn = server.connections[0]
            assert answers == [True] and conn.writes == 1
            # While the socket buffer is full, it sends nothing and says so.
            conn.pause_writing()
            writer.write(request(body=b"second"))
            await wait_until(lambda: len(answers) == 2)
            assert answers[1] is False
            conn.resume_writing()
            resp = await read_response(reader)
            assert resp.body == b"second" and resp.headers[b"content-length"] == b"6"
            writer.close()

    run(main())


@needs_curl
def test_curl_unary_and_keep_alive(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            code, out, err = await curl(
                "--http1.1", "-i", "--data-binary", "payload", server.url + "/svc/Echo"
            )
            assert code == 0, err
            head, body = split_curl_output(out)
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert b"content-length: 7" in head.lower()
            assert body == b"payload"
            # Three URLs in one curl run reuse one connection.
            urls = [f"{server.url}/n/{i}" for i in range(3)]
            code, out, err = await curl("--http1.1", "--data-binary", "x", *urls)
            assert code == 0, err
            assert out == b"xxx"
            assert len(server.connections) == 2
            assert [s.headers[1][1] for s in server.streams[1:]] == [b"/n/0", b"/n/1", b"/n/2"]

    run(main())


def test_head_request_has_no_body(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            writer.write(request("HEAD", "/x") + request("POST", "/y", b"abc"))
            resp = await read_response(reader, head=True)
            assert resp.status == 200 and resp.headers[b"content-length"] == b"0"
            resp = await read_response(reader)
            assert resp.body == b"abc"
            writer.close()

    run(main())


def test_absolute_form_target(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            writer.write(b"GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n")
            assert (await read_response(reader)).status == 200
            assert server.streams[0].headers[:4] == [
                (b":method", b"GET"),
                (b":path", b"/p?q=1"),
                (b":scheme", b"http"),
                (b":authority", b"example.com:8080"),
            ]
            writer.close()

    run(main())


def test_status_reason_phrases_and_app_framing_headers(run: Any) -> None:
    async def app(stream: H1Stream) -> None:
        status = stream.headers[1][1][1:] if stream.headers else b"500"
        # Framing is the transport's job: an application's content-length is dropped.
        stream.send_headers([(b":status", status), (b"content-length", b"999")])
        await stream.send_data(b"body", end_stream=True)

    async def main() -> None:
        async with Server(app) as server:
            reader, writer = await connect(server)
            for status, line in [
                (499, b"HTTP/1.1 499 Client Closed Request\r\n"),
                (404, b"HTTP/1.1 404 Not Found\r\n"),
                (599, b"HTTP/1.1 599 Unknown\r\n"),
            ]:
                writer.write(request("GET", f"/{status}"))
                resp = await read_response(reader)
                assert resp.head.startswith(line)
                assert resp.headers[b"content-length"] == b"4"
                assert resp.body == b"body"
            writer.close()

    run(main())


def test_header_values_with_line_breaks_are_refused(run: Any) -> None:
    errors: list[BaseException] = []

    async def app(stream: H1Stream) -> None:
        try:
            stream.send_headers([(b":status", b"200"), (b"x-evil", b"a\r\nset-cookie: x")])
        except ValueError as exc:
            errors.append(exc)
        stream.send_headers([(b":status", b"500")], end_stream=True)

    async def main() -> None:
        async with Server(app) as server:
            reader, writer = await connect(server)
            writer.write(request("GET"))
            resp = await read_response(reader)
            assert resp.status == 500 and b"set-cookie" not in resp.head
            assert len(errors) == 1
            writer.close()

    run(main())


# -- streaming, chunked bodies and trailers -----------------------------------------


def test_streamed_response_is_chunked_with_trailers(run: Any) -> None:
    async def main() -> None:
        async with Server(streamer) as server:
            reader, writer = await connect(server)
            writer.write(request("POST", "/s", b"q") + request("POST", "/s", b"q"))
            for _ in range(2):  # the connection stays usable after a chunked response
                resp = await read_response(reader)
                assert resp.headers[b"transfer-encoding"] == b"chunked"
                assert b"content-length" not in resp.headers
                assert resp.body == b"one,two,three"
                assert resp.trailers == {b"grpc-status": b"0", b"grpc-message": b"ok"}
            writer.close()

    run(main())


@needs_curl
def test_curl_streamed_response(run: Any) -> None:
    async def main() -> None:
        async with Server(streamer) as server:
            code, out, err = await curl("--http1.1", "-d", "q", server.url + "/s")
            assert code == 0, err
            assert out == b"one,two,three"

    run(main())


def test_chunked_request_body_with_trailers(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            writer.write(
                b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
            )
            await asyncio.sleep(0.05)
            writer.write(b"6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n")
            resp = await read_response(reader)
            assert resp.body == b"hello world"
            assert server.streams[0].trailers == [(b"x-checksum", b"abc")]
            writer.close()

    run(main())


def test_a_chunked_body_in_one_byte_chunks_is_held_gathered_and_read_whole(run: Any) -> None:
    # 30,000 one-byte chunks while the app does not read: the stream holds them gathered in
    # a few pieces (not 30,000 objects), and reading gives every byte, in order, as bytes.
    body = bytes(i % 251 for i in range(30_000))
    go = asyncio.Event()
    kinds: set[type] = set()

    async def app(stream: H1Stream) -> None:
        await go.wait()
        parts = []
        while chunk := await stream.read():
            kinds.add(type(chunk))
            parts.append(chunk)
        stream.send_headers([(b":status", b"200")])
        await stream.send_data(b"".join(parts), end_stream=True)

    async def main() -> None:
        async with Server(app) as server:
            reader, writer = await connect(server)
            writer.write(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body))))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            # Every chunk taken in (the end too), none read.
            await wait_until(lambda: bool(server.streams) and server.streams[0]._eof, 5.0)
            stream = server.streams[0]
            assert stream.received == len(body)
            assert len(stream._chunks) <= 4, len(stream._chunks)
            go.set()
            resp = await read_response(reader)
            assert resp.body == body
            assert kinds == {bytes}
            writer.close()

    run(main())


@needs_curl
def test_curl_chunked_upload(run: Any) -> None:
    async def main() -> None:
        payload = bytes(range(256)) * 1000
        async with Server(echo) as server:
            code, out, err = await curl(
                "--http1.1",
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                "@-",
                server.url + "/up",
                stdin=payload,
            )
            assert code == 0, err
            assert out == payload

    run(main())


def test_empty_send_data_does_not_end_chunked_body(run: Any) -> None:
    async def app(stream: H1Stream) -> None:
        stream.send_headers([(b":status", b"200")])
        await stream.send_data(b"a")
        await stream.send_data(b"")
        await stream.send_data(b"b")
        stream.end()

    async def main() -> None:
        async with Server(app) as server:
            reader, writer = await connect(server)
            writer.write(request("GET"))
            assert (await read_response(reader)).body == b"ab"
            writer.close()

    run(main())


# -- connection reuse and pipelining ------------------------------------------------


def test_pipelined_requests_are_served_in_order(run: Any) -> None:
    events: list[str] = []

    async def app(stream: H1Stream) -> None:
        name = stream.headers[1][1].decode() if stream.headers else "?"
        events.append("start " + name)
        body = await stream.read_all(1024)
        if name == "/1":
            await asyncio.sleep(0.1)  # the slow first request must not be overtaken
        stream.send_headers([(b":status", b"200")])
        await stream.send_data(name.encode() + body, end_stream=True)
        events.append("end " + name)

    async def main() -> None:
        async with Server(app) as server:
            reader, writer = await connect(server)
            writer.write(b"".join(request("POST", f"/{i}", b"!") for i in (1, 2, 3)))
            bodies = [(await read_response(reader)).body for _ in range(3)]
            assert bodies == [b"/1!", b"/2!", b"/3!"]
            assert events == ["start /1", "end /1", "start /2", "end /2", "start /3", "end /3"]
            assert len(server.connections) == 1
            writer.close()

    run(main())


def test_responses_to_pipelined_requests_leave_together_in_order(run: Any) -> None:
    async def app(stream: H1Stream) -> None:
        name = stream.headers[1][1] if stream.headers else b"?"
        if name == b"/4":
            for _ in range(3):
                await asyncio.sleep(0)  # one that does not answer at once
        stream.send_headers([(b":status", b"200")])
        await stream.send_data(name, end_stream=True)

    async def main() -> None:
        async with Server(app) as server:
            reader, writer = await connect(server)
            writer.write(b"".join(request("GET", f"/{i}") for i in range(8)))
            bodies = [(await read_response(reader)).body for _ in range(8)]
            assert bodies == [b"/%d" % i for i in range(8)]
            conn = server.connections[0]
            assert conn.writes >= 8 and conn.socket_writes <= 3, conn.socket_writes
            # A lone request afterwards is written at once, as always.
            writer.write(request("GET", "/9"))
            assert (await read_response(reader)).body == b"/9"
            assert conn.socket_writes <= 4
            writer.close()

    run(main())


def test_connection_close_request(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            writer.write(request("GET", extra="Connection: close\r\n"))
            resp = await read_response(reader)
            assert resp.headers[b"connection"] == b"close"
            assert await at_eof(reader)
            writer.close()

    run(main())


def test_http10_close_keep_alive_and_streaming(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            writer.write(b"GET /a HTTP/1.0\r\n\r\n")
            resp = await read_response(reader)
            assert resp.status == 200 and resp.headers[b"content-length"] == b"0"
            assert await at_eof(reader)
            assert b":authority" not in dict(server.streams[0].headers or [])
            writer.close()

            reader, writer = await connect(server)
            for _ in range(2):
                writer.write(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                resp = await read_response(reader)
                assert resp.headers[b"connection"] == b"keep-alive"
            writer.close()

        async with Server(streamer) as server:
            # HTTP/1.0 has no chunked coding: the body ends with the connection.
            reader, writer = await connect(server)
            writer.write(b"POST /s HTTP/1.0\r\nContent-Length: 1\r\n\r\nq")
            resp = await read_response(reader)
            assert b"transfer-encoding" not in resp.headers
            assert b"content-length" not in resp.headers
            assert resp.body == b"one,two,three"
            writer.close()

    run(main())


def test_half_closed_client_still_gets_its_responses(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            writer.write(request("POST", "/1", b"a") + request("POST", "/2", b"b"))
            writer.write_eof()
            assert (await read_response(reader)).body == b"a"
            assert (await read_response(reader)).body == b"b"
            assert await at_eof(reader)
            writer.close()

    run(main())


# -- Expect: 100-continue ------------------------------------------------------------


def test_expect_100_continue(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            writer.write(
                b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
            )
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"data")
            resp = await read_response(reader)
            assert resp.status == 200 and resp.body == b"data"
            writer.close()

    run(main())


def test_expect_100_continue_rejected_without_reading(run: Any) -> None:
    async def app(stream: H1Stream) -> None:
        stream.send_headers([(b":status", b"413")])
        await stream.send_data(b"too big", end_stream=True)

    async def main() -> None:
        async with Server(app) as server:
            reader, writer = await connect(server)
            writer.write(
                b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                b"Content-Length: 100000000\r\n\r\n"
            )
            resp = await read_response(reader)  # a final response, no 100 first
            assert resp.status == 413 and resp.body == b"too big"
            assert resp.headers[b"connection"] == b"close"
            assert await at_eof(reader)
            writer.close()

    run(main())


@needs_curl
def test_curl_expect_100_continue(run: Any) -> None:
    async def main() -> None:
        payload = b"z" * 200_000
        async with Server(echo) as server:
            code, out, err = await curl(
                "--http1.1",
                "-i",
                "-H",
                "Expect: 100-continue",
                "--expect100-timeout",
                "5",
                "--data-binary",
                "@-",
                server.url + "/e",
                stdin=payload,
            )
            assert code == 0, err
            assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            head, body = split_curl_output(out)
            assert head.startswith(b"HTTP/1.1 200 OK") and body == payload

    run(main())


def test_early_response_while_body_is_uploading(run: Any) -> None:
    """A response sent before the request body has arrived still reaches the client."""

    async def app(stream: H1Stream) -> None:
        stream.send_headers([(b":status", b"400")])
        await stream.send_data(b"no thanks", end_stream=True)

    async def main() -> None:
        async with Server(app) as server:
            reader, writer = await connect(server)
            size = 4 * 1024 * 1024
            writer.write(f"POST /u HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n".encode())
            writer.write(b"x" * (size // 2))
            resp = await read_response(reader)
            assert resp.status == 400 and resp.body == b"no thanks"
            assert resp.headers[b"connection"] == b"close"
            writer.write(b"x" * (size // 2))
            assert await at_eof(reader)
            writer.close()

    run(main())


# -- malformed and oversized requests ----------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_request_gets_400(run: Any, raw: bytes) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            writer.write(raw)
            resp = await read_response(reader)
            assert resp.status == 400
            assert resp.headers[b"content-type"].startswith(b"text/plain")
            assert resp.body.startswith(b"malformed HTTP/1.1 request: ")
            assert b"Traceback" not in resp.body
            assert await at_eof(reader)
            for stream in server.streams:  # a request whose body was bad fails, not hangs
                assert stream.task is not None
                await asyncio.gather(stream.task, return_exceptions=True)
            writer.close()

    run(main())


def test_bad_request_after_pipelined_good_one_is_answered_in_order(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            writer.write(request("POST", "/ok", b"fine") + b"NOT HTTP AT ALL\r\n\r\n")
            assert (await read_response(reader)).body == b"fine"
            assert (await read_response(reader)).status == 400
            assert await at_eof(reader)
            writer.close()

    run(main())


@pytest.mark.parametrize(
    ("raw", "status", "text"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400, b"missing Host header"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, b"more than one Host header"),
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 501, b"CONNECT"),
    ],
)
def test_requests_refused_by_the_connection(run: Any, raw: bytes, status: int, text: bytes) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            writer.write(raw)
            resp = await read_response(reader)
            assert resp.status == status and text in resp.body
            assert await at_eof(reader)
            assert server.streams == []
            writer.close()

    run(main())


def test_header_block_too_large_gets_431(run: Any) -> None:
    config = TransportConfig(max_header_list_size=2048)

    async def main() -> None:
        async with Server(echo, config) as server:
            reader, writer = await connect(server)
            writer.write(
                request("GET", extra="".join(f"X-{i}: {'v' * 100}\r\n" for i in range(30)))
            )
            resp = await read_response(reader)
            assert resp.status == 431
            assert await at_eof(reader)
            writer.close()

            # One endless header line, sent in pieces, is cut off too.
            reader, writer = await connect(server)
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nX-Long: ")
            for _ in range(10):
                await asyncio.sleep(0.01)
                writer.write(b"v" * 1000)
            resp = await read_response(reader)
            assert await at_eof(reader)
            assert resp.status == 431
            writer.close()

            # Below the limit is fine.
            reader, writer = await connect(server)
            writer.write(request("GET", extra="X-Small: " + "v" * 1000 + "\r\n"))
            assert (await read_response(reader)).status == 200
            writer.close()

    run(main())


# -- upgrades --------------------------------------------------------------------------


def test_h2c_upgrade_is_declined_and_the_body_still_read(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            reader, writer = await connect(server)
            upgrade = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: A\r\n"
            writer.write(
                request("POST", "/a", b"body-a", extra=upgrade)
                + request("GET", "/b", extra=upgrade)
                + b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                + upgrade.encode()
                + b"\r\n3\r\nabc\r\n0\r\n\r\n"
                + request("POST", "/d", b"body-d")
            )
            bodies = [(await read_response(reader)).body for _ in range(4)]
            assert bodies == [b"body-a", b"", b"abc", b"body-d"]
            assert len(server.streams) == 4
            writer.close()

    run(main())


@needs_curl
def test_curl_http2_upgrade_falls_back_to_http11(run: Any) -> None:
    async def main() -> None:
        async with Server(echo) as server:
            code, out, err = await curl(
                "--http2", "-i", "--data-binary", "hello", server.url + "/svc/Echo"
            )
            assert code == 0, err
            head, body = split_curl_output(out)
            assert head.startswith(b"HTTP/1.1 200") and body == b"hello"

    run(main())


# -- timers, disconnects and lifecycle ----------------------------------------------


def test_idle_connection_is_closed(run: Any) -> None:
    config = TransportConfig(idle_timeout=0.2)

    async def main() -> None:
        async with Server(echo, config) as server:
            reader, writer = await connect(server)
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await at_eof(reader, 3)
            assert 0.15 < loop.time() - started < 2
            writer.close()

            reader, writer = await connect(server)
            for _ in range(3):  # requests keep it open past the timeout
                await asyncio.sleep(0.12)
                writer.write(request("POST", "/x", b"1"))
                assert (await read_response(reader)).body == b"1"
            assert await at_eof(reader, 3)
            writer.close()

    run(main())


def test_client_disconnect_fails_stream_and_cancels_task(run: Any) -> None:
    outcome: list[str] = []

    async def main() -> None:
        started = asyncio.Event()

        async def app(stream: H1Stream) -> None:
            started.set()
            try:
                await stream.read_all(1000)
            except ConnectionLost:
                outcome.append("lost")
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise

        async with Server(app) as server:
            _, writer = await connect(server)
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\npartial")
            await started.wait()
            writer.close()
            stream = server.streams[0]
            assert stream.task is not None
            await asyncio.gather(stream.task, return_exceptions=True)
            assert stream.task.cancelled()
            assert outcome in (["lost"], ["cancelled"])
            with pytest.raises(ConnectionLost):
                await stream.read()
            with pytest.raises(ConnectionLost):
                await stream.send_data(b"x")
            await server.connections[0].wait_closed()
            assert server.connections[0].streams == []

    run(main())


def test_shutdown_finishes_the_request_in_flight(run: Any) -> None:
    async def main() -> None:
        go = asyncio.Event()

        arrived = asyncio.Event()

        async def app(stream: H1Stream) -> None:
            if stream.headers and stream.headers[1][1] == b"/x":
                arrived.set()
                await go.wait()
            await echo(stream)

        async with Server(app) as server:
            idle_reader, idle_writer = await connect(server)
            idle_writer.write(request("GET", "/first"))
            assert (await read_response(idle_reader)).status == 200  # now kept alive, idle
            reader, writer = await connect(server)
            writer.write(request("POST", "/x", b"last"))
            await arrived.wait()
            for conn in server.connections:
                conn.shutdown()
            assert await at_eof(idle_reader, 1)
            busy = next(conn for conn in server.connections if conn.streams)
            assert len(busy.streams) == 1
            go.set()
            resp = await read_response(reader)
            assert resp.body == b"last" and resp.headers[b"connection"] == b"close"
            assert await at_eof(reader)
            await busy.wait_closed()
            idle_writer.close()
            writer.close()

    run(main())


def test_reset_closes_the_connection_mid_response(run: Any) -> None:
    async def app(stream: H1Stream) -> None:
        stream.send_headers([(b":status", b"200")])
        await stream.send_data(b"partial")
        stream.reset()
        stream.reset()  # idempotent
        stream.end()  # no effect after a reset

    async def main() -> None:
        async with Server(app) as server:
            reader, writer = await connect(server)
            writer.write(request("GET"))
            with pytest.raises(asyncio.IncompleteReadError):
                await read_response(reader)
            await server.connections[0].wait_closed()
            writer.close()

    run(main())


# -- backpressure -------------------------------------------------------------------------


def test_request_body_backpressure(run: Any) -> None:
    limit = 16 * 1024
    config = TransportConfig(h1_buffer_limit=limit)
    payload = hashlib.sha256(b"seed").digest() * (4 * 1024 * 1024 // 32)

    async def main() -> None:
        go = asyncio.Event()

        async def app(stream: H1Stream) -> None:
            await go.wait()
            body = await stream.read_all(len(payload))
            stream.send_headers([(b":status", b"200")])
            await stream.send_data(hashlib.sha256(body).hexdigest().encode(), end_stream=True)

        async with Server(app, config) as server:
            reader, writer = await connect(server)
            writer.write(request("POST", "/big", payload))
            drain = asyncio.ensure_future(writer.drain())  # the upload goes on meanwhile
            await asyncio.sleep(0.3)
            conn = server.connections[0]
            stream = server.streams[0]
            buffered = sum(map(len, stream._chunks))
            # Paused: at most the limit plus one socket read is held for the handler.
            assert conn._reading_paused
            assert buffered <= limit + 512 * 1024
            go.set()
            resp = await read_response(reader)
            assert resp.body == hashlib.sha256(payload).hexdigest().encode()
            await drain
            writer.close()

    run(main())


def test_response_backpressure(run: Any) -> None:
    chunk = b"r" * (256 * 1024)
    count = 64
    progress: list[int] = []

    async def app(stream: H1Stream) -> None:
        stream.send_headers([(b":status", b"200")])
        for i in range(count):
            await stream.send_data(chunk)
            progress.append(i)
        stream.end()

    async def main() -> None:
        async with Server(app) as server:
            reader, writer = await connect(server)
            writer.write(request("GET", "/big"))
            await asyncio.sleep(0.3)
            # The client reads nothing yet, so the sender must be waiting.
            assert len(progress) < count
            resp = await read_response(reader)
            assert len(resp.body) == count * len(chunk)
            assert len(progress) == count
            writer.close()

    run(main())


def test_too_many_pipelined_requests_pause_reading(run: Any) -> None:
    async def main() -> None:
        go = asyncio.Event()

        async def app(stream: H1Stream) -> None:
            await go.wait()
            await echo(stream)

        async with Server(app) as server:
            reader, writer = await connect(server)
            writer.write(b"".join(request("POST", f"/{i}", b"%d" % i) for i in range(40)))
            await asyncio.sleep(0.1)
            conn = server.connections[0]
            assert conn._reading_paused
            go.set()
            bodies = [(await read_response(reader)).body for _ in range(40)]
            assert bodies == [b"%d" % i for i in range(40)]
            writer.close()

    run(main())


# -- failures on the server side and TLS ----------------------------------------------


def test_on_stream_failure_is_a_500_not_a_traceback(run: Any) -> None:
    reported: list[dict[str, Any]] = []

    def broken(stream: H1Stream) -> None:
        raise RuntimeError("dispatcher bug")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        server = await loop.create_server(lambda: H1Connection(on_stream=broken), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("GET"))
        resp = await read_response(reader)
        assert resp.status == 500 and resp.body == b"internal error\n"
        assert await at_eof(reader)
        assert isinstance(reported[0]["exception"], RuntimeError)
        writer.close()
        server.close()
        await server.wait_closed()

    run(main())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if OPENSSL is None:
        pytest.fail("openssl is not installed: run scripts/setup.sh")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t"]
    subprocess.run(
        [OPENSSL, *args, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_with_http11(run: Any, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.set_alpn_protocols(["http/1.1"])
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False

    async def main() -> None:
        async with Server(echo, tls=server_ctx) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=client_ctx)
            writer.write(request("POST", "/t", b"secret") + request("POST", "/t", b"again"))
            assert (await read_response(reader)).body == b"secret"
            assert (await read_response(reader)).body == b"again"
            assert server.streams[0].headers
            assert server.streams[0].headers[2] == (b":scheme", b"https")
            writer.close()
            if CURL is not None:
                code, out, err = await curl("--http1.1", "-k", "-d", "hi", server.url + "/t")
                assert code == 0, err
                assert out == b"hi"

    run(main())

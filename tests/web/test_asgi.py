"""ASGI hosting over real sockets, with hand-written ASGI applications: the scope, body
streaming and backpressure both ways, disconnects, trailers (nghttp, curl), failures,
lifespan, HTTP/1.1 framing, and services beside an application on one port.

Server and clients share the test's event loop (uvloop and plain asyncio), except for
the blocking peers (curl, nghttp), which run in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.greeter import Greeter, HelloRequest

from h2mesh import Channel, Server
from h2mesh.server._asgi import LifespanFailed
from h2mesh.transport import ErrorCode, H2Connection, StreamReset, TransportConfig, TransportError
from tests.web.apps import SECRET

Run = Callable[[Coroutine[Any, Any, Any]], Any]
Scope = dict[str, Any]


async def _serve(app: Any, **options: Any) -> Server:
    server = Server(options.pop("services", []), app=app, **options)
    await server.start("127.0.0.1", 0)
    return server


async def _h2(port: int, **config: Any) -> H2Connection:
    loop = asyncio.get_running_loop()
    cfg = TransportConfig(idle_timeout=None, **config)
    _, conn = await loop.create_connection(
        lambda: H2Connection(client=True, config=cfg), "127.0.0.1", port
    )
    return conn


def _request(path: bytes, method: bytes = b"GET", port: int = 0) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", b"127.0.0.1:%d" % port),
    ]


async def _text(app_body: bytes, send: Any, status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": app_body})


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- the scope ---------------------------------------------------------------------------
async def scope_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    shown = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string")}
    shown["raw_path"] = scope["raw_path"].decode()
    shown["query_string"] = scope["query_string"].decode()
    shown["headers"] = [[n.decode(), v.decode()] for n, v in scope["headers"]]
    await _text(json.dumps(shown).encode(), send)


@pytest.mark.parametrize("h2", [True, False], ids=["h2", "h1"])
def test_http_scope_has_every_key(run: Run, h2: bool) -> None:
    async def main() -> None:
        server = await _serve(scope_app, root_path="/api")
        try:
            async with httpx.AsyncClient(http2=h2, http1=not h2) as client:
                r = await client.get(
                    f"http://127.0.0.1:{server.port}/a%2Fb/c%20d?x=1&y=%20",
                    headers={"x-one": "1", "cookie": "k=v"},
                )
            scope = r.json()
            assert scope["type"] == "http"
            assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
            assert scope["http_version"] == ("2" if h2 else "1.1")
            assert scope["method"] == "GET"
            assert scope["scheme"] == "http"
            assert scope["path"] == "/a/b/c d"
            assert scope["raw_path"] == "/a%2Fb/c%20d"
            assert scope["query_string"] == "x=1&y=%20"
            assert scope["root_path"] == "/api"
            headers = dict(scope["headers"])
            assert headers["host"] == f"127.0.0.1:{server.port}"
            assert headers["x-one"] == "1"
            assert headers["cookie"] == "k=v"
            assert all(not name.startswith(":") for name, _ in scope["headers"])
            assert scope["client"][0] == "127.0.0.1"
            assert isinstance(scope["client"][1], int)
            assert scope["server"] == ["127.0.0.1", server.port]
            assert scope["state"] == {}
            assert ("http.response.trailers" in scope["extensions"]) == h2
        finally:
            await server.stop(1.0)

    run(main())


@pytest.mark.parametrize("h2", [True, False], ids=["h2", "h1"])
def test_each_connection_sees_its_own_client_address_and_a_named_task(run: Run, h2: bool) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        task = asyncio.current_task()
        name = task.get_name() if task is not None else None
        await _text(json.dumps([scope["client"][1], name]).encode(), send)

    async def main() -> None:
        server = await _serve(app)
        try:
            conns = [await _h2(server.port) for _ in range(2)] if h2 else []
            readers = (
                []
                if h2
                else [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
            )
            ports = [c.sockname[1] for c in conns] or [
                w.get_extra_info("sockname")[1] for _, w in readers
            ]
            seen = []
            # Requests of the two connections alternate: each gets its own address.
            for i in (0, 1, 1, 0, 1):
                if h2:
                    stream = conns[i].open_stream(_request(b"/", port=server.port), True)
                    await stream.wait_response()
                    body = await stream.read_all(1 << 16)
                else:
                    reader, writer = readers[i]
                    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    body = await reader.readexactly(length)
                seen.append((i, json.loads(body)))
            assert [(ports[i], "h2mesh-app") for i, _ in seen] == [tuple(s) for _, s in seen]
            for conn in conns:
                conn.abort()
            for _, writer in readers:
                writer.close()
        finally:
            await server.stop(1.0)

    run(main())


# -- request bodies ------------------------------------------------------------------------
def test_request_body_is_read_at_the_apps_pace(run: Run) -> None:
    """The client can send no more than the stream window ahead of what the app read."""
    gate = asyncio.Event()
    got: list[int] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await gate.wait()
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        got.append(total)
        await _text(b"%d" % total, send)

    async def main() -> None:
        window = 256 * 1024
        server = await _serve(app, config=TransportConfig(stream_window=window))
        conn = await _h2(server.port)
        try:
            stream = conn.open_stream(_request(b"/up", b"POST", server.port), end_stream=False)
            block = b"x" * 16384
            sent = 0
            while sent < 4 * 1024 * 1024:
                sent += len(block)  # queued at once; send_data then waits for the window
                try:
                    await asyncio.wait_for(stream.send_data(block), 0.5)
                except TimeoutError:
                    break
            # The app has read nothing: the sender is held at about one window.
            assert sent <= window + 128 * 1024
            gate.set()
            while sent < 4 * 1024 * 1024:
                await stream.send_data(block)
                sent += len(block)
            stream.end()
            headers = await stream.wait_response()
            assert dict(headers)[b":status"] == b"200"
            assert await stream.read_all(1 << 20) == b"%d" % sent
        finally:
            conn.abort()
            await server.stop(1.0)

    run(main())


async def hashing_app(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the sha256 and size of the request body, and how it was framed."""
    if scope["type"] != "http":
        return
    sha, size = hashlib.sha256(), 0
    while True:
        message = await receive()
        body = message.get("body", b"")
        sha.update(body)
        size += len(body)
        if not message.get("more_body"):
            break
    headers = dict(scope["headers"])
    shown = {
        "sha256": sha.hexdigest(),
        "size": size,
        "transfer-encoding": headers.get(b"transfer-encoding", b"").decode(),
        "content-length": headers.get(b"content-length", b"").decode() or None,
    }
    await _text(json.dumps(shown).encode(), send)


def _blocks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_chunked_http1_upload_reaches_the_app_whole(
    run: Run, curl: str, big_file: tuple[Path, str]
) -> None:
    path, digest = big_file
    run(chunked_upload_reaches(hashing_app, curl, path, path.read_bytes(), digest))


async def chunked_upload_reaches(app: Any, curl: str, path: Path, data: bytes, digest: str) -> None:
    """A chunked HTTP/1.1 upload of ``data`` (httpx sending a generator body, then curl
    sending ``path``, which holds it) reaches ``app`` (ASGI or WSGI, answering what it
    got) whole."""

    async def parts() -> AsyncIterator[bytes]:
        # Uneven blocks: chunk boundaries fall anywhere in the server's reads.
        for block in _blocks(data, 100_003):
            yield block

    server = await _serve(app)
    url = f"http://127.0.0.1:{server.port}/up"
    expected = {
        "sha256": digest,
        "size": len(data),
        "transfer-encoding": "chunked",
        "content-length": None,
    }
    try:
        # httpx sends a body of unknown length (a generator) chunked.
        async with httpx.AsyncClient(http1=True, http2=False, timeout=30) as client:
            r = await client.post(url, content=parts())
            assert r.http_version == "HTTP/1.1"
            assert r.json() == expected
        done = await _in_thread(
            curl, "-sS", "--http1.1", "-H", "Transfer-Encoding: chunked",
            "--data-binary", f"@{path}", url,
        )  # fmt: skip
        assert json.loads(done.stdout) == expected
    finally:
        await server.stop(1.0)


def test_http1_request_body_is_read_at_the_apps_pace(run: Run) -> None:
    """The HTTP/1.1 counterpart of the test above: past the connection's buffer limit the
    server stops reading the socket, so the client can get no further ahead of the app
    than that limit and the socket buffers."""
    gate = asyncio.Event()
    limit = 256 * 1024
    total = 64 * 1024 * 1024

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await gate.wait()
        await hashing_app(scope, receive, send)

    async def main() -> None:
        server = await _serve(app, config=TransportConfig(h1_buffer_limit=limit))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            writer.transport.set_write_buffer_limits(0)
            writer.write(b"POST /up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            block = b"y" * 65536
            chunk = b"%x\r\n%s\r\n" % (len(block), block)
            sha = hashlib.sha256()
            sent = 0
            while sent < total:
                writer.write(chunk)
                sha.update(block)
                sent += len(block)  # queued at once; drain then waits for the socket
                try:
                    await asyncio.wait_for(writer.drain(), 0.5)
                except TimeoutError:
                    break
            # The app has read nothing: the sender is held at the buffer limit plus what
            # the sockets hold (some hundreds of KiB on loopback), far short of the 64 MiB.
            assert sent < limit + 4 * 1024 * 1024, sent
            gate.set()
            while sent < total:
                writer.write(chunk)
                sha.update(block)
                sent += len(block)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            reply = json.loads(await reader.readexactly(length))
            assert (reply["size"], reply["sha256"]) == (total, sha.hexdigest())
            writer.close()
        finally:
            await server.stop(1.0)

    run(main())


def test_reset_mid_upload_reaches_the_app_as_http_disconnect(run: Run) -> None:
    seen: list[str] = []
    disconnected = asyncio.Event()
    reading = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            seen.append(message["type"])
            reading.set()
            if message["type"] == "http.disconnect":
                disconnected.set()
                return

    async def main() -> None:
        server = await _serve(app)
        conn = await _h2(server.port)
        try:
            stream = conn.open_stream(_request(b"/up", b"POST", server.port), end_stream=False)
            await stream.send_data(b"x" * 100_000)
            await asyncio.wait_for(reading.wait(), 5.0)
            stream.reset(ErrorCode.CANCEL)
            await asyncio.wait_for(disconnected.wait(), 5.0)
            assert seen[0] == "http.request" and seen[-1] == "http.disconnect"
        finally:
            conn.abort()
            await server.stop(1.0)

    run(main())


def test_http1_client_closing_mid_upload_is_an_http_disconnect(run: Run) -> None:
    disconnected = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()

    async def main() -> None:
        server = await _serve(app)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n" + b"x" * 1000
            )
            await writer.drain()
            writer.close()
            await asyncio.wait_for(disconnected.wait(), 5.0)
        finally:
            await server.stop(1.0)

    run(main())


# -- response backpressure --------------------------------------------------------------------
def _endless_app(progress: dict[str, Any]) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        block = b"z" * 65536
        try:
            for _ in range(4096):  # 256 MiB if nothing held it back
                await send({"type": "http.response.body", "body": block, "more_body": True})
                progress["sent"] += len(block)
        except OSError as exc:
            progress["error"] = exc
        progress["done"].set()

    return app


async def _until_stalled(progress: dict[str, Any]) -> int:
    """Wait until the app's send has not returned for 0.3 s (bounded by 10 s)."""
    last, stable_since = -1, 0.0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while loop.time() < deadline:
        now = progress["sent"]
        if now != last:
            last, stable_since = now, loop.time()
        elif loop.time() - stable_since > 0.3:
            return now
        await asyncio.sleep(0.02)
    raise AssertionError("the app's send never blocked")


def test_a_client_that_never_reads_blocks_the_apps_send_h2(run: Run) -> None:
    progress: dict[str, Any] = {"sent": 0, "done": asyncio.Event()}

    async def main() -> None:
        server = await _serve(_endless_app(progress))
        conn = await _h2(server.port)
        try:
            before = _rss()
            stream = conn.open_stream(_request(b"/down", b"GET", server.port), end_stream=True)
            await stream.wait_response()
            stalled = await _until_stalled(progress)
            # One stream window (1 MiB) plus the send high-water mark and socket buffers.
            assert stalled < 8 * 1024 * 1024
            assert _rss() - before < 32 * 1024 * 1024
            stream.reset(ErrorCode.CANCEL)
            await asyncio.wait_for(progress["done"].wait(), 5.0)
            assert isinstance(progress["error"], OSError)
        finally:
            conn.abort()
            await server.stop(1.0)

    run(main())


def test_a_client_that_never_reads_blocks_the_apps_send_h1(run: Run) -> None:
    progress: dict[str, Any] = {"sent": 0, "done": asyncio.Event()}

    async def main() -> None:
        server = await _serve(_endless_app(progress))
        try:
            before = _rss()
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /down HTTP/1.1\r\nhost: x\r\n\r\n")
            await writer.drain()
            stalled = await _until_stalled(progress)
            assert stalled < 16 * 1024 * 1024  # socket buffers on both sides, nothing more
            assert _rss() - before < 48 * 1024 * 1024
            writer.transport.abort()
            await asyncio.wait_for(progress["done"].wait(), 5.0)
            assert isinstance(progress["error"], OSError)
        finally:
            await server.stop(1.0)

    run(main())


# -- trailers --------------------------------------------------------------------------------
async def trailers_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    # Sent even where the scope does not offer the extension (HTTP/1.1 without TE:
    # trailers): the server then ends the body and drops the trailers.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"trailer", b"x-checksum")],
            "trailers": True,
        }
    )
    await send({"type": "http.response.body", "body": b"part one,", "more_body": True})
    await send({"type": "http.response.body", "body": b"part two"})
    await send(
        {
            "type": "http.response.trailers",
            "headers": [(b"x-checksum", b"abc123")],
            "more_trailers": True,
        }
    )
    await send({"type": "http.response.trailers", "headers": [(b"X-Count", b"2")]})


def _in_thread(*args: str) -> Coroutine[Any, Any, subprocess.CompletedProcess[bytes]]:
    return asyncio.to_thread(
        subprocess.run, list(args), capture_output=True, timeout=30, check=True
    )


def test_trailers_arrive_as_http2_trailers(run: Run, nghttp: str) -> None:
    async def main() -> None:
        server = await _serve(trailers_app)
        try:
            done = await _in_thread(nghttp, "-v", f"http://127.0.0.1:{server.port}/t")
            out = done.stdout.decode()
            assert "part one,part two" in out
            # A HEADERS frame after the body, ending the stream, carries both fields.
            tail = out[out.index("part one,part two") :]
            assert "recv HEADERS frame" in tail and "END_STREAM" in tail
            assert "x-checksum: abc123" in tail and "x-count: 2" in tail
        finally:
            await server.stop(1.0)

    run(main())


@pytest.mark.parametrize("te", [True, False], ids=["te-trailers", "no-te"])
def test_trailers_on_http1_only_for_clients_that_take_them(run: Run, curl: str, te: bool) -> None:
    async def main() -> None:
        server = await _serve(trailers_app)
        try:
            args = [curl, "-sS", "--http1.1", "--raw", f"http://127.0.0.1:{server.port}/t"]
            if te:
                args[1:1] = ["-H", "TE: trailers"]
            out = (await _in_thread(*args)).stdout
            assert b"part one," in out and b"part two" in out
            if te:
                assert out.endswith(b"0\r\nx-checksum: abc123\r\nx-count: 2\r\n\r\n")
            else:
                assert b"abc123" not in out
        finally:
            await server.stop(1.0)

    run(main())


# -- failures ----------------------------------------------------------------------------------
def _failing_app(when: str) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await _text(b"fine", send)
            return
        if when == "before":
            raise ValueError(SECRET)
        if when == "silent":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError(SECRET)

    return app


@pytest.mark.parametrize("when", ["before", "silent"])
@pytest.mark.parametrize("h2", [True, False], ids=["h2", "h1"])
def test_failure_before_the_response_is_a_bare_500(run: Run, h2: bool, when: str) -> None:
    async def main() -> None:
        server = await _serve(_failing_app(when))
        try:
            async with httpx.AsyncClient(
                http2=h2, http1=not h2, base_url=f"http://127.0.0.1:{server.port}"
            ) as client:
                r = await client.get("/x")
                assert r.status_code == 500
                assert r.text == "Internal Server Error"
                assert (await client.get("/ok")).text == "fine"
        finally:
            await server.stop(1.0)

    run(main())


def test_the_scheme_is_the_connections_not_what_an_http2_request_claims(run: Run) -> None:
    """An HTTP/2 request on a cleartext connection that says ``:scheme: https`` is shown
    to the app as ``http`` (as HTTP/1.1 requests are, and as hypercorn does): an app must
    not take a plain connection for a TLS one on the client's word."""

    async def main() -> None:
        server = await _serve(scope_app)
        conn = await _h2(server.port)
        try:
            for claimed in (b"https", b"http"):
                head = _request(b"/s", b"GET", server.port)
                head[1] = (b":scheme", claimed)
                stream = conn.open_stream(head, end_stream=True)
                await stream.wait_response()
                scope = json.loads(await stream.read_all(1 << 20))
                assert (scope["scheme"], scope["http_version"]) == ("http", "2")
        finally:
            conn.abort()
            await server.stop(1.0)

    run(main())


def test_failure_after_the_response_started_resets_the_http2_stream(run: Run) -> None:
    async def main() -> None:
        server = await _serve(_failing_app("after"))
        conn = await _h2(server.port)
        try:
            stream = conn.open_stream(_request(b"/x", b"GET", server.port), end_stream=True)
            with pytest.raises(StreamReset) as info:
                # (the reset may overtake the response head still queued with it)
                await stream.wait_response()
                await stream.read_all(1 << 20)
            assert info.value.error_code == ErrorCode.INTERNAL_ERROR
            # Same connection, next request: fine.
            ok = conn.open_stream(_request(b"/ok", b"GET", server.port), end_stream=True)
            await ok.wait_response()
            assert await ok.read_all(1024) == b"fine"
        finally:
            conn.abort()
            await server.stop(1.0)

    run(main())


def test_failure_after_the_response_started_closes_the_http1_connection(run: Run) -> None:
    async def main() -> None:
        server = await _serve(_failing_app("after"))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 5.0)  # until the server closes
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"partial" in data
            assert not data.endswith(b"0\r\n\r\n")  # the chunked body never ended
            writer.close()
        finally:
            await server.stop(1.0)

    run(main())


# -- lifespan ------------------------------------------------------------------------------------
def test_lifespan_runs_before_the_port_opens_and_after_the_drain(run: Run) -> None:
    events: list[Any] = []
    holder: dict[str, Server] = {}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            assert (await receive())["type"] == "lifespan.startup"
            events.append(("startup", list(holder["server"].sockets)))
            scope["state"]["db"] = "connected"
            await send({"type": "lifespan.startup.complete"})
            assert (await receive())["type"] == "lifespan.shutdown"
            events.append(("shutdown", holder["server"]._connections == set()))
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen = sorted(scope["state"])
        scope["state"]["mine"] = True  # a per-request copy: not seen by the next request
        await _text(json.dumps(seen).encode(), send)

    async def main() -> None:
        server = holder["server"] = Server([], app=app)
        await server.start("127.0.0.1", 0)
        assert events == [("startup", [])]
        async with httpx.AsyncClient(http2=True, http1=False) as client:
            for _ in range(2):
                r = await client.get(f"http://127.0.0.1:{server.port}/")
                assert r.json() == ["db"]
        await server.stop(1.0)
        assert events[1] == ("shutdown", True)

    run(main())


def test_lifespan_startup_failure_stops_the_server_from_starting(run: Run) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    async def main() -> None:
        server = Server([], app=app)
        with pytest.raises(LifespanFailed, match="no database"):
            await server.start("127.0.0.1", 0)
        assert server.sockets == []

    run(main())


def test_lifespan_on_requires_an_app_that_supports_it(run: Run) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError("only http")
        await _text(b"hi", send)

    async def main() -> None:
        with pytest.raises(LifespanFailed):
            await Server([], app=app, lifespan="on").start("127.0.0.1", 0)
        server = await _serve(app)  # "auto": carries on without lifespan
        try:
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"http://127.0.0.1:{server.port}/")).text == "hi"
        finally:
            await server.stop(1.0)

    run(main())


# -- HTTP details -------------------------------------------------------------------------------
async def length_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"Content-Length", b"12"), (b"X-Mixed-Case", b"v")],
        }
    )
    for part in (b"hello ", b"world!"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def test_http1_declared_content_length_frames_a_body_sent_in_pieces(run: Run) -> None:
    async def main() -> None:
        server = await _serve(length_app, server_header=False, date_header=False)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            # Two pipelined requests, then a HEAD: answered in order on one connection.
            writer.write(
                b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n"
                b"HEAD /c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            )
            data = await asyncio.wait_for(reader.read(), 5.0)
            one = b"HTTP/1.1 200 OK\r\nx-mixed-case: v\r\ncontent-length: 12\r\n\r\nhello world!"
            head = (
                b"HTTP/1.1 200 OK\r\nx-mixed-case: v\r\ncontent-length: 12\r\n"
                b"connection: close\r\n\r\n"
            )
            assert data == one + one + head
            writer.close()
        finally:
            await server.stop(1.0)

    run(main())


def test_head_over_http2_has_no_body(run: Run) -> None:
    async def main() -> None:
        server = await _serve(length_app)
        try:
            async with httpx.AsyncClient(http2=True, http1=False) as client:
                r = await client.head(f"http://127.0.0.1:{server.port}/")
                assert r.status_code == 200
                assert r.headers["content-length"] == "12"
                assert r.content == b""
        finally:
            await server.stop(1.0)

    run(main())


def test_expect_100_continue_is_answered_when_the_app_reads(run: Run) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/reject":
            await _text(b"too big", send, status=413)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await _text(body, send)

    async def main() -> None:
        server = await _serve(app)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n"
                b"expect: 100-continue\r\n\r\n"
            )
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert await reader.readexactly(5) == b"hello"
            # A rejection comes without any 100 Continue: the body is never sent.
            writer.write(
                b"POST /reject HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n"
                b"expect: 100-continue\r\n\r\n"
            )
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413 ")
            writer.close()
        finally:
            await server.stop(1.0)

    run(main())


# -- services beside an application ----------------------------------------------------------------
def test_fastapi_app_and_a_typed_service_share_one_port(run: Run, curl: str) -> None:
    from tests.web.apps.fastapi_app import app

    async def main() -> None:
        server = await _serve(app, services=[Greeter()])
        url = f"http://127.0.0.1:{server.port}"
        try:
            async with Channel(url) as channel:
                reply = await channel.stub(Greeter).say_hello(HelloRequest(name="mesh"))
                assert reply.message == "Hello, mesh!"
            done = await _in_thread(
                curl,
                "-sS",
                "--http2-prior-knowledge",
                "-H",
                "content-type: application/json",
                "-d",
                '{"name": "curl"}',
                f"{url}/demo.v1.Greeter/SayHello",
            )
            assert json.loads(done.stdout) == {"message": "Hello, curl!"}
            async with httpx.AsyncClient(base_url=url, http2=True, http1=False) as client:
                r = await client.get("/items/web", params={"q": "1"})
                assert r.json()["name"] == "web" and r.http_version == "HTTP/2"
                assert (await client.get("/demo.v1.Greeter/Nope")).status_code == 404
                # FastAPI's own OpenAPI document, not h2mesh's built-in page.
                spec = (await client.get("/openapi.json")).json()
                assert "/items/{name}" in spec["paths"]
                # Built-in health stays on.
                health = await client.post(
                    "/grpc.health.v1.Health/Check",
                    content=b"{}",
                    headers={"content-type": "application/json"},
                )
                assert health.json() == {"status": "SERVING"}
        finally:
            await server.stop(1.0)

    run(main())


def test_a_send_after_the_client_left_raises_oserror_not_transport_errors(run: Run) -> None:
    assert issubclass(__import__("h2mesh").server._asgi.ClientDisconnected, OSError)
    assert not issubclass(TransportError, OSError)


def test_a_response_that_ends_before_the_upload_does_not_hang_the_client(
    run: Run, curl: str, tmp_path: Any
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await _text(b"too large", send, status=413)  # never reads the body

    async def main() -> None:
        server = await _serve(app)
        try:
            for h2 in (True, False):
                async with httpx.AsyncClient(http2=h2, http1=not h2, timeout=10) as client:
                    r = await client.post(
                        f"http://127.0.0.1:{server.port}/up", content=b"u" * (4 * 1024 * 1024)
                    )
                    assert r.status_code == 413
                    assert r.text == "too large"
            # Past the drain limit the stream is reset (NO_ERROR): curl keeps the answer.
            upload = tmp_path / "upload"
            upload.write_bytes(b"v" * (24 * 1024 * 1024))
            done = await _in_thread(
                curl, "-sS", "--http2-prior-knowledge", "-o", "-", "-w", " %{http_code}",
                "--data-binary", f"@{upload}", f"http://127.0.0.1:{server.port}/up",
            )  # fmt: skip
            assert done.stdout == b"too large 413"
        finally:
            await server.stop(1.0)

    run(main())

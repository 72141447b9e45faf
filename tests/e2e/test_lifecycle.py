"""Server lifecycle over real sockets: graceful shutdown, idle connections, stream and
header limits, peers that break HTTP/2, and TLS with ALPN.

Server and ``Channel`` share one event loop per test, run once on plain asyncio and once
on uvloop. curl and openssl are real peers; a missing one fails the test.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from examples.greeter import CountRequest, Greeter, HelloRequest

from h2mesh import Channel, Code, Context, RpcError, Server, ServerInterceptor, TransportConfig
from h2mesh.transport import H2Connection
from tests.conftest import wait_until

Run = Callable[[Coroutine[Any, Any, Any]], Any]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_GOAWAY = 0x7


# Each run() of a test is bounded (the conftest's ``run`` reads this).
RUN_TIME_LIMIT = 5.0


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/setup.sh", pytrace=False)
    return path


async def serve(config: TransportConfig | None = None, **options: Any) -> Server:
    server = Server([Greeter()], config=config, **options)
    await server.start("127.0.0.1", 0)
    return server


def connection_of(ch: Channel) -> H2Connection:
    """The HTTP/2 connection a channel currently uses."""
    assert ch._direct is not None
    conns = ch._direct.connections
    assert conns, "the channel has no connection"
    return conns[-1]


async def hello(ch: Channel, name: str = "x", **kwargs: Any) -> str:
    reply = await ch.stub(Greeter).say_hello(HelloRequest(name=name), timeout=2.0, **kwargs)
    return str(reply.message)


# -- graceful shutdown ---------------------------------------------------------------------


def test_stop_drains_an_in_flight_stream_then_closes(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        ticks: list[int] = []
        async with Channel(f"http://127.0.0.1:{server.port}", codec="json") as ch:

            async def consume() -> None:
                async for tick in ch.stub(Greeter).count(CountRequest(to=6, delay=0.08)):
                    ticks.append(tick.n)  # noqa: PERF401 - the test watches it grow

            call = asyncio.create_task(consume())
            await wait_until(lambda: len(ticks) >= 1)
            conn = connection_of(ch)
            started = time.monotonic()
            stopping = asyncio.create_task(server.stop(grace=2.0))

            # GOAWAY arrives at once: no new streams on this connection, the call goes on.
            await wait_until(lambda: not conn.is_available(), timeout=0.5)
            assert conn.goaway_last_stream_id == 1
            assert not call.done() and not conn.lost
            # A new call cannot get in (the listener is closed) and fails fast.
            with pytest.raises(RpcError) as refused:
                await hello(ch)
            assert refused.value.code is Code.UNAVAILABLE

            await asyncio.wait_for(call, 2.0)
            assert ticks == [1, 2, 3, 4, 5, 6]
            await asyncio.wait_for(conn.wait_closed(), 1.0)
            await asyncio.wait_for(stopping, 1.0)
            # Done when the work was, not when the grace period ran out.
            assert time.monotonic() - started < 1.5

    run(main())


def test_stop_cancels_handlers_that_outlive_the_grace_period(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        ticks: list[int] = []
        async with Channel(f"http://127.0.0.1:{server.port}", codec="json") as ch:

            async def consume() -> None:
                async for tick in ch.stub(Greeter).count(CountRequest(to=100, delay=0.05)):
                    ticks.append(tick.n)  # noqa: PERF401 - the test watches it grow

            call = asyncio.create_task(consume())
            await wait_until(lambda: len(ticks) >= 1)
            started = time.monotonic()
            await asyncio.wait_for(server.stop(grace=0.3), 2.0)
            stopped = time.monotonic() - started
            assert 0.25 < stopped < 1.5

            with pytest.raises(RpcError) as failed:
                await asyncio.wait_for(call, 1.0)  # an error, not a hang
            # The Connect end-of-stream error came before the connection closed.
            assert failed.value.code is Code.UNAVAILABLE
            assert "server shutting down" in failed.value.message
            assert len(ticks) < 100
            assert not server._connections

    run(main())


def test_grpcio_sees_unavailable_for_a_call_past_the_grace_period(run: Run) -> None:
    import grpc

    # CountRequest(to=100, delay=0.05) in protobuf: field 1 varint, field 2 double.
    request = b"\x08\x64\x11" + struct.pack("<d", 0.05)

    async def main() -> None:
        server = await serve()
        first = threading.Event()

        def consume() -> tuple[Any, str]:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
                count = ch.unary_stream("/demo.v1.Greeter/Count")
                try:
                    for _ in count(request, timeout=5):
                        first.set()
                except grpc.RpcError as exc:
                    return exc.code(), exc.details()
            return None, "the stream ended normally"

        consumer = asyncio.get_running_loop().run_in_executor(None, consume)
        await wait_until(first.is_set, 3.0)
        await asyncio.wait_for(server.stop(grace=0.2), 2.0)
        code, details = await asyncio.wait_for(consumer, 2.0)
        # Trailers with grpc-status 14, not a cut connection ("Socket closed").
        assert code == grpc.StatusCode.UNAVAILABLE, details
        assert "server shutting down" in details

    run(main())


def test_stop_with_idle_connections_is_prompt(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        channels = [Channel(f"http://127.0.0.1:{server.port}", codec="json") for _ in range(3)]
        for ch in channels:
            assert await hello(ch) == "Hello, x!"
        conns = [connection_of(ch) for ch in channels]
        started = time.monotonic()
        await server.stop(grace=5.0)
        assert time.monotonic() - started < 1.0
        for conn in conns:
            await asyncio.wait_for(conn.wait_closed(), 1.0)
            assert conn.goaway_last_stream_id is not None
        for ch in channels:
            await ch.close()

    run(main())


# -- idle timeout ---------------------------------------------------------------------------


def test_idle_connection_is_closed_and_the_channel_reconnects(run: Run) -> None:
    async def main() -> None:
        server = await serve(TransportConfig(idle_timeout=0.3))
        try:
            async with Channel(f"http://127.0.0.1:{server.port}", codec="json") as ch:
                assert await hello(ch) == "Hello, x!"
                conn = connection_of(ch)
                idle_since = time.monotonic()
                await asyncio.wait_for(conn.wait_closed(), 2.0)
                assert 0.25 < time.monotonic() - idle_since < 1.2
                assert conn.goaway_last_stream_id == 1
                # The next call opens a new connection transparently.
                assert await hello(ch, "again") == "Hello, again!"
                assert connection_of(ch) is not conn
        finally:
            await server.stop(grace=1.0)

    run(main())


# -- limits ---------------------------------------------------------------------------------


class Concurrency(ServerInterceptor):
    """Counts the server-streaming handlers running at once."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0

    async def intercept_stream(
        self, call_next: Any, request: Any, ctx: Context
    ) -> AsyncIterator[Any]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            async for message in call_next(request, ctx):
                yield message
        finally:
            self.active -= 1


def test_calls_beyond_max_concurrent_streams_wait_their_turn(run: Run) -> None:
    async def main() -> None:
        counter = Concurrency()
        server = await serve(TransportConfig(max_concurrent_streams=4), interceptors=[counter])
        try:
            async with Channel(f"http://127.0.0.1:{server.port}", codec="json") as ch:
                greeter = ch.stub(Greeter)

                async def count() -> list[int]:
                    request = CountRequest(to=2, delay=0.01)
                    return [t.n async for t in greeter.count(request, timeout=3.0)]

                results = await asyncio.gather(*(count() for _ in range(50)))
                assert results == [[1, 2]] * 50
                assert counter.peak == 4
                # Unary calls too, all at once: once a connection carries the server's
                # 4 streams, the channel opens more (up to its cap) instead of queueing.
                names = [f"n{i}" for i in range(50)]
                replies = await asyncio.gather(*(hello(ch, name) for name in names))
                assert replies == [f"Hello, {name}!" for name in names]
                pool = ch._direct
                assert pool is not None
                assert 2 <= len(pool.connections) <= pool.max_connections
                assert all(c.peer_max_concurrent_streams == 4 for c in pool.connections)
        finally:
            await server.stop(grace=1.0)

    run(main())


def test_oversized_request_headers_are_refused_and_the_connection_survives(run: Run) -> None:
    async def main() -> None:
        server = await serve(TransportConfig(max_header_list_size=4096))
        try:
            async with Channel(f"http://127.0.0.1:{server.port}", codec="json") as ch:
                assert await hello(ch) == "Hello, x!"
                conn = connection_of(ch)
                with pytest.raises(RpcError) as refused:
                    await hello(ch, headers={"x-big": "a" * 8000})
                # 431, which Connect clients read as UNKNOWN.
                assert refused.value.code is Code.UNKNOWN
                assert "431" in refused.value.message
                # The same connection still serves calls.
                assert await hello(ch, "after") == "Hello, after!"
                assert connection_of(ch) is conn and not conn.lost
                assert await hello(ch, headers={"x-small": "a" * 1000}) == "Hello, x!"
        finally:
            await server.stop(grace=1.0)

    run(main())


# -- peers that break HTTP/2 ---------------------------------------------------------------


def frames_in(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, stream id, payload) of each whole frame in ``data``."""
    out = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if len(data) < 9 + length:
            break
        out.append((data[3], int.from_bytes(data[5:9], "big"), data[9 : 9 + length]))
        data = data[9 + length :]
    return out


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5,  # SETTINGS of 5 bytes
        b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + b"\x00\x00\x02\x00\x00\x00\x00\x00\x00xy",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4,  # HTTP/1.1 after the HTTP/2 preface
    ],
    ids=["bad-settings", "data-on-stream-0", "http1-after-preface"],
)
def test_protocol_violation_closes_only_that_connection(run: Run, garbage: bytes) -> None:
    async def main() -> None:
        server = await serve()
        try:
            async with Channel(f"http://127.0.0.1:{server.port}", codec="json") as ch:
                assert await hello(ch, "before") == "Hello, before!"
                conn = connection_of(ch)

                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(PREFACE + garbage)
                received = await asyncio.wait_for(reader.read(), 2.0)  # until EOF
                writer.close()
                goaways = [f for f in frames_in(received) if f[0] == FRAME_GOAWAY]
                assert goaways, "the violating connection got no GOAWAY"
                assert int.from_bytes(goaways[-1][2][4:8], "big") != 0  # an error code

                await wait_until(lambda: len(server._connections) == 1)
                assert await hello(ch, "after") == "Hello, after!"
                assert connection_of(ch) is conn
        finally:
            await server.stop(grace=1.0)

    run(main())


# -- TLS with ALPN ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert, key) paths."""
    openssl = binary("openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "c.pem", folder / "k.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return str(cert), str(key)


async def curl_hello(port: int, version_flag: str) -> tuple[dict[str, Any], str]:
    """Call SayHello over TLS with curl; return the JSON reply and the HTTP version used."""
    proc = await asyncio.create_subprocess_exec(
        binary("curl"), "-sS", "-k", version_flag, "--max-time", "3",
        "-H", "content-type: application/json", "-d", '{"name":"tls"}',
        "-w", "\n%{http_version}",
        f"https://127.0.0.1:{port}/demo.v1.Greeter/SayHello",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    body, _, version = out.decode().rpartition("\n")
    return json.loads(body), version


def test_tls_with_alpn_serves_channel_and_curl(run: Run, certificate: tuple[str, str]) -> None:
    cert, key = certificate

    async def main() -> None:
        server = Server([Greeter()])
        await server.start("127.0.0.1", 0, tls=(cert, key))
        try:
            trusting = ssl.create_default_context(cafile=cert)
            async with Channel(f"https://127.0.0.1:{server.port}", ssl_context=trusting) as ch:
                assert await hello(ch, "tls") == "Hello, tls!"
                conn = connection_of(ch)
                assert conn.transport is not None
                sslobj = conn.transport.get_extra_info("ssl_object")
                assert sslobj.selected_alpn_protocol() == "h2"

            for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
                reply, used = await curl_hello(server.port, flag)
                assert reply == {"message": "Hello, tls!"}
                assert used == version
        finally:
            await server.stop(grace=1.0)

    run(main())


def test_tls_channel_rejects_an_untrusted_certificate(
    run: Run, certificate: tuple[str, str]
) -> None:
    cert, key = certificate

    async def main() -> None:
        server = Server([Greeter()])
        await server.start("127.0.0.1", 0, tls=(cert, key))
        try:
            async with Channel(f"https://127.0.0.1:{server.port}") as ch:  # system CAs only
                with pytest.raises(RpcError) as failed:
                    await hello(ch)
                assert failed.value.code is Code.UNAVAILABLE
        finally:
            await server.stop(grace=1.0)

    run(main())

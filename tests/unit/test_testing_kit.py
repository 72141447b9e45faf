"""``h2mesh.testing``: the in-memory channel, handler contexts, and the pytest fixtures.

The in-memory channel must be the real thing minus the kernel: the same server, HTTP/2
engine on both ends, router, protocols and codecs, with flow control, deadlines, errors
and metadata behaving as over a socket, and no socket opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from examples.greeter import CountRequest, Greeter, HelloReply, HelloRequest, Msg, Num, Sum, Tick

from h2mesh import (
    Channel,
    Code,
    Context,
    ResponseMetadata,
    RpcError,
    Server,
    ServerInterceptor,
    UnaryNext,
)
from h2mesh.discovery import Registry
from h2mesh.testing import ChannelFor, ServerThread, make_context
from h2mesh.transport import H2Connection, MemoryListener, create_connection, listen_memory
from h2mesh.transport._memory import MemoryTransport

Run = Callable[[Coroutine[Any, Any, Any]], Any]

PROTOCOLS = pytest.mark.parametrize("protocol", ["connect", "grpc", "grpc-web"])


async def _numbers(n: int) -> AsyncIterator[Num]:
    for i in range(1, n + 1):
        yield Num(i)


async def _messages(*texts: str) -> AsyncIterator[Msg]:
    for text in texts:
        yield Msg(text)


# -- ChannelFor ----------------------------------------------------------------------------
@PROTOCOLS
def test_every_call_kind_in_memory(run: Run, protocol: str) -> None:
    async def main() -> None:
        async with ChannelFor([Greeter()], protocol=protocol) as ch:
            g = ch.stub(Greeter)
            assert await g.say_hello(HelloRequest("mem")) == HelloReply("Hello, mem!")
            assert [t async for t in g.count(CountRequest(to=3))] == [Tick(1), Tick(2), Tick(3)]
            assert await g.total(_numbers(10)) == Sum(total=55, count=10)
            echoes = [m.text async for m in g.chat(_messages("a", "b"))]
            assert echoes == ["echo: a", "echo: b"]

    run(main())


def test_no_socket_but_the_real_engine_on_both_ends(run: Run) -> None:
    async def main() -> None:
        kit = ChannelFor([Greeter()])
        async with kit as ch:
            await ch.stub(Greeter).say_hello(HelloRequest("x"))
            assert kit.server.sockets == []
            (conn,) = kit.server._connections
            assert isinstance(conn, H2Connection) and not conn.is_client
            assert isinstance(conn.transport, MemoryTransport)
            assert conn.peer[0] == "memory"
            assert kit.target.startswith("http://memory-") and ".invalid:" in kit.target

    run(main())


@PROTOCOLS
def test_errors_metadata_and_deadlines_as_over_a_socket(run: Run, protocol: str) -> None:
    async def main() -> None:
        async with ChannelFor([Greeter()], protocol=protocol) as ch:
            g = ch.stub(Greeter)
            with pytest.raises(RpcError) as info:
                await g.say_hello(HelloRequest(""))
            assert info.value.code is Code.INVALID_ARGUMENT
            assert info.value.message == "name must not be empty"
            md = ResponseMetadata()
            await g.say_hello(HelloRequest("h"), metadata=md)
            assert md.headers["x-greeter"] == "h2mesh"
            with pytest.raises(RpcError) as info:
                stream = g.count(CountRequest(to=50, delay=0.2), timeout=0.3)
                async for _ in stream:
                    pass
            assert info.value.code is Code.DEADLINE_EXCEEDED

    run(main())


def test_large_messages_go_through_flow_control(run: Run) -> None:
    async def main() -> None:
        # Far more than one HTTP/2 window and the in-memory write buffer: both ends
        # pause and resume as the peer reads.
        async with ChannelFor([Greeter()], codec="msgpack") as ch:
            name = "n" * 3_000_000
            reply = await ch.stub(Greeter).say_hello(HelloRequest(name))
            assert reply.message == f"Hello, {name}!"

    run(main())


class _Tag(ServerInterceptor):
    async def intercept(self, call_next: UnaryNext, request: Any, ctx: Context) -> Any:
        ctx.response_headers["x-tag"] = ctx.request_headers.get("x-in", "")
        return await call_next(request, ctx)


def test_a_configured_server_and_channel_options(run: Run) -> None:
    async def main() -> None:
        server = Server([Greeter()], interceptors=[_Tag()])
        async with ChannelFor(server, headers={"x-in": "42"}) as ch:
            md = ResponseMetadata()
            await ch.stub(Greeter).say_hello(HelloRequest("i"), metadata=md)
            assert md.headers["x-tag"] == "42"

    run(main())


def test_after_exit_the_listener_is_gone(run: Run) -> None:
    async def main() -> None:
        kit = ChannelFor([Greeter()])
        async with kit:
            pass
        async with Channel(kit.target, connect_timeout=1.0) as ch:
            with pytest.raises(RpcError) as info:
                await ch.stub(Greeter).say_hello(HelloRequest("late"))
            assert info.value.code is Code.UNAVAILABLE
            assert "no in-memory listener" in info.value.message

    run(main())


# -- the in-memory transport ----------------------------------------------------------------
class _Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.transport: Any = None
        self.lost = asyncio.get_running_loop().create_future()
        self.paused = 0
        self.resumed = 0
        self.got = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.got.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1


async def _pair() -> tuple[_Recorder, _Recorder, MemoryListener]:
    servers: list[_Recorder] = []

    def factory() -> _Recorder:
        servers.append(_Recorder())
        return servers[-1]

    listener = listen_memory(factory)
    _, client = await create_connection(_Recorder, listener.host, listener.port)
    return client, servers[0], listener


def test_memory_transport_order_backpressure_and_close(run: Run) -> None:
    async def main() -> None:
        client, server, listener = await _pair()
        try:
            client.transport.write(b"one ")
            client.transport.write(b"two")
            assert server.data == b""  # delivered later, as by a socket
            await server.got.wait()
            assert server.data == b"one two"

            # The server stops reading: the client's writes queue until it is paused.
            server.transport.pause_reading()
            chunk = b"x" * 65536
            for _ in range(8):
                client.transport.write(chunk)
            assert client.paused == 1 and client.transport.get_write_buffer_size() > 0
            server.got.clear()
            server.transport.resume_reading()
            await server.got.wait()
            assert client.resumed == 1 and client.transport.get_write_buffer_size() == 0
            assert len(server.data) == 7 + 8 * 65536

            # close() delivers what was written before it, then the peer hears the end.
            client.transport.write(b"last")
            client.transport.close()
            assert await server.lost is None
            assert server.data.endswith(b"last")
            assert await client.lost is None
        finally:
            listener.close()

    run(main())


def test_memory_transport_abort_drops_unread_bytes(run: Run) -> None:
    async def main() -> None:
        client, server, listener = await _pair()
        listener.close()
        server.transport.pause_reading()
        client.transport.write(b"never read")
        client.transport.abort()
        assert await server.lost is None
        assert server.data == b""
        # A closed listener refuses new connections.
        with pytest.raises(ConnectionRefusedError):
            await create_connection(_Recorder, listener.host, listener.port)

    run(main())


# -- make_context -------------------------------------------------------------------------
def test_make_context_calls_a_handler_directly(run: Run) -> None:
    greeter = Greeter()
    ctx = make_context(greeter.say_hello, headers={"X-Trace": "t1"}, timeout=5.0)
    assert ctx.method.path == "/demo.v1.Greeter/SayHello"
    assert ctx.request_headers == {"x-trace": "t1"}
    remaining = ctx.time_remaining()
    assert remaining is not None and 4.0 < remaining <= 5.0
    assert not ctx.cancelled()
    reply = run(greeter.say_hello(HelloRequest("direct"), ctx))
    assert reply == HelloReply("Hello, direct!")
    assert ctx.response_headers == {"x-greeter": "h2mesh"}

    other = make_context(Greeter, "count", peer=("10.0.0.7", 4242))
    assert other.peer == ("10.0.0.7", 4242) and other.time_remaining() is None
    cert = {"subject": ((("commonName", "client-1"),),)}
    assert make_context(greeter.say_hello, peer_certificate=cert).peer_subject == "CN=client-1"


def test_make_context_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="has no RPC method 'nope'; it has chat, count"):
        make_context(Greeter, "nope")
    with pytest.raises(TypeError, match="bound handler"):
        make_context(print)


# -- the pytest plugin -----------------------------------------------------------------------
@pytest.fixture
def h2mesh_services() -> list[Greeter]:
    return [Greeter()]


def test_the_server_fixture_serves_on_a_free_port(run: Run, h2mesh_server: ServerThread) -> None:
    assert h2mesh_server.port > 0 and h2mesh_server.url.startswith("http://127.0.0.1:")

    async def main() -> None:
        async with Channel(h2mesh_server.url) as ch:
            assert (await ch.stub(Greeter).say_hello(HelloRequest("p"))).message == "Hello, p!"

    run(main())


def test_the_registry_fixture_is_what_registry_urls_use(
    run: Run, h2mesh_registry: Registry
) -> None:
    async def main() -> None:
        async with Server([Greeter()], register="demo.v1.Greeter") as server:
            await server.start("127.0.0.1", 0)
            endpoints, _ = h2mesh_registry.lookup("demo.v1.Greeter")
            assert [ep.port for ep in endpoints] == [server.port]
            async with Channel("registry://demo.v1.Greeter") as ch:
                reply = await ch.stub(Greeter).say_hello(HelloRequest("r"))
                assert reply.message == "Hello, r!"

    run(main())

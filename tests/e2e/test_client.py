"""h2mesh's own client (``Channel``, stubs, ``SyncChannel``) against a live server.

The server runs on uvloop and on plain asyncio, in its own thread; the client runs on
the test's loop, of the same kind.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from examples.greeter import CountRequest, Greeter, HelloReply, HelloRequest, Msg, Num, Sum, Tick

from h2mesh import Channel, Code, Context, ResponseMetadata, RpcError, Service, SyncChannel, rpc

if TYPE_CHECKING:
    from tests.conftest import LiveServer

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class Empty(msgspec.Struct):
    pass


class Key(msgspec.Struct):
    name: str


class Value(msgspec.Struct):
    value: str | None


class Nap(msgspec.Struct):
    seconds: float


class Remaining(msgspec.Struct):
    seconds: float | None


class Relayed(msgspec.Struct):
    outer: float | None
    inner: float | None


class Probe(Service, name="test.v1.Probe"):
    """Reports what a handler sees: headers, deadlines, cancellation."""

    def __init__(self) -> None:
        self.target = ""  # the server's own URL, for calls from one handler to another
        self.watch_stopped = threading.Event()
        self.watch_saw_cancel: bool | None = None

    @rpc
    async def echo_header(self, req: Key, ctx: Context) -> Value:
        ctx.response_headers["x-probe"] = "yes"
        ctx.response_trailers["x-probe-trailer"] = "done"
        return Value(ctx.request_headers.get(req.name))

    @rpc
    async def nap(self, req: Nap) -> Empty:
        await asyncio.sleep(req.seconds)
        return Empty()

    @rpc
    async def remaining(self, req: Empty, ctx: Context) -> Remaining:
        return Remaining(ctx.time_remaining())

    @rpc
    async def relay(self, req: Empty, ctx: Context) -> Relayed:
        outer = ctx.time_remaining()
        async with Channel(self.target, codec="json") as ch:
            inner = await ch.stub(Probe).remaining(Empty())
        return Relayed(outer, inner.seconds)

    @rpc
    async def watch(self, req: Empty, ctx: Context) -> AsyncIterator[Tick]:
        completed = False
        try:
            for n in range(1, 2001):
                await asyncio.sleep(0.005)
                yield Tick(n)
            completed = True
        finally:
            if not completed:
                self.watch_saw_cancel = ctx.cancelled()
                self.watch_stopped.set()


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def server_services(probe: Probe) -> list[Service]:
    return [Greeter(), probe]


CODECS = pytest.mark.parametrize("codec", ["json", "msgpack"])


async def _numbers(n: int) -> AsyncIterator[Num]:
    for i in range(1, n + 1):
        yield Num(i)


async def _messages(*texts: str) -> AsyncIterator[Msg]:
    for text in texts:
        await asyncio.sleep(0)
        yield Msg(text)


# -- the four call kinds --------------------------------------------------------------------
@CODECS
def test_all_call_kinds(run: Run, server_url: str, codec: str) -> None:
    async def main() -> None:
        async with Channel(server_url, codec=codec) as ch:
            g = ch.stub(Greeter)
            reply = await g.say_hello(HelloRequest("chan"))
            assert reply == HelloReply("Hello, chan!")
            ticks = [t async for t in g.count(CountRequest(to=5))]
            assert ticks == [Tick(n) for n in range(1, 6)]
            assert await g.total(_numbers(10)) == Sum(total=55, count=10)
            echoes = [m.text async for m in g.chat(_messages("a", "b", "c"))]
            assert echoes == ["echo: a", "echo: b", "echo: c"]
            # Empty streams both ways.
            assert [t async for t in g.count(CountRequest(to=0))] == []
            assert await g.total(_numbers(0)) == Sum(total=0, count=0)

    run(main())


@CODECS
def test_errors(run: Run, server_url: str, codec: str) -> None:
    async def main() -> None:
        async with Channel(server_url, codec=codec) as ch:
            g = ch.stub(Greeter)
            with pytest.raises(RpcError) as info:
                await g.say_hello(HelloRequest(""))
            assert info.value.code is Code.INVALID_ARGUMENT
            assert info.value.message == "name must not be empty"
            # The channel is still good after an error.
            assert (await g.say_hello(HelloRequest("ok"))).message == "Hello, ok!"

    run(main())


def test_get_for_idempotent_methods(run: Run, server_url: str) -> None:
    async def main() -> None:
        async with Channel(server_url, codec="json", use_get=True) as ch:
            g = ch.stub(Greeter)
            assert (await g.say_hello(HelloRequest("get"))).message == "Hello, get!"
            # Non-idempotent methods still POST.
            assert [t.n async for t in g.count(CountRequest(to=2))] == [1, 2]

    run(main())


def test_unavailable_when_nothing_listens(run: Run, live_server: LiveServer) -> None:
    url = live_server.url
    live_server.stop()

    async def main() -> None:
        async with Channel(url, connect_timeout=2.0) as ch:
            with pytest.raises(RpcError) as info:
                await ch.stub(Greeter).say_hello(HelloRequest("x"))
            assert info.value.code is Code.UNAVAILABLE

    run(main())


# -- metadata -------------------------------------------------------------------------------
@CODECS
def test_headers_in_and_out(run: Run, server_url: str, codec: str) -> None:
    async def main() -> None:
        async with Channel(server_url, codec=codec, headers={"x-tenant": "acme"}) as ch:
            p = ch.stub(Probe)
            md = ResponseMetadata()
            got = await p.echo_header(Key("x-token"), headers={"x-token": "s3cret"}, metadata=md)
            assert got.value == "s3cret"
            assert md.headers["x-probe"] == "yes"
            assert md.trailers["x-probe-trailer"] == "done"
            # The channel's default headers go out on every call.
            assert (await p.echo_header(Key("x-tenant"))).value == "acme"
            assert (await p.echo_header(Key("x-missing"))).value is None

            md = ResponseMetadata()
            await ch.stub(Greeter).say_hello(HelloRequest("m"), metadata=md)
            assert md.headers["x-greeter"] == "h2mesh"

    run(main())


# -- deadlines ------------------------------------------------------------------------------
def test_timeout_unary(run: Run, server_url: str) -> None:
    async def main() -> None:
        async with Channel(server_url) as ch:
            p = ch.stub(Probe)
            started = time.monotonic()
            with pytest.raises(RpcError) as info:
                await p.nap(Nap(5.0), timeout=0.1)
            assert info.value.code is Code.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 2.0
            await p.nap(Nap(0.0), timeout=2.0)

    run(main())


def test_timeout_stream(run: Run, server_url: str) -> None:
    async def main() -> None:
        async with Channel(server_url, timeout=0.15) as ch:  # a channel-wide default
            got: list[int] = []
            with pytest.raises(RpcError) as info:
                async for t in ch.stub(Greeter).count(CountRequest(to=50, delay=0.03)):
                    got.append(t.n)  # noqa: PERF401 - keeps what came before the error
            assert info.value.code is Code.DEADLINE_EXCEEDED
            assert 0 < len(got) < 50
            assert got == list(range(1, len(got) + 1))

    run(main())


def test_server_sees_the_deadline(run: Run, server_url: str) -> None:
    async def main() -> None:
        async with Channel(server_url) as ch:
            p = ch.stub(Probe)
            assert (await p.remaining(Empty())).seconds is None
            seen = (await p.remaining(Empty(), timeout=3.0)).seconds
            assert seen is not None and 2.0 < seen <= 3.0

    run(main())


def test_deadline_propagates_to_nested_calls(run: Run, server_url: str, probe: Probe) -> None:
    probe.target = server_url

    async def main() -> None:
        async with Channel(server_url) as ch:
            p = ch.stub(Probe)
            r = await p.relay(Empty(), timeout=2.0)
            assert r.outer is not None and r.inner is not None
            assert 0 < r.inner <= r.outer <= 2.0
            # No deadline in, none passed on.
            r = await p.relay(Empty())
            assert r.outer is None and r.inner is None

    run(main())


# -- cancellation ---------------------------------------------------------------------------
def test_cancel_mid_stream_reaches_the_handler(run: Run, server_url: str, probe: Probe) -> None:
    async def main() -> None:
        async with Channel(server_url) as ch:
            p = ch.stub(Probe)
            first = asyncio.Event()
            got: list[int] = []

            async def consume() -> None:
                async for t in p.watch(Empty()):
                    got.append(t.n)
                    if len(got) == 3:
                        first.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(first.wait(), 5.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.to_thread(probe.watch_stopped.wait, 5.0)
            assert probe.watch_saw_cancel is True
            assert len(got) < 2000
            # The connection serves new calls after the reset.
            assert (await ch.stub(Greeter).say_hello(HelloRequest("x"))).message == "Hello, x!"

    run(main())


# -- connection management ------------------------------------------------------------------
def test_reconnect_after_server_restart(run: Run, live_server: LiveServer) -> None:
    port = live_server.port

    async def main() -> None:
        async with Channel(live_server.url, connect_timeout=2.0) as ch:
            g = ch.stub(Greeter)
            assert (await g.say_hello(HelloRequest("one"))).message == "Hello, one!"
            await asyncio.to_thread(live_server.stop)
            with pytest.raises(RpcError) as info:
                await g.say_hello(HelloRequest("down"))
            assert info.value.code is Code.UNAVAILABLE
            await asyncio.to_thread(live_server.start, port)
            assert live_server.port == port
            assert (await g.say_hello(HelloRequest("two"))).message == "Hello, two!"
            await asyncio.to_thread(live_server.restart)
            assert (await g.say_hello(HelloRequest("three"))).message == "Hello, three!"

    run(main())


def test_many_concurrent_calls_share_one_connection(run: Run, live_server: LiveServer) -> None:
    async def main() -> None:
        async with Channel(live_server.url) as ch:
            g = ch.stub(Greeter)
            replies = await asyncio.gather(
                *(g.say_hello(HelloRequest(f"c{i}")) for i in range(1000))
            )
            assert [r.message for r in replies] == [f"Hello, c{i}!" for i in range(1000)]
            assert await asyncio.to_thread(live_server.connection_count) == 1

    run(main())


# -- the synchronous facade -----------------------------------------------------------------
def test_sync_channel(server_url: str) -> None:
    with SyncChannel(server_url, codec="json") as ch:
        g = ch.stub(Greeter)
        assert g.say_hello(HelloRequest("sync")) == HelloReply("Hello, sync!")
        assert [t.n for t in g.count(CountRequest(to=4))] == [1, 2, 3, 4]
        assert g.total([Num(2), Num(3)]) == Sum(total=5, count=2)
        assert [m.text for m in g.chat([Msg("x")])] == ["echo: x"]
        with pytest.raises(RpcError) as info:
            g.say_hello(HelloRequest(""))
        assert info.value.code is Code.INVALID_ARGUMENT
        md = ResponseMetadata()
        got = ch.stub(Probe).echo_header(Key("x-k"), headers={"x-k": "v"}, metadata=md)
        assert got.value == "v" and md.headers["x-probe"] == "yes"


def test_request_iterator_error_reaches_the_caller(
    run: Callable[..., Any], server_url: str
) -> None:
    """An exception in the caller's request iterator surfaces as itself, not as a reset."""

    class Boom(Exception):
        pass

    async def failing() -> AsyncIterator[Num]:
        yield Num(value=1)
        await asyncio.sleep(0.05)
        raise Boom("bad input source")

    async def main() -> None:
        async with Channel(server_url) as ch:
            with pytest.raises(Boom, match="bad input source"):
                await ch.stub(Greeter).total(failing())
            # The channel is still usable afterwards.
            assert (await ch.stub(Greeter).total(_numbers(2))).count == 2

    run(main())

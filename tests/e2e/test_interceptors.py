"""Server interceptors around all four call kinds, through the in-memory channel (the
same server, HTTP/2 engine and protocols as over a socket)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from examples.greeter import CountRequest, Greeter, HelloRequest, Msg, Num

from h2mesh import (
    Channel,
    Code,
    Context,
    RpcError,
    Server,
    ServerInterceptor,
    StreamNext,
    UnaryNext,
)
from h2mesh.testing import ChannelFor

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class Recorder(ServerInterceptor):
    """Records the order of interceptor entries and which methods they saw."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def intercept(self, call_next: UnaryNext, request: Any, ctx: Context) -> Any:
        self.log.append(f"{self.name}>{ctx.method.name}")
        result = await call_next(request, ctx)
        self.log.append(f"{self.name}<{ctx.method.name}")
        return result

    async def intercept_stream(  # type: ignore[override]
        self, call_next: StreamNext, request: Any, ctx: Context
    ) -> AsyncIterator[Any]:
        self.log.append(f"{self.name}>{ctx.method.name}")
        async for item in call_next(request, ctx):
            yield item
        self.log.append(f"{self.name}<{ctx.method.name}")


class Auth(ServerInterceptor):
    """Rejects calls without the right bearer token, for every kind of method."""

    def _check(self, ctx: Context) -> None:
        if ctx.request_headers.get("authorization") != "Bearer s3cret":
            raise RpcError(Code.UNAUTHENTICATED, "missing or bad token")

    async def intercept(self, call_next: UnaryNext, request: Any, ctx: Context) -> Any:
        self._check(ctx)
        return await call_next(request, ctx)

    async def intercept_stream(  # type: ignore[override]
        self, call_next: StreamNext, request: Any, ctx: Context
    ) -> AsyncIterator[Any]:
        self._check(ctx)
        async for item in call_next(request, ctx):
            yield item


async def _nums() -> AsyncIterator[Num]:
    for value in (1, 2, 3):
        yield Num(value=value)


async def _msgs() -> AsyncIterator[Msg]:
    yield Msg(text="a")


def test_interceptors_wrap_every_kind_in_order(run: Run) -> None:
    log: list[str] = []

    async def main() -> None:
        server = Server([Greeter()], interceptors=[Recorder("outer", log), Recorder("inner", log)])
        async with ChannelFor(server) as ch:
            g = ch.stub(Greeter)
            await g.say_hello(HelloRequest(name="x"))
            assert [t.n async for t in g.count(CountRequest(to=2))] == [1, 2]
            assert (await g.total(_nums())).total == 6
            assert [m.text async for m in g.chat(_msgs())] == ["echo: a"]

    run(main())
    assert log == [
        "outer>SayHello", "inner>SayHello", "inner<SayHello", "outer<SayHello",
        "outer>Count", "inner>Count", "inner<Count", "outer<Count",
        "outer>Total", "inner>Total", "inner<Total", "outer<Total",
        "outer>Chat", "inner>Chat", "inner<Chat", "outer<Chat",
    ]  # fmt: skip


@pytest.mark.parametrize("token", [None, "Bearer wrong"])
def test_auth_interceptor_rejects_unary_and_streams(run: Run, token: str | None) -> None:
    async def main() -> None:
        headers = {"authorization": token} if token else None
        kit = ChannelFor(Server([Greeter()], interceptors=[Auth()]), headers=headers)
        async with kit as ch:
            g = ch.stub(Greeter)
            with pytest.raises(RpcError) as unary:
                await g.say_hello(HelloRequest(name="x"))
            assert unary.value.code is Code.UNAUTHENTICATED
            with pytest.raises(RpcError) as stream:
                async for _ in g.count(CountRequest(to=2)):
                    pass
            assert stream.value.code is Code.UNAUTHENTICATED
            assert stream.value.message == "missing or bad token"
            async with Channel(kit.target, headers={"authorization": "Bearer s3cret"}) as good:
                reply = await good.stub(Greeter).say_hello(HelloRequest(name="ok"))
                assert reply.message == "Hello, ok!"

    run(main())

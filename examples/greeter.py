"""A small service showing all four call kinds; used by the README demo and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec

from h2mesh import Code, Context, RpcError, Service, rpc


class HelloRequest(msgspec.Struct):
    name: str


class HelloReply(msgspec.Struct):
    message: str


class CountRequest(msgspec.Struct):
    to: int
    delay: float = 0.0


class Tick(msgspec.Struct):
    n: int


class Num(msgspec.Struct):
    value: int


class Sum(msgspec.Struct):
    total: int
    count: int


class Msg(msgspec.Struct):
    text: str


class Greeter(Service, name="demo.v1.Greeter"):
    """Greets, counts, sums and echoes."""

    @rpc(idempotent=True)
    async def say_hello(self, req: HelloRequest, ctx: Context) -> HelloReply:
        if not req.name:
            raise RpcError(Code.INVALID_ARGUMENT, "name must not be empty")
        ctx.response_headers["x-greeter"] = "h2mesh"
        return HelloReply(message=f"Hello, {req.name}!")

    @rpc
    async def count(self, req: CountRequest, ctx: Context) -> AsyncIterator[Tick]:
        for n in range(1, req.to + 1):
            if req.delay:
                await asyncio.sleep(req.delay)
            yield Tick(n=n)

    @rpc
    async def total(self, reqs: AsyncIterator[Num]) -> Sum:
        total = count = 0
        async for num in reqs:
            total += num.value
            count += 1
        return Sum(total=total, count=count)

    @rpc
    async def chat(self, reqs: AsyncIterator[Msg], ctx: Context) -> AsyncIterator[Msg]:
        async for msg in reqs:
            yield Msg(text=f"echo: {msg.text}")

"""Calls every method of the demo Greeter: ``python examples/client.py http://127.0.0.1:8080``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import h2mesh
from examples.greeter import (
    CountRequest,
    Greeter,
    HelloRequest,
    Msg,
    Num,
)


async def main(url: str) -> None:
    async with h2mesh.Channel(url) as channel:
        greeter = channel.stub(Greeter)

        md = h2mesh.ResponseMetadata()
        reply = await greeter.say_hello(HelloRequest(name="h2mesh"), timeout=2.0, metadata=md)
        print(f"unary        say_hello -> {reply.message!r} (x-greeter: {md.headers['x-greeter']})")

        ticks = [tick.n async for tick in greeter.count(CountRequest(to=5))]
        print(f"server->     count     -> {ticks}")

        async def numbers() -> AsyncIterator[Num]:
            for value in (1, 2, 3, 4):
                yield Num(value=value)

        total = await greeter.total(numbers())
        print(f"client->     total     -> {total.total} from {total.count} messages")

        async def lines() -> AsyncIterator[Msg]:
            for text in ("ping", "pong"):
                yield Msg(text=text)

        echoes = [msg.text async for msg in greeter.chat(lines())]
        print(f"bidi         chat      -> {echoes}")

        try:
            await greeter.say_hello(HelloRequest(name=""))
        except h2mesh.RpcError as exc:
            print(f"error        say_hello -> {exc.code.name}: {exc.message}")


if __name__ == "__main__":
    h2mesh.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"))

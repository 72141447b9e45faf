"""grpcio client -> h2mesh server: cancellation and deadlines reach the handler.

The service is Python-first (msgspec Structs); grpcio calls it with raw protobuf bytes
(``Tick.n`` is field 1, a varint), so no generated code is needed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import msgspec
import pytest

from h2mesh import Context, Service, rpc


class Tick(msgspec.Struct):
    n: int


class Watch(Service, name="test.v1.Watch"):
    """Streams ticks slowly and records how its handler ended."""

    def __init__(self) -> None:
        self.progress = 0
        self.cancelled = threading.Event()
        self.finished = threading.Event()  # the handler returned or raised
        self.deadline: float | None = None

    @rpc
    async def ticks(self, req: Tick, ctx: Context) -> AsyncIterator[Tick]:
        self.deadline = ctx.time_remaining()
        try:
            for i in range(req.n):
                self.progress += 1
                yield Tick(n=i)
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.finished.set()


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def server_services(watch: Watch) -> list[Service]:
    return [watch]


@pytest.fixture
def ticks(server_url: str) -> Iterator[Any]:
    with grpc.insecure_channel(server_url.removeprefix("http://")) as channel:
        yield channel.unary_stream(
            "/test.v1.Watch/Ticks",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )


def _request(n: int) -> bytes:
    assert n < 128
    return bytes([0x08, n])  # field 1, varint


def _stops(watch: Watch) -> bool:
    """True once the handler has returned: it can make no more progress after that."""
    return watch.finished.wait(2.0)


def test_cancel_reaches_the_handler(watch: Watch, ticks: Any) -> None:
    call = ticks(_request(100), timeout=10)
    assert next(call) == b""  # Tick(n=0): the default value is not on the wire
    assert next(call) == bytes([0x08, 1])
    call.cancel()
    assert watch.cancelled.wait(2.0), "the handler never saw the cancellation"
    assert _stops(watch)
    assert watch.progress < 10


def test_deadline_stops_the_handler(watch: Watch, ticks: Any) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        list(ticks(_request(100), timeout=0.3))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2.0
    assert watch.deadline is not None and 0 < watch.deadline <= 0.3
    assert watch.cancelled.wait(2.0), "the handler kept running past the deadline"
    assert _stops(watch)
    assert watch.progress < 20

"""OpenTelemetry tracing over real sockets, recorded by the SDK's in-memory exporter.

A client calls ``Front``, whose handler calls ``Back`` with the deadline it inherited:
one trace, four spans, each the parent of the next, over Connect, gRPC and gRPC-Web.
Client interceptors see all four call kinds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from h2mesh import Channel, Code, Context, RpcError, Server, Service, rpc
from h2mesh.client import ClientCall, ClientInterceptor

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class Msg(msgspec.Struct):
    text: str = ""
    remaining: float | None = None


class Back(Service, name="trace.v1.Back"):
    @rpc
    async def echo(self, req: Msg, ctx: Context) -> Msg:
        if req.text == "fail":
            raise RpcError(Code.NOT_FOUND, "no such thing")
        return Msg(text=req.text, remaining=ctx.time_remaining())


class Front(Service, name="trace.v1.Front"):
    def __init__(self) -> None:
        self.channel: Channel | None = None

    @rpc
    async def relay(self, req: Msg) -> Msg:
        assert self.channel is not None
        return await self.channel.stub(Back).echo(req)  # no timeout: the caller's deadline


@pytest.fixture
def tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.mark.parametrize("protocol", ["connect", "grpc", "grpc-web"])
def test_nested_call_is_one_trace(
    run: Run, tracing: tuple[TracerProvider, InMemorySpanExporter], protocol: str
) -> None:
    provider, exporter = tracing

    async def main() -> Msg:
        front = Front()
        async with (
            Server([Back()], tracer_provider=provider) as back_server,
            Server([front], tracer_provider=provider) as front_server,
        ):
            front.channel = Channel(
                f"http://127.0.0.1:{back_server.port}",
                protocol=protocol,
                codec="json",
                tracer_provider=provider,
            )
            async with (
                front.channel,
                Channel(
                    f"http://127.0.0.1:{front_server.port}",
                    protocol=protocol,
                    codec="json",
                    tracer_provider=provider,
                ) as ch,
            ):
                return await ch.stub(Front).relay(Msg(text="hi"), timeout=5.0)

    reply = run(main())
    assert reply.text == "hi"
    assert reply.remaining is not None and 0 < reply.remaining <= 5.0  # deadline propagated
    spans = exporter.get_finished_spans()
    by_name = {(s.name, s.kind): s for s in spans}
    assert len(spans) == 4, [(s.name, s.kind) for s in spans]
    outer = by_name[("trace.v1.Front/Relay", SpanKind.CLIENT)]
    front_span = by_name[("trace.v1.Front/Relay", SpanKind.SERVER)]
    inner = by_name[("trace.v1.Back/Echo", SpanKind.CLIENT)]
    back_span = by_name[("trace.v1.Back/Echo", SpanKind.SERVER)]
    assert {s.context.trace_id for s in spans} == {outer.context.trace_id}
    assert outer.parent is None
    assert front_span.parent is not None and front_span.parent.span_id == outer.context.span_id
    assert inner.parent is not None and inner.parent.span_id == front_span.context.span_id
    assert back_span.parent is not None and back_span.parent.span_id == inner.context.span_id
    system = "connect_rpc" if protocol == "connect" else "grpc"
    for span in spans:
        assert span.attributes is not None
        assert span.attributes["rpc.system"] == system
        assert span.attributes["rpc.response.status_code"] == "OK"
    assert back_span.attributes is not None
    assert back_span.attributes["rpc.service"] == "trace.v1.Back"
    assert back_span.attributes["rpc.method"] == "Echo"


def test_failed_call_marks_both_spans(
    run: Run, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing

    async def main() -> None:
        async with (
            Server([Back()], tracer_provider=provider) as server,
            Channel(f"http://127.0.0.1:{server.port}", tracer_provider=provider) as ch,
        ):
            with pytest.raises(RpcError):
                await ch.stub(Back).echo(Msg(text="fail"), timeout=5.0)

    run(main())
    spans = exporter.get_finished_spans()
    assert sorted(s.kind.name for s in spans) == ["CLIENT", "SERVER"]
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["rpc.response.status_code"] == "NOT_FOUND"


def test_no_sdk_means_no_tracing() -> None:
    # Without a provider given or configured globally, nothing is wrapped.
    server = Server([Back()])
    assert server.observer is None
    channel = Channel("http://127.0.0.1:1")
    assert type(channel._flow).__name__ == "CallFlow"


# -- client interceptors ---------------------------------------------------------------------
class Kinds(Service, name="trace.v1.Kinds"):
    @rpc
    async def unary(self, req: Msg, ctx: Context) -> Msg:
        return Msg(text=ctx.request_headers.get("x-seen", ""))

    @rpc
    async def server_stream(self, req: Msg, ctx: Context) -> AsyncIterator[Msg]:
        for _ in range(2):
            yield Msg(text=ctx.request_headers.get("x-seen", ""))

    @rpc
    async def client_stream(self, reqs: AsyncIterator[Msg], ctx: Context) -> Msg:
        texts = [r.text async for r in reqs]
        return Msg(text=ctx.request_headers.get("x-seen", "") + ":" + ",".join(texts))

    @rpc
    async def bidi(self, reqs: AsyncIterator[Msg], ctx: Context) -> AsyncIterator[Msg]:
        async for r in reqs:
            yield Msg(text=ctx.request_headers.get("x-seen", "") + ":" + r.text)


class Recorder(ClientInterceptor):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def intercept_unary(self, call_next: Any, request: Any, call: ClientCall) -> Any:
        self.log.append(f"{self.name} {call.method.kind.value} {call.method.path}")
        call.headers["x-seen"] = call.headers.get("x-seen", "") + self.name
        return await call_next(request, call)

    async def intercept_stream(
        self, call_next: Any, request: Any, call: ClientCall
    ) -> AsyncIterator[Any]:
        self.log.append(f"{self.name} {call.method.kind.value} {call.method.path}")
        call.headers["x-seen"] = call.headers.get("x-seen", "") + self.name
        async for message in call_next(request, call):
            yield message


def test_client_interceptors_see_all_four_kinds(run: Run) -> None:
    log: list[str] = []

    async def requests() -> AsyncIterator[Msg]:
        for text in ("a", "b"):
            yield Msg(text=text)

    async def main() -> list[str]:
        interceptors = [Recorder("1", log), Recorder("2", log)]
        async with (
            Server([Kinds()]) as server,
            Channel(f"http://127.0.0.1:{server.port}", interceptors=interceptors) as ch,
        ):
            stub = ch.stub(Kinds)
            out = [(await stub.unary(Msg(), timeout=5)).text]
            out += [m.text async for m in stub.server_stream(Msg(), timeout=5)]
            out.append((await stub.client_stream(requests(), timeout=5)).text)
            out += [m.text async for m in stub.bidi(requests(), timeout=5)]
            return out

    assert run(main()) == ["12", "12", "12", "12:a,b", "12:a", "12:b"]
    kinds = ["unary", "server_stream", "client_stream", "bidi_stream"]
    paths = ["Unary", "ServerStream", "ClientStream", "Bidi"]
    assert log == [
        f"{n} {kind} /trace.v1.Kinds/{path}"
        for kind, path in zip(kinds, paths, strict=True)
        for n in "12"
    ]

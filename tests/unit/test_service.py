"""The service model: what ``@rpc`` methods and their type hints turn into."""

from __future__ import annotations

import typing
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator

import msgspec
import pytest

from h2mesh import Context, MethodDescriptor, MethodKind, Service, rpc
from h2mesh.codec import JSON, MSGPACK
from h2mesh.service import service_methods


class Req(msgspec.Struct):
    name: str


class Resp(msgspec.Struct):
    text: str


class Kinds(Service, name="test.v1.Kinds"):
    @rpc(idempotent=True)
    async def say_hello(self, req: Req, ctx: Context) -> Resp:
        return Resp(text=req.name)

    @rpc
    async def count_up(self, req: Req, ctx: Context) -> AsyncIterator[Resp]:
        yield Resp(text=req.name)

    @rpc
    async def total(self, reqs: AsyncIterator[Req], ctx: Context) -> Resp:
        return Resp(text="".join([r.name async for r in reqs]))

    @rpc
    async def chat(self, reqs: AsyncIterator[Req], ctx: Context) -> AsyncIterator[Resp]:
        async for r in reqs:
            yield Resp(text=r.name)


def test_kinds_from_annotations() -> None:
    methods = service_methods(Kinds)
    assert {n: m.kind for n, m in methods.items()} == {
        "say_hello": MethodKind.UNARY,
        "count_up": MethodKind.SERVER_STREAM,
        "total": MethodKind.CLIENT_STREAM,
        "chat": MethodKind.BIDI_STREAM,
    }
    for m in methods.values():
        assert m.request_type is Req
        assert m.response_type is Resp
        assert m.takes_context is True
        assert m.service_name == "test.v1.Kinds"
        assert m.python_name in methods


def test_kind_stream_predicates() -> None:
    assert not MethodKind.UNARY.client_streams and not MethodKind.UNARY.server_streams
    assert MethodKind.SERVER_STREAM.server_streams and not MethodKind.SERVER_STREAM.client_streams
    assert MethodKind.CLIENT_STREAM.client_streams and not MethodKind.CLIENT_STREAM.server_streams
    assert MethodKind.BIDI_STREAM.client_streams and MethodKind.BIDI_STREAM.server_streams


def test_pascal_case_names_and_paths() -> None:
    methods = service_methods(Kinds())
    assert methods["say_hello"].name == "SayHello"
    assert methods["count_up"].name == "CountUp"
    assert methods["total"].name == "Total"
    assert methods["say_hello"].path == "/test.v1.Kinds/SayHello"
    assert Kinds.__service_name__ == "test.v1.Kinds"
    assert repr(methods["chat"]) == "<MethodDescriptor /test.v1.Kinds/Chat bidi_stream>"


def test_name_override_and_idempotent() -> None:
    class Named(Service, name="t.Named"):
        @rpc(name="Unary")
        async def do_it(self, req: Req) -> Resp:
            return Resp(text="")

        @rpc
        async def _private_thing_(self, req: Req) -> Resp:
            return Resp(text="")

    m = Named.__methods__
    assert m["do_it"].name == "Unary"
    assert m["do_it"].path == "/t.Named/Unary"
    assert m["do_it"].idempotent is False
    assert m["_private_thing_"].name == "PrivateThing"
    assert Kinds.__methods__["say_hello"].idempotent is True
    assert Kinds.__methods__["chat"].idempotent is False


def test_default_service_name_is_qualname() -> None:
    class Plain(Service):
        @rpc
        async def ping(self, req: Req) -> Resp:
            return Resp(text="")

    assert Plain.__service_name__ == Plain.__qualname__
    assert Plain.__methods__["ping"].path == f"/{Plain.__qualname__}/Ping"


def test_context_is_optional() -> None:
    class NoCtx(Service, name="t.NoCtx"):
        @rpc
        async def bare(self, req: Req) -> Resp:
            return Resp(text="")

        @rpc
        async def with_ctx(self, req: Req, ctx: Context) -> Resp:
            return Resp(text="")

        @rpc
        async def stream_bare(self, reqs: AsyncIterator[Req]) -> AsyncIterator[Resp]:
            async for r in reqs:
                yield Resp(text=r.name)

    m = NoCtx.__methods__
    assert m["bare"].takes_context is False
    assert m["with_ctx"].takes_context is True
    assert m["stream_bare"].takes_context is False
    assert m["stream_bare"].kind is MethodKind.BIDI_STREAM


def test_plain_methods_are_not_rpcs() -> None:
    class Mixed(Service, name="t.Mixed"):
        def helper(self) -> int:
            return 1

        async def not_exposed(self, req: Req) -> Resp:
            return Resp(text="")

        @rpc
        async def exposed(self, req: Req) -> Resp:
            return Resp(text="")

    assert list(Mixed.__methods__) == ["exposed"]


def test_non_async_method_rejected() -> None:
    with pytest.raises(TypeError, match=r"t\.Sync\.sync_call must be 'async def'"):

        class Sync(Service, name="t.Sync"):
            @rpc
            def sync_call(self, req: Req) -> Resp:
                return Resp(text="")


def test_sync_generator_rejected() -> None:
    with pytest.raises(TypeError, match="must be 'async def'"):

        class Gen(Service, name="t.Gen"):
            @rpc
            def gen(self, req: Req) -> typing.Iterator[Resp]:
                yield Resp(text="")


@pytest.mark.parametrize("which", ["request", "return", "both"])
def test_missing_annotations_rejected(which: str) -> None:
    async def no_req(self, req, ctx: Context) -> Resp:  # type: ignore[no-untyped-def]
        return Resp(text="")

    async def no_ret(self, req: Req, ctx: Context):  # type: ignore[no-untyped-def]
        return Resp(text="")

    async def neither(self, req):  # type: ignore[no-untyped-def]
        return Resp(text="")

    func = {"request": no_req, "return": no_ret, "both": neither}[which]
    with pytest.raises(TypeError, match="needs annotations on its request and return"):
        type("Bad", (Service,), {"call": rpc(func)}, name="t.Bad")


@pytest.mark.parametrize("arity", [0, 3])
def test_wrong_arity_rejected(arity: int) -> None:
    async def none(self) -> Resp:  # type: ignore[no-untyped-def]
        return Resp(text="")

    async def three(self, req: Req, ctx: Context, extra: int) -> Resp:  # type: ignore[no-untyped-def]
        return Resp(text="")

    func = none if arity == 0 else three
    with pytest.raises(TypeError, match=r"must take \(self, request\[, ctx\]\)"):
        type("Bad", (Service,), {"call": rpc(func)}, name="t.Bad")


def test_duplicate_wire_names_rejected() -> None:
    with pytest.raises(TypeError, match="share the wire name 'Same'"):

        class Dup(Service, name="t.Dup"):
            @rpc(name="Same")
            async def one(self, req: Req) -> Resp:
                return Resp(text="")

            @rpc(name="Same")
            async def two(self, req: Req) -> Resp:
                return Resp(text="")


def test_pascal_collision_rejected() -> None:
    with pytest.raises(TypeError, match="share the wire name 'GetItem'"):

        class Dup(Service, name="t.Dup2"):
            @rpc
            async def get_item(self, req: Req) -> Resp:
                return Resp(text="")

            @rpc
            async def getItem(self, req: Req) -> Resp:
                return Resp(text="")


def test_subclass_inherits_rpc_methods() -> None:
    class Base(Service, name="t.Base"):
        @rpc
        async def ping(self, req: Req) -> Resp:
            return Resp(text="base")

        @rpc
        async def echo(self, req: Req) -> Resp:
            return Resp(text=req.name)

    class Child(Base, name="t.Child"):
        @rpc(idempotent=True)
        async def echo(self, req: Req) -> Resp:
            return Resp(text=req.name * 2)

        @rpc
        async def extra(self, req: Req, ctx: Context) -> AsyncIterator[Resp]:
            yield Resp(text="")

    m = Child.__methods__
    assert set(m) == {"ping", "echo", "extra"}
    assert m["ping"].path == "/t.Child/Ping"
    assert m["echo"].idempotent is True
    assert m["extra"].kind is MethodKind.SERVER_STREAM
    # The base class keeps its own descriptors.
    assert set(Base.__methods__) == {"ping", "echo"}
    assert Base.__methods__["ping"].path == "/t.Base/Ping"
    assert Base.__methods__["echo"].idempotent is False


def test_typing_stream_aliases_accepted() -> None:
    class Aliases(Service, name="t.Aliases"):
        @rpc
        async def a(self, reqs: AsyncIterable[Req]) -> AsyncGenerator[Resp, None]:
            async for r in reqs:
                yield Resp(text=r.name)

        @rpc
        async def b(self, req: Req) -> typing.AsyncIterable[Resp]:
            yield Resp(text="")

        @rpc
        async def c(self, reqs: typing.AsyncIterator[Req]) -> Resp:
            return Resp(text="")

        @rpc
        async def d(self, req: Req) -> typing.AsyncGenerator[Resp, None]:
            yield Resp(text="")

    m = Aliases.__methods__
    assert m["a"].kind is MethodKind.BIDI_STREAM
    assert m["b"].kind is MethodKind.SERVER_STREAM
    assert m["c"].kind is MethodKind.CLIENT_STREAM
    assert m["d"].kind is MethodKind.SERVER_STREAM
    for d in m.values():
        assert d.request_type is Req
        assert d.response_type is Resp


def test_forward_reference_annotations_resolved() -> None:
    class Forward(Service, name="t.Forward"):
        @rpc
        async def later(self, req: "LaterReq") -> "AsyncIterator[LaterResp]":  # noqa: UP037
            yield LaterResp(ok=True)

    desc = Forward.__methods__["later"]
    assert desc.request_type is LaterReq
    assert desc.response_type is LaterResp
    assert desc.kind is MethodKind.SERVER_STREAM


def test_unresolvable_annotation_rejected() -> None:
    with pytest.raises(TypeError, match=r"cannot resolve the type hints of t\.Missing\.call"):

        class Missing(Service, name="t.Missing"):
            @rpc
            async def call(self, req: "NoSuchType") -> Resp:  # type: ignore[name-defined]  # noqa: F821, UP037
                return Resp(text="")


def test_non_struct_message_types() -> None:
    class Loose(Service, name="t.Loose"):
        @rpc
        async def dicts(self, req: dict[str, int]) -> list[str]:
            return []

    desc = Loose.__methods__["dicts"]
    assert desc.request_type == dict[str, int]
    assert desc.response_type == list[str]
    assert desc.request_decoder(JSON)(b'{"a": 1}') == {"a": 1}


def test_decoders_are_cached_per_codec_and_direction() -> None:
    desc: MethodDescriptor = Kinds.__methods__["say_hello"]
    dec = desc.request_decoder(JSON)
    assert desc.request_decoder(JSON) is dec
    assert desc.request_decoder(MSGPACK) is not dec
    assert desc.response_decoder(JSON) is not dec
    assert desc.response_decoder(JSON) is desc.response_decoder(JSON)
    assert dec(b'{"name": "x"}') == Req(name="x")
    assert desc.response_decoder(MSGPACK)(MSGPACK.encode(Resp(text="y"))) == Resp(text="y")


def test_rpc_decorator_returns_the_function() -> None:
    async def f(self: object, req: Req) -> Resp:
        return Resp(text="")

    assert rpc(f) is f
    assert rpc(name="X")(f) is f


# Defined after the service that names them, to exercise forward references.
class LaterReq(msgspec.Struct):
    n: int


class LaterResp(msgspec.Struct):
    ok: bool

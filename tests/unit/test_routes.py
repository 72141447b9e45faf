"""Route templates (google.api.http syntax), the segment-trie matcher, and how a route
binds a request message from path, query and body (sans-IO, no sockets)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
import pytest

from h2mesh import Code, HttpRule, RpcError, Server, Service, rpc
from h2mesh.protocol._routes import RouteConflict, Router, TemplateError, parse_template
from h2mesh.protocol.rest import RestServer


def _router(*routes: tuple[str, str]) -> Router[str]:
    router: Router[str] = Router()
    for verb, text in routes:
        router.add(verb, parse_template(text), text, text)
    return router


def test_templates_parse_variables_nested_fields_and_verbs() -> None:
    t = parse_template("/v1/{name=shelves/*}/books/{book.id}:publish")
    assert t.segments == ["v1", "shelves", "*", "books", "*"]
    assert [(v.field, v.start, v.end) for v in t.variables] == [
        (("name",), 1, 3),
        (("book", "id"), 4, 5),
    ]
    assert t.verb == "publish"
    rest = parse_template("/files/{path=**}")
    assert rest.variables[0].end is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("v1/users", "must start with '/'"),
        ("/v1/{id", "unbalanced"),
        ("/v1/{a{b}}", "nested braces"),
        ("/v1/{id}/{id}", "bound twice"),
        ("/v1/{9x}", "not a field path"),
        ("/v1/**/x", "'**' may only be the last segment"),
        ("/v1//x", "not a valid path segment"),
        ("/v1/x{id}", "whole segment"),
    ],
)
def test_bad_templates_are_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(problem)):
        parse_template(text)


def test_matching_prefers_literals_and_binds_decoded_values() -> None:
    router = _router(
        ("GET", "/v1/users/{id}"),
        ("GET", "/v1/users/me"),
        ("GET", "/v1/{name=shelves/*}/books/{book.id}"),
        ("POST", "/v1/{name=books/*}:publish"),
        ("GET", "/files/{path=**}"),
    )
    hit = router.match("GET", "/v1/users/42")
    assert hit is not None and hit.target == "/v1/users/{id}" and hit.params == {("id",): "42"}
    hit = router.match("GET", "/v1/users/me")
    assert hit is not None and hit.target == "/v1/users/me" and hit.params == {}
    hit = router.match("GET", "/v1/shelves/a%20b/books/7")
    assert hit is not None
    assert hit.params == {("name",): "shelves/a b", ("book", "id"): "7"}
    hit = router.match("POST", "/v1/books/9:publish")
    assert hit is not None and hit.params == {("name",): "books/9"}
    hit = router.match("GET", "/files/a/b/c.txt")
    assert hit is not None and hit.params == {("path",): "a/b/c.txt"}
    # An encoded slash stays inside its segment.
    hit = router.match("GET", "/v1/users/a%2Fb")
    assert hit is not None and hit.params == {("id",): "a/b"}
    for verb, path in [
        ("GET", "/v1/users/"),
        ("GET", "/v1/users/1/x"),
        ("DELETE", "/v1/users/1"),
        ("GET", "/v1/books/9:publish"),
        ("GET", "/nothing"),
    ]:
        assert router.match(verb, path) is None, (verb, path)
    assert router.methods_for("/v1/users/1") == ["GET"]


def test_routes_that_match_the_same_requests_conflict_naming_both() -> None:
    router = _router(("GET", "/v1/users/{id}"))
    with pytest.raises(
        RouteConflict, match=r"GET /v1/users/\{uid\} \(B\) and GET /v1/users/\{id\}"
    ):
        router.add("GET", parse_template("/v1/users/{uid}"), "b", "B")
    router.add("POST", parse_template("/v1/users/{uid}"), "c", "C")  # another method: fine


class Inner(msgspec.Struct):
    id: int
    label: str = ""


class Req(msgspec.Struct):
    id: int = 0
    tags: list[str] = []
    inner: Inner | None = None
    ratio: float = 0.0
    flag: bool = False
    small: Annotated[int, msgspec.Meta(ge=0, le=9)] = 0


class Reply(msgspec.Struct):
    value: Req


class Bind(Service, name="t.Bind"):
    @rpc(http=["GET /r/{id}", "GET /n/{inner.id}"])
    async def get(self, req: Req) -> Req:
        return req

    @rpc(http="POST /r/{id}")
    async def post(self, req: Req) -> Req:
        return req

    @rpc(http="PUT /r/{id}", body="inner", response_body="value")
    async def put(self, req: Req) -> Reply:
        return Reply(req)


def _rest() -> RestServer:
    server = Server([Bind()], openapi=False, health=False, reflection=False)
    return server.rest


def _bind(rest: RestServer, verb: str, path: str, body: bytes | None = None) -> Req:
    raw, _, query = path.partition("?")
    hit = rest.router.match(verb, raw)
    assert hit is not None
    route = hit.target
    assert not isinstance(route, type(None))
    return route.bind(hit.params, query, body)  # type: ignore[union-attr]


def test_get_binds_path_then_query_with_repeated_and_nested_fields() -> None:
    rest = _rest()
    req = _bind(rest, "GET", "/r/7?tags=a&tags=b&inner.id=3&inner.label=x&ratio=0.5&flag=true")
    assert req == Req(7, ["a", "b"], Inner(3, "x"), 0.5, True)
    assert _bind(rest, "GET", "/n/5").inner == Inner(5)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/r/abc", "invalid value 'abc' for field `id`: expected an integer"),
        ("/r/1?flag=maybe", "field `flag`: expected true or false"),
        ("/r/1?ratio=x", "field `ratio`: expected a number"),
        ("/r/1?inner.id=q", "field `inner.id`: expected an integer"),
        ("/r/1?id=2&id=3", "query parameter `id` is given more than once"),
        ("/r/1?small=12", "Expected `int` <= 9 - at `$.small`"),
        ("/r/1?inner=3&inner.id=4", "field `inner` is not a message"),
    ],
)
def test_wrong_values_are_invalid_argument_naming_the_field(path: str, message: str) -> None:
    with pytest.raises(RpcError) as info:
        _bind(_rest(), "GET", path)
    assert info.value.code is Code.INVALID_ARGUMENT
    assert message in info.value.message


def test_body_star_is_the_request_and_path_variables_win() -> None:
    rest = _rest()
    req = _bind(rest, "POST", "/r/9", b'{"id": 1, "tags": ["t"], "ratio": 2}')
    assert req == Req(9, ["t"], ratio=2.0)
    assert _bind(rest, "POST", "/r/9", b"") == Req(9)
    for body, message in [
        (b"[1]", "must be an object"),
        (b"{", "malformed JSON body"),
        (b'{"tags": "x"}', "Expected `array`, got `str` - at `$.tags`"),
    ]:
        with pytest.raises(RpcError, match=re.escape(message)):
            _bind(rest, "POST", "/r/9", body)


def test_body_field_fills_one_field_and_response_body_picks_one() -> None:
    rest = _rest()
    req = _bind(rest, "PUT", "/r/4?tags=z", b'{"id": 8, "label": "l"}')
    assert req == Req(4, ["z"], Inner(8, "l"))
    hit = rest.router.match("PUT", "/r/4")
    assert hit is not None
    assert msgspec.json.decode(hit.target.encode(Reply(req))) == msgspec.to_builtins(req)  # type: ignore[union-attr]


def test_routes_are_checked_against_the_messages_at_start() -> None:
    class Missing(Service, name="t.Missing"):
        @rpc(http="GET /m/{nope}")
        async def get(self, req: Req) -> Req:
            return req

    with pytest.raises(
        ValueError, match=r"t.Missing.get route GET /m/\{nope\}: .* no field `nope`"
    ):
        Server([Missing()])

    class BadBody(Service, name="t.BadBody"):
        @rpc(http=HttpRule("POST /b", body="nope"))
        async def post(self, req: Req) -> Req:
            return req

    with pytest.raises(ValueError, match="body='nope' is not a field"):
        Server([BadBody()])


def test_conflicting_routes_of_two_services_are_refused_at_start() -> None:
    class Other(Service, name="t.Other"):
        @rpc(http="GET /r/{x}")
        async def get(self, req: Req) -> Req:
            return req

    with pytest.raises(
        RouteConflict, match=r"GET /r/\{x\} \(t.Other.get\) and GET /r/\{id\} \(t.Bind.get\)"
    ):
        Server([Bind(), Other()])


def test_rule_syntax_errors_are_refused_at_definition() -> None:
    with pytest.raises(ValueError, match="must look like 'GET /v1/things/"):
        rpc(http="FETCH /x")
    with pytest.raises(ValueError, match="GET requests have no body"):
        HttpRule("GET /x", body="a")
    with pytest.raises(TypeError, match="HTTP routes serve unary and server-streaming"):

        class Streams(Service, name="t.Streams"):
            @rpc(http="POST /s")
            async def client(self, reqs: AsyncIterator[Req]) -> Req:
                return Req()

"""REST routes: an ``@rpc`` method as a resource-style HTTP endpoint (``google.api.http``).

``@rpc(http="GET /v1/users/{id}")`` binds the request message from the request:

- path variables (``{id}``, ``{name=shelves/*}``, nested ``{user.id}``) set fields;
- GET and DELETE take the other fields from the query string (``?tag=a&tag=b`` for a
  repeated field, ``?page.size=10`` for a nested one);
- POST, PUT and PATCH take the JSON body as the whole request (``body="*"``, the
  default) or as one field (``body="user"``; the other fields then come from the
  query); path variables are applied over the body.

Path and query values are parsed as their field's type (from the message's JSON
Schema); a value of the wrong type is a ``400`` ``invalid_argument`` naming the field.
The response is the message's JSON form (Connect's JSON), or one field of it
(``response_body="user"``). Errors are Connect's JSON error body with its HTTP status.
A server stream is newline-delimited JSON (``application/x-ndjson``), or server-sent
events when the client accepts ``text/event-stream``; an error after the first message
arrives as a last line ``{"error": {...}}`` (SSE: an ``error`` event).

One module because it is one protocol, as ``connect.py`` and ``grpc.py`` are: the route
binding, the calls (unary, stream, HEAD, pages) and the server that routes to them share
their framing; route templates and matching are apart in ``_routes.py``, schemas in
``schema/_jsonschema.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from .._errors import Code, RpcError
from ..codec import JSON
from ..schema._jsonschema import JsonSchemas, ScalarError, scalar_parser
from ..service import HttpRule, MethodDescriptor, MethodKind
from ..transport import Stream
from ._base import (
    Metadata,
    ServerCall,
    ServerProtocol,
    encode_metadata,
    error_status_headers,
    method_not_allowed,
)
from ._routes import Router, Template, parse_template

__all__ = ["PAGE_METHOD", "RestRoute", "RestServer"]

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode

_STATUS_200 = (b":status", b"200")
_CT_JSON = (b"content-type", b"application/json")
_CT_NDJSON = (b"content-type", b"application/x-ndjson")
_CT_SSE = (b"content-type", b"text/event-stream")
_NO_CACHE = (b"cache-control", b"no-cache")
_MAX_QUERY_FIELDS = 1000
# Query keys naming no field are parsed as text; this many are remembered per route.
_MAX_UNKNOWN_FIELDS = 64


class RestRoute:
    """One HTTP route of a method: how its request is bound and its response sent."""

    __slots__ = (
        "_fields",
        "body",
        "method",
        "response_body",
        "rule",
        "schemas",
        "target",
        "template",
    )

    def __init__(
        self,
        method: MethodDescriptor,
        rule: HttpRule,
        template: Template,
        target: Any,
        schemas: JsonSchemas,
    ) -> None:
        self.method = method
        self.rule = rule
        self.template = template
        self.target = target  # what the server runs: its handler for this method
        self.body = rule.body
        self.response_body = rule.response_body
        self.schemas = schemas
        self._fields: dict[str, _Field] = {}

    # -- request ------------------------------------------------------------------------
    def bind(self, params: dict[tuple[str, ...], str], query: str, body: bytes | None) -> Any:
        """The request message from path variables, query string and body."""
        decode = self.method.request_decoder(JSON)
        if self.body == "*":
            if not params:
                return decode(body or b"{}")
            obj = _object(body)
        else:
            obj = {}
            if self.body and body:
                try:
                    obj[self.body] = _json_decode(body)
                except msgspec.DecodeError as exc:
                    raise RpcError(Code.INVALID_ARGUMENT, f"malformed JSON body: {exc}") from None
            if query:
                self._apply_query(obj, query)
        for field, text in params.items():
            info = self._field(".".join(field))
            if info.top:
                obj[info.top] = info.parse(text)
            else:
                _set(obj, field, info.parse(text), replace=True)
        # One decoder for every way in: the same validation and messages as Connect JSON.
        return decode(_json_encode(obj))

    def _field(self, key: str) -> _Field:
        """How a path or query value of field ``key`` (``a.b``) parses (cached: schemas
        are static)."""
        found = self._fields.get(key)
        if found is None:
            field = tuple(key.split("."))
            schema = self.schemas.field(self.method.request_type, field)
            found = _Field(field, schema, self.schemas)
            if schema is not None or len(self._fields) < _MAX_UNKNOWN_FIELDS:
                self._fields[key] = found
        return found

    def _apply_query(self, obj: dict[str, Any], query: str) -> None:
        seen: set[str] = set()
        fields = self._fields
        for key, text in _query_pairs(query):
            info = fields.get(key) or self._field(key)
            if info.repeated:
                _append(obj, info.path, info.parse(text))
                continue
            if key in seen:
                raise RpcError(
                    Code.INVALID_ARGUMENT, f"query parameter `{key}` is given more than once"
                )
            seen.add(key)
            if info.top:
                obj[info.top] = info.parse(text)
            else:
                _set(obj, info.path, info.parse(text), replace=False)

    # -- response -----------------------------------------------------------------------
    def encode(self, message: Any) -> bytes:
        """The response body: the message's JSON form, or the ``response_body`` field."""
        name = self.response_body
        if name:
            message = message.get(name) if isinstance(message, dict) else getattr(message, name)
        return JSON.encode(message)


class _Field:
    """A request field as path and query values see it: repeated or not, and how its
    text parses."""

    __slots__ = ("_parse", "name", "path", "repeated", "top")

    def __init__(self, field: tuple[str, ...], schema: Any, schemas: JsonSchemas) -> None:
        self.name = ".".join(field)
        self.path = field
        self.top = field[0] if len(field) == 1 else ""  # a top-level field: set it directly
        self.repeated = schemas.is_repeated(schema)
        if self.repeated:
            items = schema.get("items")
            schema = items if isinstance(items, dict) else None
        self._parse = scalar_parser(schema, schemas)

    def parse(self, text: str) -> Any:
        try:
            return self._parse(text)
        except ScalarError as exc:
            raise RpcError(
                Code.INVALID_ARGUMENT, f"invalid value {text!r} for field `{self.name}`: {exc}"
            ) from None


def _query_pairs(query: str) -> list[tuple[str, str]]:
    if "%" not in query and "+" not in query:
        # The common case, without percent-decoding: split on & and =.
        pairs = [part.partition("=") for part in query.split("&") if part]
        if len(pairs) > _MAX_QUERY_FIELDS:
            raise RpcError(Code.INVALID_ARGUMENT, "bad query string: too many fields")
        return [(k, v) for k, _, v in pairs]
    try:
        return parse_qsl(query, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS)
    except ValueError as exc:
        raise RpcError(Code.INVALID_ARGUMENT, f"bad query string: {exc}") from None


def _object(body: bytes | None) -> dict[str, Any]:
    if not body:
        return {}
    try:
        obj = _json_decode(body)
    except msgspec.DecodeError as exc:
        raise RpcError(Code.INVALID_ARGUMENT, f"malformed JSON body: {exc}") from None
    if not isinstance(obj, dict):
        raise RpcError(Code.INVALID_ARGUMENT, "the JSON body must be an object")
    return obj


def _parent(obj: dict[str, Any], field: tuple[str, ...]) -> dict[str, Any]:
    for i, name in enumerate(field[:-1]):
        child = obj.setdefault(name, {})
        if not isinstance(child, dict):
            where = ".".join(field[: i + 1])
            raise RpcError(Code.INVALID_ARGUMENT, f"field `{where}` is not a message")
        obj = child
    return obj


def _set(obj: dict[str, Any], field: tuple[str, ...], value: Any, *, replace: bool) -> None:
    parent = _parent(obj, field)
    if not replace and isinstance(parent.get(field[-1]), dict):
        raise RpcError(
            Code.INVALID_ARGUMENT, f"field `{'.'.join(field)}` is a message, not a value"
        )
    parent[field[-1]] = value


def _append(obj: dict[str, Any], field: tuple[str, ...], value: Any) -> None:
    parent = _parent(obj, field)
    items = parent.setdefault(field[-1], [])
    if not isinstance(items, list):
        raise RpcError(Code.INVALID_ARGUMENT, f"field `{'.'.join(field)}` is given twice")
    items.append(value)


class Page:
    """A fixed resource served beside the routes (``/openapi.json``, ``/docs``)."""

    __slots__ = ("content_type", "render", "target")

    def __init__(self, content_type: bytes, render: Callable[[], bytes], target: Any) -> None:
        self.content_type = content_type
        self.render = render
        self.target = target


# ---------------------------------------------------------------------------------
# calls
# ---------------------------------------------------------------------------------
def _error_headers(error: RpcError) -> list[tuple[bytes, bytes]]:
    return error_status_headers(error, b"application/json")


class _HttpCall(ServerCall):
    """A call answered as plain HTTP (no envelopes, no trailers)."""

    __slots__ = ("_sent",)

    _sent: bool

    @property
    def headers_sent(self) -> bool:
        return self._sent


class RestCall(_HttpCall):
    """One call through a route: binds the request, sends JSON, NDJSON or SSE."""

    __slots__ = ("_params", "_query", "_route", "_sse")

    def __init__(
        self,
        stream: Stream,
        route: RestRoute,
        params: dict[tuple[str, ...], str],
        query: str,
        max_size: int,
        sse: bool,
    ) -> None:
        self.stream = stream
        self.method = route.method
        self.codec = JSON
        self.timeout = None
        self.max_size = max_size
        self._route = route
        self._params = params
        self._query = query
        self._sent = False
        self._sse = sse

    async def receive(self) -> Any:
        route = self._route
        body = await self.stream.read_all(self.max_size) if route.body else None
        return route.bind(self._params, self._query, body)

    def _head(
        self, ct: tuple[bytes, bytes], headers: Metadata | None, trailers: Metadata | None = None
    ) -> list[tuple[bytes, bytes]]:
        out = [_STATUS_200, ct]
        if headers:
            out += encode_metadata(headers)
        if trailers:
            out += encode_metadata(trailers)
        return out

    async def send_unary(
        self, message: Any, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        body = self._route.encode(message)
        self._sent = True
        self.stream.send_headers(self._head(_CT_JSON, headers, trailers))
        await self.stream.send_data(body, end_stream=True)

    async def send_message(self, message: Any, headers: Metadata | None) -> None:
        if not self._sent:
            self._sent = True
            out = self._head(_CT_SSE if self._sse else _CT_NDJSON, headers)
            if self._sse:
                out.append(_NO_CACHE)
            self.stream.send_headers(out)
        payload = self._route.encode(message)
        if self._sse:
            await self.stream.send_data(b"data: " + payload + b"\n\n")
        else:
            await self.stream.send_data(payload + b"\n")

    async def finish(
        self, error: RpcError | None, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        stream = self.stream
        if not self._sent:
            self._sent = True
            if error is None:  # a stream with no messages
                stream.send_headers(
                    self._head(_CT_SSE if self._sse else _CT_NDJSON, headers, trailers)
                )
                await stream.send_data(b"", end_stream=True)
                return
            out = _error_headers(error)
            if headers:
                out += encode_metadata(headers)
            stream.send_headers(out)
            await stream.send_data(_json_encode(error.to_json()), end_stream=True)
            return
        if error is None:
            await stream.send_data(b"", end_stream=True)
        elif self._sse:
            payload = _json_encode(error.to_json())
            await stream.send_data(b"event: error\ndata: " + payload + b"\n\n", end_stream=True)
        else:
            await stream.send_data(_json_encode({"error": error.to_json()}) + b"\n", True)


class HeadCall(RestCall):
    """``HEAD`` through a ``GET`` route: the response's headers, and no body."""

    __slots__ = ()

    def _end(self, out: list[tuple[bytes, bytes]]) -> None:
        if not self._sent:
            self._sent = True
            self.stream.send_headers(out, end_stream=True)

    async def send_unary(
        self, message: Any, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        self._end(self._head(_CT_JSON, headers, trailers))

    async def send_message(self, message: Any, headers: Metadata | None) -> None:
        self._end(self._head(_CT_SSE if self._sse else _CT_NDJSON, headers))

    async def finish(
        self, error: RpcError | None, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        if error is None:
            self._end(self._head(_CT_SSE if self._sse else _CT_NDJSON, headers, trailers))
            return
        out = _error_headers(error)
        if headers:
            out += encode_metadata(headers)
        self._end(out)


class PageCall(_HttpCall):
    """Serves a ``Page``: its render function makes the body."""

    __slots__ = ("_body", "_page")

    def __init__(
        self, stream: Stream, page: Page, method: MethodDescriptor, body: bool = True
    ) -> None:
        self.stream = stream
        self.method = method
        self.codec = JSON
        self.timeout = None
        self.max_size = 0
        self._page = page
        self._body = body  # False for HEAD
        self._sent = False

    async def receive(self) -> Any:
        return None

    async def send_unary(
        self, message: Any, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        out = [_STATUS_200, (b"content-type", self._page.content_type)]
        if headers:
            out += encode_metadata(headers)
        self._sent = True
        if not self._body:
            self.stream.send_headers(out, end_stream=True)
            return
        self.stream.send_headers(out)
        await self.stream.send_data(self._page.render(), end_stream=True)

    async def finish(
        self, error: RpcError | None, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        error = error or RpcError(Code.INTERNAL, "page failed")
        self._sent = True
        self.stream.send_headers(_error_headers(error))
        await self.stream.send_data(_json_encode(error.to_json()), end_stream=True)


# ---------------------------------------------------------------------------------
# the protocol
# ---------------------------------------------------------------------------------
PAGE_METHOD = MethodDescriptor("h2mesh.Pages", "Get", "get", MethodKind.UNARY, None, bytes)


class RestServer(ServerProtocol):
    """The routes of one server, compiled into a matcher, and the calls through them."""

    name = "rest"

    def __init__(self) -> None:
        self.router: Router[RestRoute | Page] = Router()
        self.schemas = JsonSchemas()

    def __bool__(self) -> bool:
        return bool(self.router)

    def add(self, method: MethodDescriptor, rule: HttpRule, target: Any) -> RestRoute:
        """Add one route of ``method``; raises ``ValueError`` for a bad template, a field
        the request does not have, or a conflict with another route (naming both)."""
        label = f"{method.service_name}.{method.python_name}"
        template = parse_template(rule.pattern)
        route = RestRoute(method, rule, template, target, self.schemas)
        self.schemas.add(method.request_type, "validation")
        self.schemas.add(method.response_type, "serialization")
        self.router.add(rule.verb, template, route, label)
        return route

    def add_page(
        self, path: str, content_type: str, render: Callable[[], bytes], target: Any
    ) -> None:
        page = Page(content_type.encode(), render, target)
        self.router.add("GET", parse_template(path), page, f"built-in page {path}")

    def routes(self) -> list[RestRoute]:
        return [target for _, _, target in self.router if isinstance(target, RestRoute)]

    def check(self) -> None:
        """Build the schemas and check every route's fields against its messages."""
        self.schemas.build()
        for route in self.routes():
            _check_route(route, self.schemas)

    def accept(
        self, stream: Stream, request: dict[bytes, bytes], max_size: int
    ) -> tuple[Any, ServerCall] | None:
        """``(target, call)`` for a request that a route matches, None if no route has
        its path; raises ``RpcError`` (``405`` for a path served for other methods)."""
        raw, _, query = request.get(b":path", b"").partition(b"?")
        path = raw.decode("latin-1")
        verb = request.get(b":method", b"").decode("latin-1")
        match = self.router.match(verb, path)
        head = False
        if match is None:
            if verb == "HEAD":
                match = self.router.match("GET", path)
                head = True
            if match is None:
                allowed = self.router.methods_for(path)
                if not allowed:
                    return None
                raise method_not_allowed(path, verb, allowed)
        target = match.target
        if isinstance(target, Page):
            return target.target, PageCall(stream, target, PAGE_METHOD, not head)
        accept = request.get(b"accept", b"")
        sse = target.method.kind.server_streams and b"text/event-stream" in accept
        make = HeadCall if head else RestCall
        return target.target, make(
            stream, target, match.params, query.decode("latin-1"), max_size, sse
        )

    def methods_for(self, path: bytes) -> list[str]:
        """The HTTP methods the routes serve at ``path`` (query string ignored)."""
        return self.router.methods_for(path.partition(b"?")[0].decode("latin-1"))

    async def reject(self, stream: Stream, request: dict[bytes, bytes], error: RpcError) -> None:
        stream.send_headers(_error_headers(error))
        await stream.send_data(_json_encode(error.to_json()), end_stream=True)


def _check_route(route: RestRoute, schemas: JsonSchemas) -> None:
    method = route.method
    where = f"{method.service_name}.{method.python_name} route {route.rule}"
    req = method.request_type
    if schemas.resolve(schemas.schema(req)).get("type") != "object":
        raise ValueError(f"{where}: the request type must be a message")
    for var in route.template.variables:
        if schemas.field(req, var.field) is None:
            raise ValueError(f"{where}: the request has no field `{var.name}`")
    if route.body not in ("", "*") and schemas.field(req, (route.body,)) is None:
        raise ValueError(f"{where}: body={route.body!r} is not a field of the request")
    if route.response_body:
        resp = schemas.resolve(schemas.schema(method.response_type, "serialization"))
        props = resp.get("properties")
        if not isinstance(props, dict) or route.response_body not in props:
            raise ValueError(
                f"{where}: response_body={route.response_body!r} is not a field of the response"
            )

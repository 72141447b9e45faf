"""The service model: a class with ``@rpc`` methods whose type hints define the RPCs.

::

    class Greeter(Service, name="demo.v1.Greeter"):
        @rpc
        async def say_hello(self, req: HelloRequest, ctx: Context) -> HelloReply: ...

The streaming kind of each method comes from its annotations: an ``AsyncIterator[T]``
request means the client streams, an ``AsyncIterator[T]`` return means the server
streams. The wire path is ``/<service name>/<PascalCaseMethod>``.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

from .codec import Codec, DecodeFn

__all__ = ["HttpRule", "MethodDescriptor", "MethodKind", "Service", "rpc", "service_methods"]

F = TypeVar("F", bound=Callable[..., Any])

_STREAM_ORIGINS = (
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


class MethodKind(enum.Enum):
    """How many messages flow each way."""

    UNARY = "unary"
    SERVER_STREAM = "server_stream"
    CLIENT_STREAM = "client_stream"
    BIDI_STREAM = "bidi_stream"

    @property
    def client_streams(self) -> bool:
        return self in (MethodKind.CLIENT_STREAM, MethodKind.BIDI_STREAM)

    @property
    def server_streams(self) -> bool:
        return self in (MethodKind.SERVER_STREAM, MethodKind.BIDI_STREAM)


_HTTP_VERBS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_BODY_VERBS = frozenset({"POST", "PUT", "PATCH"})


class HttpRule:
    """One HTTP route of a method, as in ``google.api.http``: ``"GET /v1/users/{id}"``.

    ``body`` names the request field the JSON body fills (``"*"``, the default for POST,
    PUT and PATCH: the whole request; GET and DELETE take no body); ``response_body``
    names the response field sent as the body (default: the whole response).
    """

    __slots__ = ("body", "pattern", "response_body", "verb")

    def __init__(
        self, route: str, *, body: str | None = None, response_body: str | None = None
    ) -> None:
        verb, sep, pattern = route.strip().partition(" ")
        pattern = pattern.strip()
        if not sep or verb not in _HTTP_VERBS or not pattern.startswith("/"):
            raise ValueError(
                f"HTTP route {route!r} must look like 'GET /v1/things/{{id}}' "
                f"(one of {', '.join(sorted(_HTTP_VERBS))}, then a path)"
            )
        if body is None:
            body = "*" if verb in _BODY_VERBS else ""
        elif verb not in _BODY_VERBS and body:
            raise ValueError(f"HTTP route {route!r}: {verb} requests have no body")
        self.verb = verb
        self.pattern = pattern
        self.body = body
        self.response_body = response_body or ""

    def __str__(self) -> str:
        return f"{self.verb} {self.pattern}"

    def __repr__(self) -> str:
        extra = f", body={self.body!r}" if self.body not in ("", "*") else ""
        if self.response_body:
            extra += f", response_body={self.response_body!r}"
        return f"HttpRule({str(self)!r}{extra})"


HttpSpec = str | HttpRule | Sequence[str | HttpRule]


class _RpcOptions:
    __slots__ = ("http", "idempotent", "name")

    def __init__(self, name: str | None, idempotent: bool, http: tuple[HttpRule, ...]) -> None:
        self.name = name
        self.idempotent = idempotent
        self.http = http


def _http_rules(
    http: HttpSpec | None, body: str | None, response_body: str | None
) -> tuple[HttpRule, ...]:
    if http is None:
        if body is not None or response_body is not None:
            raise ValueError("body= and response_body= need an http= route")
        return ()
    items = [http] if isinstance(http, str | HttpRule) else list(http)
    rules = []
    for item in items:
        if isinstance(item, HttpRule):
            rules.append(item)
        else:
            rules.append(HttpRule(item, body=body, response_body=response_body))
    return tuple(rules)


@overload
def rpc(func: F, /) -> F: ...
@overload
def rpc(
    *,
    name: str | None = None,
    idempotent: bool = False,
    http: HttpSpec | None = None,
    body: str | None = None,
    response_body: str | None = None,
) -> Callable[[F], F]: ...
def rpc(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    idempotent: bool = False,
    http: HttpSpec | None = None,
    body: str | None = None,
    response_body: str | None = None,
) -> F | Callable[[F], F]:
    """Mark a method of a :class:`Service` as an RPC.

    ``name`` overrides the wire name (default: the method name in PascalCase);
    ``idempotent=True`` marks the method safe to retry and to call with HTTP GET.
    ``http="GET /v1/users/{id}"`` (or a list of routes, or :class:`HttpRule` objects)
    also serves the method as a resource-style HTTP route, with ``google.api.http``
    semantics; ``body`` and ``response_body`` apply to every route given as a string.
    """
    rules = _http_rules(http, body, response_body)

    def mark(f: F) -> F:
        f.__h2mesh_rpc__ = _RpcOptions(name, idempotent, rules)  # type: ignore[attr-defined]
        return f

    return mark(func) if func is not None else mark


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _stream_item(tp: Any) -> Any | None:
    """``T`` if ``tp`` is ``AsyncIterator[T]`` (or Iterable/Generator), else None."""
    origin = typing.get_origin(tp)
    if origin in _STREAM_ORIGINS:
        args = typing.get_args(tp)
        return args[0] if args else Any
    return None


class MethodDescriptor:
    """One RPC: its names, kind, message types and per-codec decoders."""

    __slots__ = (
        "_decoders",
        "doc",
        "http",
        "idempotent",
        "kind",
        "name",
        "path",
        "path_bytes",
        "python_name",
        "request_type",
        "response_type",
        "service_name",
        "takes_context",
    )

    def __init__(
        self,
        service_name: str,
        name: str,
        python_name: str,
        kind: MethodKind,
        request_type: Any,
        response_type: Any,
        *,
        idempotent: bool = False,
        takes_context: bool = True,
        http: tuple[HttpRule, ...] = (),
        doc: str = "",
    ) -> None:
        self.service_name = service_name
        self.name = name
        self.python_name = python_name
        self.kind = kind
        self.request_type = request_type
        self.response_type = response_type
        self.idempotent = idempotent
        self.takes_context = takes_context
        #: The HTTP routes of the method (``@rpc(http=...)``).
        self.http = http
        #: The method's docstring (cleaned), for generated documentation.
        self.doc = doc
        self.path = f"/{service_name}/{name}"
        #: ``path`` as the ``:path`` header of a call.
        self.path_bytes = self.path.encode()
        self._decoders: dict[tuple[str, bool], DecodeFn] = {}

    def request_decoder(self, codec: Codec) -> DecodeFn:
        """The cached decoder for request messages in ``codec``."""
        key = (codec.name, True)
        dec = self._decoders.get(key)
        if dec is None:
            dec = self._decoders[key] = codec.decoder(self.request_type)
        return dec

    def response_decoder(self, codec: Codec) -> DecodeFn:
        """The cached decoder for response messages in ``codec``."""
        key = (codec.name, False)
        dec = self._decoders.get(key)
        if dec is None:
            dec = self._decoders[key] = codec.decoder(self.response_type)
        return dec

    def __repr__(self) -> str:
        return f"<MethodDescriptor {self.path} {self.kind.value}>"


def _describe(service_name: str, attr: str, func: Callable[..., Any]) -> MethodDescriptor:
    opts: _RpcOptions = func.__h2mesh_rpc__  # type: ignore[attr-defined]
    where = f"{service_name}.{attr}"
    if not (inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)):
        raise TypeError(f"@rpc method {where} must be 'async def'")
    params = list(inspect.signature(func).parameters.values())[1:]  # drop self
    if not params or len(params) > 2:
        raise TypeError(f"@rpc method {where} must take (self, request[, ctx])")
    try:
        hints = typing.get_type_hints(func)
    except NameError as exc:
        raise TypeError(f"cannot resolve the type hints of {where}: {exc}") from None
    if params[0].name not in hints or "return" not in hints:
        raise TypeError(f"@rpc method {where} needs annotations on its request and return")
    req_tp = hints[params[0].name]
    resp_tp = hints["return"]
    req_item = _stream_item(req_tp)
    resp_item = _stream_item(resp_tp)
    if req_item is None and resp_item is None:
        kind = MethodKind.UNARY
    elif req_item is None:
        kind = MethodKind.SERVER_STREAM
    elif resp_item is None:
        kind = MethodKind.CLIENT_STREAM
    else:
        kind = MethodKind.BIDI_STREAM
    if opts.http and kind.client_streams:
        raise TypeError(
            f"@rpc method {where}: HTTP routes serve unary and server-streaming methods"
        )
    return MethodDescriptor(
        service_name,
        opts.name or _pascal(attr),
        attr,
        kind,
        req_item if req_item is not None else req_tp,
        resp_item if resp_item is not None else resp_tp,
        idempotent=opts.idempotent,
        takes_context=len(params) == 2,
        http=opts.http,
        doc=inspect.getdoc(func) or "",
    )


class Service:
    """Base class for services; subclass with ``class X(Service, name="pkg.v1.X")``."""

    __service_name__: typing.ClassVar[str]
    __methods__: typing.ClassVar[dict[str, MethodDescriptor]]

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__service_name__ = name or cls.__dict__.get("__service_name__") or cls.__qualname__
        methods: dict[str, MethodDescriptor] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if callable(value) and hasattr(value, "__h2mesh_rpc__"):
                    methods[attr] = _describe(cls.__service_name__, attr, value)
        wire_names: dict[str, str] = {}
        for attr, desc in methods.items():
            if desc.name in wire_names:
                raise TypeError(
                    f"{cls.__qualname__}: {attr} and {wire_names[desc.name]} "
                    f"share the wire name {desc.name!r}"
                )
            wire_names[desc.name] = attr
        cls.__methods__ = methods


def service_methods(service: type[Service] | Service) -> dict[str, MethodDescriptor]:
    """The method descriptors of a service class or instance, by Python name."""
    return service.__methods__

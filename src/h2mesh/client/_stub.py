"""Typed stubs: client objects whose methods mirror a service's ``@rpc`` methods."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import Code, RpcError
from ..protocol import Metadata, ResponseMetadata
from ..service import MethodDescriptor, MethodKind, Service

if TYPE_CHECKING:
    from ._channel import Channel

S = TypeVar("S", bound=Service)

_STUB_CLASSES: dict[type[Service], type] = {}


def _unary(method: MethodDescriptor) -> Callable[..., Any]:
    async def call(
        self: _StubBase,
        request: Any,
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
        key: bytes | str | None = None,
    ) -> Any:
        return await self._channel.unary(
            method, request, timeout=timeout, headers=headers, metadata=metadata, key=key
        )

    return call


def _server_stream(method: MethodDescriptor) -> Callable[..., Any]:
    def call(
        self: _StubBase,
        request: Any,
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
        key: bytes | str | None = None,
    ) -> AsyncIterator[Any]:
        return self._channel.stream(
            method, request, None, timeout=timeout, headers=headers, metadata=metadata, key=key
        )

    return call


def _client_stream(method: MethodDescriptor) -> Callable[..., Any]:
    async def call(
        self: _StubBase,
        requests: AsyncIterable[Any],
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
        key: bytes | str | None = None,
    ) -> Any:
        responses = self._channel.stream(
            method, None, requests, timeout=timeout, headers=headers, metadata=metadata, key=key
        )
        result = [message async for message in responses]
        if len(result) != 1:
            raise RpcError(
                Code.INTERNAL, f"{method.path} returned {len(result)} messages, expected 1"
            )
        return result[0]

    return call


def _bidi(method: MethodDescriptor) -> Callable[..., Any]:
    def call(
        self: _StubBase,
        requests: AsyncIterable[Any],
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
        key: bytes | str | None = None,
    ) -> AsyncIterator[Any]:
        return self._channel.stream(
            method, None, requests, timeout=timeout, headers=headers, metadata=metadata, key=key
        )

    return call


_FACTORIES = {
    MethodKind.UNARY: _unary,
    MethodKind.SERVER_STREAM: _server_stream,
    MethodKind.CLIENT_STREAM: _client_stream,
    MethodKind.BIDI_STREAM: _bidi,
}


class _StubBase:
    __slots__ = ("_channel",)

    def __init__(self, channel: Channel) -> None:
        self._channel = channel


def stub_class(service: type[Service]) -> type:
    """The stub class for ``service`` (built once, then cached)."""
    cls = _STUB_CLASSES.get(service)
    if cls is None:
        namespace: dict[str, Any] = {"__slots__": ()}
        for attr, method in service.__methods__.items():
            func = _FACTORIES[method.kind](method)
            func.__name__ = attr
            func.__qualname__ = f"{service.__name__}Stub.{attr}"
            func.__doc__ = f"Call {method.path} ({method.kind.value})."
            namespace[attr] = func
        cls = type(f"{service.__name__}Stub", (_StubBase,), namespace)
        _STUB_CLASSES[service] = cls
    return cls


def make_stub(channel: Channel, service: type[S]) -> S:
    """A stub bound to ``channel``; typed as the service for editors and checkers."""
    if not (isinstance(service, type) and issubclass(service, Service)):
        raise TypeError(f"{service!r} is not a Service class")
    return stub_class(service)(channel)  # type: ignore[no-any-return]

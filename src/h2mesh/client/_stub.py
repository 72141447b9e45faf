"""Typed stubs: client objects whose methods mirror a service's ``@rpc`` methods.

The async stub is built once per service class; the sync facade wraps the same methods
(``SyncChannel``), so both take the same arguments.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from ..protocol import Metadata, ResponseMetadata
from ..service import MethodDescriptor, MethodKind, Service
from ._call import collect_one

__all__ = ["Caller", "make_stub", "stub_class"]

S = TypeVar("S", bound=Service)


class Caller(Protocol):
    """What a stub calls: ``Channel.unary`` and ``Channel.stream``."""

    def unary(
        self,
        method: MethodDescriptor,
        request: Any,
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
        key: bytes | str | None = None,
    ) -> Awaitable[Any]: ...

    def stream(
        self,
        method: MethodDescriptor,
        request: Any = None,
        requests: AsyncIterable[Any] | None = None,
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
        key: bytes | str | None = None,
    ) -> AsyncIterator[Any]: ...


_STUB_CLASSES: dict[type[Service], type] = {}


def _unary(method: MethodDescriptor) -> Callable[..., Any]:
    def call(
        self: _StubBase,
        request: Any,
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
        key: bytes | str | None = None,
    ) -> Awaitable[Any]:
        # Returns the channel's awaitable as it is: no coroutine of its own per call.
        return self._channel.unary(
            method, request, timeout=timeout, headers=headers, metadata=metadata, key=key
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
        return await collect_one(responses, method)

    return call


def _streaming(method: MethodDescriptor) -> Callable[..., Any]:
    # Server streams take one request, bidi streams an iterator of them.
    many = method.kind.client_streams

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
            method,
            None if many else request,
            request if many else None,
            timeout=timeout,
            headers=headers,
            metadata=metadata,
            key=key,
        )

    return call


_FACTORIES = {
    MethodKind.UNARY: _unary,
    MethodKind.SERVER_STREAM: _streaming,
    MethodKind.CLIENT_STREAM: _client_stream,
    MethodKind.BIDI_STREAM: _streaming,
}


class _StubBase:
    __slots__ = ("_channel",)

    def __init__(self, channel: Caller) -> None:
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


def make_stub(channel: Caller, service: type[S]) -> S:
    """A stub bound to ``channel``; typed as the service for editors and checkers."""
    if not (isinstance(service, type) and issubclass(service, Service)):
        raise TypeError(f"{service!r} is not a Service class")
    return stub_class(service)(channel)  # type: ignore[no-any-return]

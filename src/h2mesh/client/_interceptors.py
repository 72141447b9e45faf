"""Client interceptors: code that runs around every call a ``Channel`` makes.

An interceptor sees each call's method, request and details (headers it may add to,
timeout, key). Unary calls go through ``intercept_unary``, which awaits the response;
server-streaming, client-streaming and bidi calls go through ``intercept_stream``, which
returns the response iterator (``request`` is then the single request of a server stream,
or the request iterator of a client or bidi stream). Interceptors are chained once when
the channel is made, never per call, and a channel without any pays nothing.

::

    class Auth(ClientInterceptor):
        async def intercept_unary(self, call_next, request, call):
            call.headers["authorization"] = "Bearer s3cret"
            return await call_next(request, call)

    Channel(url, interceptors=[Auth()])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from ..protocol import Metadata, ResponseMetadata
from ..service import MethodDescriptor
from ._call import CallOptions

__all__ = ["ClientCall", "ClientInterceptor", "StreamCall", "UnaryCall"]


class ClientCall(CallOptions):
    """One call as interceptors see it; change ``headers``, ``timeout`` or ``key`` freely."""

    __slots__ = ()

    def __init__(
        self,
        method: MethodDescriptor,
        headers: Metadata | None,
        timeout: float | None,
        metadata: ResponseMetadata | None,
        key: bytes | str | None,
    ) -> None:
        #: ``headers`` is the request metadata (a copy: changing it affects this call only).
        super().__init__(method, dict(headers) if headers else {}, timeout, metadata, key)

    def __repr__(self) -> str:
        return f"<ClientCall {self.method.path}>"


UnaryCall = Callable[[Any, ClientCall], Awaitable[Any]]
StreamCall = Callable[[Any, ClientCall], AsyncIterator[Any]]


class ClientInterceptor:
    """Base class; override ``intercept_unary`` and/or ``intercept_stream``."""

    async def intercept_unary(self, call_next: UnaryCall, request: Any, call: ClientCall) -> Any:
        """Around unary calls: returns the response (or raises ``RpcError``)."""
        return await call_next(request, call)

    def intercept_stream(
        self, call_next: StreamCall, request: Any, call: ClientCall
    ) -> AsyncIterator[Any]:
        """Around server-streaming, client-streaming and bidi calls."""
        return call_next(request, call)


def chain_unary(interceptors: Sequence[ClientInterceptor], last: UnaryCall) -> UnaryCall:
    """``last`` wrapped by ``interceptors``, the first one outermost."""
    call = last
    for interceptor in reversed(interceptors):
        call = _bind_unary(interceptor, call)
    return call


def chain_stream(interceptors: Sequence[ClientInterceptor], last: StreamCall) -> StreamCall:
    call = last
    for interceptor in reversed(interceptors):
        call = _bind_stream(interceptor, call)
    return call


def _bind_unary(interceptor: ClientInterceptor, call_next: UnaryCall) -> UnaryCall:
    def call(request: Any, details: ClientCall) -> Awaitable[Any]:
        return interceptor.intercept_unary(call_next, request, details)

    return call


def _bind_stream(interceptor: ClientInterceptor, call_next: StreamCall) -> StreamCall:
    def call(request: Any, details: ClientCall) -> AsyncIterator[Any]:
        return interceptor.intercept_stream(call_next, request, details)

    return call

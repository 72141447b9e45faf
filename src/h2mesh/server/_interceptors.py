"""Server interceptors: code that runs around every handler.

An interceptor sees each call's request, context and result. Unary and
client-streaming handlers return an awaitable result, so ``intercept`` wraps them;
server-streaming and bidi handlers return an async iterator, so ``intercept_stream``
wraps those. Interceptors are composed once when the server starts, never per call.

::

    class Auth(ServerInterceptor):
        async def intercept(self, call_next, request, ctx):
            if ctx.request_headers.get("authorization") != "Bearer s3cret":
                raise RpcError(Code.UNAUTHENTICATED, "bad token")
            return await call_next(request, ctx)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..service import MethodDescriptor
from ._context import Context

Handler = Callable[[Any, Context], Any]
UnaryNext = Callable[[Any, Context], Awaitable[Any]]
StreamNext = Callable[[Any, Context], AsyncIterator[Any]]


class ServerInterceptor:
    """Base class; override ``intercept`` and/or ``intercept_stream``."""

    async def intercept(self, call_next: UnaryNext, request: Any, ctx: Context) -> Any:
        """Around unary and client-streaming calls; ``request`` may be an iterator."""
        return await call_next(request, ctx)

    def intercept_stream(
        self, call_next: StreamNext, request: Any, ctx: Context
    ) -> AsyncIterator[Any]:
        """Around server-streaming and bidi calls; returns the response iterator."""
        return call_next(request, ctx)

    def wrap(self, method: MethodDescriptor, handler: Handler) -> Handler:
        """The handler with this interceptor around it (called once per method)."""
        if method.kind.server_streams:

            def streaming(request: Any, ctx: Context) -> AsyncIterator[Any]:
                return self.intercept_stream(handler, request, ctx)

            return streaming

        async def unary(request: Any, ctx: Context) -> Any:
            return await self.intercept(handler, request, ctx)

        return unary

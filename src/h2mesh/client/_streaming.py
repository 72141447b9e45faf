"""Streaming calls: one attempt on a picked endpoint (or the channel's one fixed pool),
the deadline across every message, and a server stream that never reached a server
sent again transparently."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from .._errors import Code, RpcError, UnprocessedError
from ._call import CallFlow, CallOptions
from ._endpoints import Endpoints
from ._pool import EndpointPool
from ._unary import ENDPOINT_FAILURES, TRANSPARENT_RETRIES, request_key

__all__ = ["StreamCalls"]


class StreamCalls:
    """Makes streaming calls through ``flow``; ``direct`` is the pool of a channel with
    one fixed endpoint and no per-endpoint policy (no balancer bookkeeping). ``prepare``
    completes a call's options and gives its timeout when the call starts (when it is
    first iterated, on the channel's loop)."""

    __slots__ = ("direct", "endpoints", "flow", "prepare")

    def __init__(
        self,
        endpoints: Endpoints,
        flow: CallFlow,
        direct: EndpointPool | None,
        prepare: Callable[[CallOptions], tuple[CallOptions, float | None]],
    ) -> None:
        self.endpoints = endpoints
        self.flow = flow
        self.direct = direct
        self.prepare = prepare

    async def call(
        self, call: CallOptions, request: Any, requests: AsyncIterable[Any] | None
    ) -> AsyncIterator[Any]:
        """The response messages of a streaming call."""
        call, timeout = self.prepare(call)
        if timeout is not None and timeout <= 0:
            raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded before the call started")
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        transparent = TRANSPARENT_RETRIES if requests is None else 0
        while True:
            yielded = False
            try:
                async for message in self._attempt(call, request, requests, deadline):
                    yielded = True
                    yield message
                return
            except UnprocessedError:
                if yielded or transparent <= 0:
                    raise
                transparent -= 1

    async def _attempt(
        self,
        call: CallOptions,
        request: Any,
        requests: AsyncIterable[Any] | None,
        deadline: float | None,
    ) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        endpoints = self.endpoints
        if self.direct is not None:
            endpoint = stats = None
            pool = self.direct
        else:
            if not endpoints.ready:
                await endpoints.start()
            endpoint, pool = endpoints.pick(request_key(call.key))
            stats = endpoints.balancer.started(endpoint)
        started = loop.time()
        ok = True
        responses = self.flow.stream(
            pool.open_stream,
            call,
            request,
            requests,
            None if deadline is None else deadline - started,
        )
        try:
            if deadline is None:
                async for message in responses:
                    yield message
                return
            try:
                while True:
                    async with asyncio.timeout_at(deadline):
                        message = await anext(responses)
                    yield message
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded") from None
        except RpcError as exc:
            ok = exc.code not in ENDPOINT_FAILURES
            raise
        finally:
            await responses.aclose()  # type: ignore[attr-defined]
            if endpoint is not None:
                now = loop.time()
                endpoints.balancer.finished(endpoint, ok, now - started, now, stats)

"""Streaming calls: one attempt on a picked endpoint (or the channel's one fixed pool),
under the call's deadline, and a server stream that never reached a server sent again
transparently.

A client or bidi stream on a channel with one fixed endpoint is the call flow's own
iterator, with nothing in between: no layer per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from .._errors import RpcError, UnprocessedError
from ._call import CallFlow, CallOptions
from ._endpoints import Endpoints
from ._metrics import TRANSPARENT, ClientMetrics
from ._pool import EndpointPool
from ._unary import ENDPOINT_FAILURES, TRANSPARENT_RETRIES, request_key

__all__ = ["StreamCalls"]


class StreamCalls:
    """Makes streaming calls through ``flow``; ``direct`` is the pool of a channel with
    one fixed endpoint and no per-endpoint policy (no balancer bookkeeping)."""

    __slots__ = ("direct", "endpoints", "flow", "metrics")

    def __init__(self, endpoints: Endpoints, flow: CallFlow, direct: EndpointPool | None) -> None:
        self.endpoints = endpoints
        self.flow = flow
        self.direct = direct
        #: Counts transparent retries (``Channel(metrics=)``), if set.
        self.metrics: ClientMetrics | None = None

    def call(
        self,
        call: CallOptions,
        request: Any,
        requests: AsyncIterable[Any] | None,
        deadline: float | None,
    ) -> AsyncIterator[Any]:
        """The response messages of a streaming call that ends by ``deadline``."""
        if requests is not None and self.direct is not None:
            # Nothing to send again (the requests are consumed) and nothing to count.
            return self.flow.stream(self.direct, call, None, requests, deadline)
        return self._again(call, request, requests, deadline)

    async def _again(
        self,
        call: CallOptions,
        request: Any,
        requests: AsyncIterable[Any] | None,
        deadline: float | None,
    ) -> AsyncIterator[Any]:
        # A server stream that never reached a server is sent again; others are not.
        transparent = TRANSPARENT_RETRIES if requests is None else 0
        while True:
            yielded = False
            try:
                if self.direct is not None:
                    responses = self.flow.stream(self.direct, call, request, requests, deadline)
                else:
                    responses = self._balanced(call, request, requests, deadline)
                try:
                    async for message in responses:
                        yielded = True
                        yield message
                finally:
                    await responses.aclose()  # type: ignore[attr-defined]
                return
            except UnprocessedError:
                if yielded or transparent <= 0:
                    raise
                transparent -= 1
                if self.metrics is not None:
                    self.metrics.count(TRANSPARENT, call.method)

    async def _balanced(
        self,
        call: CallOptions,
        request: Any,
        requests: AsyncIterable[Any] | None,
        deadline: float | None,
    ) -> AsyncIterator[Any]:
        """One attempt on a picked endpoint, with the balancer told how it went."""
        endpoints = self.endpoints
        if not endpoints.ready:
            await endpoints.start(deadline)
        endpoint, pool = endpoints.pick(request_key(call.key))
        stats = endpoints.balancer.started(endpoint)
        loop = asyncio.get_running_loop()
        started = loop.time()
        ok = True
        responses = self.flow.stream(pool, call, request, requests, deadline)
        try:
            async for message in responses:
                yield message
        except RpcError as exc:
            ok = exc.code not in ENDPOINT_FAILURES
            raise
        finally:
            await responses.aclose()  # type: ignore[attr-defined]
            now = loop.time()
            stats.finished(ok, now - started, now)  # (Balancer.finished, known stats)

"""Unary calls over balanced endpoints: attempts, transparent retries and gRFC A6 retries.

Each attempt goes to the endpoint the balancer picks, which is told how it went. An
attempt that never reached a server (no connection, refused stream, GOAWAY) is sent
again at once; a failed one is retried as the channel's ``RetryPolicy`` says, for
methods marked idempotent (all methods with ``retry_all``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .._errors import Code, RpcError, UnprocessedError
from ..resilience import RetryPolicy, RetryState, RetryThrottle
from ._call import CallFlow, CallOptions
from ._endpoints import Endpoints
from ._metrics import RETRY, TRANSPARENT, ClientMetrics

__all__ = ["ENDPOINT_FAILURES", "TRANSPARENT_RETRIES", "UnaryCalls", "request_key"]

# Outcomes that count against an endpoint (outlier detection); caller errors do not.
ENDPOINT_FAILURES = frozenset(
    {Code.UNAVAILABLE, Code.INTERNAL, Code.UNKNOWN, Code.DATA_LOSS, Code.DEADLINE_EXCEEDED}
)
# How often a call that never reached a server is sent again before giving up.
TRANSPARENT_RETRIES = 3


def request_key(key: bytes | str | None) -> bytes | None:
    """A call's ring-hash key as bytes."""
    return key.encode() if isinstance(key, str) else key


class UnaryCalls:
    """Sends unary calls to the endpoints of ``endpoints`` through ``flow``."""

    __slots__ = ("endpoints", "flow", "metrics", "retry", "retry_all", "throttle")

    def __init__(
        self,
        endpoints: Endpoints,
        flow: CallFlow,
        retry: RetryPolicy | None,
        retry_all: bool,
        throttle: RetryThrottle | None,
    ) -> None:
        self.endpoints = endpoints
        self.flow = flow
        self.retry = retry
        self.retry_all = retry_all
        self.throttle = throttle
        #: Counts retries (``Channel(metrics=)``), if set.
        self.metrics: ClientMetrics | None = None

    async def call(
        self, call: CallOptions, request: Any, deadline: float | None, retry: bool = True
    ) -> Any:
        """A unary call with transparent retries and, if configured, A6 retries, all by
        ``deadline`` (an event-loop time): each attempt ends by it (its timer), and a
        retry's backoff is only waited for if it ends sooner."""
        loop = asyncio.get_running_loop()
        state = (
            RetryState(self.retry, throttle=self.throttle)
            if retry and self.retry is not None and (call.method.idempotent or self.retry_all)
            else None
        )
        endpoints = self.endpoints
        balancer = endpoints.balancer
        key = request_key(call.key)
        transparent = TRANSPARENT_RETRIES
        while True:
            # One attempt on one picked endpoint, with the balancer told how it went.
            if not endpoints.ready:
                await endpoints.start(deadline)
            endpoint, pool = endpoints.pick(key)
            stats = balancer.started(endpoint)
            started = loop.time()
            ok = True
            failure: RpcError | None = None
            try:
                result = await self.flow.unary(pool, call, request, deadline)
            except RpcError as exc:
                ok = exc.code not in ENDPOINT_FAILURES
                if isinstance(exc, UnprocessedError):
                    endpoints.failed_to_reach(endpoint, pool)
                failure = exc
            finally:
                now = loop.time()
                stats.finished(ok, now - started, now)  # (Balancer.finished, known stats)
            if failure is None:
                endpoints.reached(endpoint)
                if state is not None:
                    state.on_success()
                return result
            # Sent again at once if another endpoint may take it; with every endpoint
            # down, the retry policy's backoff paces the attempts.
            if (
                isinstance(failure, UnprocessedError)
                and transparent > 0
                and (balancer.endpoints or not endpoints.down)
            ):
                transparent -= 1
                if self.metrics is not None:
                    self.metrics.count(TRANSPARENT, call.method)
                continue
            if state is None:
                raise failure
            decision = state.on_failure(
                failure.code,
                pushback=failure.metadata.get("grpc-retry-pushback-ms"),
                time_remaining=None if deadline is None else deadline - loop.time(),
            )
            if not decision.retry:
                raise failure
            if self.metrics is not None:
                self.metrics.count(RETRY, call.method)
            if decision.delay > 0:
                await asyncio.sleep(decision.delay)
            transparent = TRANSPARENT_RETRIES

"""Hedged unary calls (gRFC A6): one idempotent call sent to several endpoints, a delay
apart; the first success wins and the other attempts are cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

from .._errors import Code, RpcError
from ..resilience import HedgingPolicy, HedgingState, HedgingVerdict, RetryThrottle
from ._call import CallOptions
from ._metrics import HEDGE
from ._unary import UnaryCalls

__all__ = ["hedged_call"]


async def hedged_call(
    calls: UnaryCalls,
    policy: HedgingPolicy,
    throttle: RetryThrottle | None,
    call: CallOptions,
    request: Any,
    deadline: float | None,
) -> Any:
    """``call`` hedged per ``policy`` by ``deadline``; each hedge gets transparent
    retries, no A6 ones."""
    loop = asyncio.get_running_loop()
    state = HedgingState(policy, throttle=throttle)
    attempts: dict[asyncio.Task[Any], int] = {}
    last_error: RpcError | None = None
    try:
        while True:
            now = loop.time()
            if state.due(now):
                task = loop.create_task(calls.call(call, request, deadline, retry=False))
                attempts[task] = state.sent(now)
                if attempts[task] > 1 and calls.metrics is not None:
                    calls.metrics.count(HEDGE, call.method)
            if not attempts:
                assert last_error is not None
                raise last_error
            send_at = state.next_send_at()
            wait = None if send_at is None else max(0.0, send_at - loop.time())
            done, _ = await asyncio.wait(
                attempts, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                attempt = attempts.pop(task)
                exc = task.exception()
                if exc is None:
                    state.on_result(attempt, Code.OK, now=loop.time())
                    return task.result()
                if not isinstance(exc, RpcError):
                    raise exc
                last_error = exc
                outcome = state.on_result(
                    attempt,
                    exc.code,
                    now=loop.time(),
                    pushback=exc.metadata.get("grpc-retry-pushback-ms"),
                )
                if outcome.verdict is HedgingVerdict.FAIL:
                    raise exc
    finally:
        for task in attempts:
            task.cancel()

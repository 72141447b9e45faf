"""A call flow with an OpenTelemetry CLIENT span around each attempt, and the trace
context sent in the attempt's metadata (used only when tracing is on)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from ..observability._tracing import end_client_span, start_client_span
from ..protocol import ClientProtocol
from ._call import CallFlow, CallOptions, StreamOpener

__all__ = ["TracedCallFlow"]


class TracedCallFlow(CallFlow):
    __slots__ = ("tracer",)

    def __init__(
        self,
        protocol: ClientProtocol,
        base_headers: list[tuple[bytes, bytes]],
        max_size: int,
        tracer: Any,
    ) -> None:
        super().__init__(protocol, base_headers, max_size)
        self.tracer = tracer

    def _traced(self, call: CallOptions) -> tuple[Any, CallOptions]:
        span, md = start_client_span(self.tracer, self.protocol.name, call.method, call.headers)
        return span, CallOptions(call.method, md, call.timeout, call.metadata, call.key)

    async def unary(
        self, opener: StreamOpener, call: CallOptions, request: Any, deadline: float | None
    ) -> Any:
        span, call = self._traced(call)
        error: BaseException | None = None
        try:
            return await super().unary(opener, call, request, deadline)
        except BaseException as exc:
            error = exc
            raise
        finally:
            end_client_span(span, error)

    async def stream(
        self,
        opener: StreamOpener,
        call: CallOptions,
        request: Any,
        requests: AsyncIterable[Any] | None,
        deadline: float | None,
    ) -> AsyncIterator[Any]:
        span, call = self._traced(call)
        error: BaseException | None = None
        responses = super().stream(opener, call, request, requests, deadline)
        try:
            async for message in responses:
                yield message
        except BaseException as exc:
            error = exc
            raise
        finally:
            await responses.aclose()  # type: ignore[attr-defined]
            end_client_span(span, error)

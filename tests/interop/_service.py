"""The gRPC interop ``TestService`` written as an h2mesh service (protobuf types).

No ``from __future__ import annotations`` here: the message types come from modules
compiled at run time, so the annotations are evaluated when the class is defined.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from h2mesh import Code, Context, RpcError, Service, rpc

from ._protos import empty_pb2, messages_pb2

Empty = empty_pb2.Empty
SimpleRequest = messages_pb2.SimpleRequest
SimpleResponse = messages_pb2.SimpleResponse
StreamingInputCallRequest = messages_pb2.StreamingInputCallRequest
StreamingInputCallResponse = messages_pb2.StreamingInputCallResponse
StreamingOutputCallRequest = messages_pb2.StreamingOutputCallRequest
StreamingOutputCallResponse = messages_pb2.StreamingOutputCallResponse
Payload = messages_pb2.Payload

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"


def _echo_metadata(ctx: Context) -> None:
    md = ctx.request_headers
    if ECHO_INITIAL in md:
        ctx.response_headers[ECHO_INITIAL] = md[ECHO_INITIAL]
    if ECHO_TRAILING in md:
        ctx.response_trailers[ECHO_TRAILING] = md[ECHO_TRAILING]


def _check_status(req: Any) -> None:
    if req.HasField("response_status") and req.response_status.code:
        raise RpcError(Code(req.response_status.code), req.response_status.message)


def _payload(size: int) -> Any:
    return Payload(body=bytes(size))


class InteropTestService(Service, name="grpc.testing.TestService"):
    """grpc.testing.TestService; UnimplementedCall is deliberately left out."""

    @rpc
    async def empty_call(self, req: Empty, ctx: Context) -> Empty:
        return Empty()

    @rpc
    async def unary_call(self, req: SimpleRequest, ctx: Context) -> SimpleResponse:
        _echo_metadata(ctx)
        _check_status(req)
        return SimpleResponse(payload=_payload(req.response_size))

    @rpc
    async def streaming_output_call(
        self, req: StreamingOutputCallRequest, ctx: Context
    ) -> AsyncIterator[StreamingOutputCallResponse]:
        _echo_metadata(ctx)
        for params in req.response_parameters:
            if params.interval_us:
                await asyncio.sleep(params.interval_us / 1e6)
            yield StreamingOutputCallResponse(payload=_payload(params.size))
        _check_status(req)

    @rpc
    async def streaming_input_call(
        self, reqs: AsyncIterator[StreamingInputCallRequest], ctx: Context
    ) -> StreamingInputCallResponse:
        total = 0
        async for req in reqs:
            total += len(req.payload.body)
        return StreamingInputCallResponse(aggregated_payload_size=total)

    @rpc
    async def full_duplex_call(
        self, reqs: AsyncIterator[StreamingOutputCallRequest], ctx: Context
    ) -> AsyncIterator[StreamingOutputCallResponse]:
        _echo_metadata(ctx)
        async for req in reqs:
            _check_status(req)
            for params in req.response_parameters:
                if params.interval_us:
                    await asyncio.sleep(params.interval_us / 1e6)
                yield StreamingOutputCallResponse(payload=_payload(params.size))

    @rpc
    async def half_duplex_call(
        self, reqs: AsyncIterator[StreamingOutputCallRequest], ctx: Context
    ) -> AsyncIterator[StreamingOutputCallResponse]:
        buffered = [req async for req in reqs]
        for req in buffered:
            for params in req.response_parameters:
                yield StreamingOutputCallResponse(payload=_payload(params.size))


class TestServiceApi(InteropTestService, name="grpc.testing.TestService"):
    """The full client-side API, UnimplementedCall included (for stubs only)."""

    __test__ = False

    @rpc
    async def unimplemented_call(self, req: Empty, ctx: Context) -> Empty:
        raise RpcError(Code.UNIMPLEMENTED)


class UnimplementedServiceApi(Service, name="grpc.testing.UnimplementedService"):
    """grpc.testing.UnimplementedService, which no server here implements."""

    @rpc
    async def unimplemented_call(self, req: Empty, ctx: Context) -> Empty:
        raise RpcError(Code.UNIMPLEMENTED)

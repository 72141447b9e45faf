"""The gRPC interop ``TestService`` written as grpcio servicers (sync and ``grpc.aio``).

This is grpcio code as grpcio's own examples write it: a subclass of the generated
``TestServiceServicer``, added with the generated ``add_TestServiceServicer_to_server``.
The tests hand these, unchanged, to an h2mesh ``Server``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

from ._protos import empty_pb2, messages_pb2, test_pb2_grpc

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"


def _echo(context: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    md = dict(context.invocation_metadata())
    initial = [(ECHO_INITIAL, md[ECHO_INITIAL])] if ECHO_INITIAL in md else []
    trailing = [(ECHO_TRAILING, md[ECHO_TRAILING])] if ECHO_TRAILING in md else []
    return initial, trailing


def _payload(size: int) -> Any:
    return messages_pb2.Payload(body=bytes(size))


def _status(req: Any) -> tuple[grpc.StatusCode, str] | None:
    if req.HasField("response_status") and req.response_status.code:
        code = next(c for c in grpc.StatusCode if c.value[0] == req.response_status.code)
        return code, req.response_status.message
    return None


class SyncTestService(test_pb2_grpc.TestServiceServicer):  # type: ignore[misc]
    """grpc.testing.TestService for ``grpc.server(futures.ThreadPoolExecutor())``."""

    def EmptyCall(self, request: Any, context: grpc.ServicerContext) -> Any:
        return empty_pb2.Empty()

    def UnaryCall(self, request: Any, context: grpc.ServicerContext) -> Any:
        initial, trailing = _echo(context)
        if initial:
            context.send_initial_metadata(initial)
        context.set_trailing_metadata(trailing)
        status = _status(request)
        if status is not None:
            context.set_code(status[0])
            context.set_details(status[1])
            return messages_pb2.SimpleResponse()
        return messages_pb2.SimpleResponse(payload=_payload(request.response_size))

    def StreamingOutputCall(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        initial, trailing = _echo(context)
        if initial:
            context.send_initial_metadata(initial)
        context.set_trailing_metadata(trailing)
        for params in request.response_parameters:
            if params.interval_us:
                time.sleep(params.interval_us / 1e6)
                if not context.is_active():
                    return
            yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))
        status = _status(request)
        if status is not None:
            context.abort(*status)

    def StreamingInputCall(self, request_iterator: Iterator[Any], context: Any) -> Any:
        total = sum(len(req.payload.body) for req in request_iterator)
        return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)

    def FullDuplexCall(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        initial, trailing = _echo(context)
        if initial:
            context.send_initial_metadata(initial)
        context.set_trailing_metadata(trailing)
        for req in request_iterator:
            status = _status(req)
            if status is not None:
                context.abort(*status)
            for params in req.response_parameters:
                if params.interval_us:
                    time.sleep(params.interval_us / 1e6)
                yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))

    def HalfDuplexCall(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        buffered = list(request_iterator)
        for req in buffered:
            for params in req.response_parameters:
                yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))


class AioTestService(test_pb2_grpc.TestServiceServicer):  # type: ignore[misc]
    """grpc.testing.TestService for ``grpc.aio.server()``."""

    async def EmptyCall(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return empty_pb2.Empty()

    async def UnaryCall(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        initial, trailing = _echo(context)
        if initial:
            await context.send_initial_metadata(initial)
        context.set_trailing_metadata(trailing)
        status = _status(request)
        if status is not None:
            await context.abort(*status)
        return messages_pb2.SimpleResponse(payload=_payload(request.response_size))

    async def StreamingOutputCall(self, request: Any, context: Any) -> AsyncIterator[Any]:
        initial, trailing = _echo(context)
        if initial:
            await context.send_initial_metadata(initial)
        context.set_trailing_metadata(trailing)
        for params in request.response_parameters:
            if params.interval_us:
                await asyncio.sleep(params.interval_us / 1e6)
            yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))
        status = _status(request)
        if status is not None:
            await context.abort(*status)

    async def StreamingInputCall(self, request_iterator: Any, context: Any) -> Any:
        total = 0
        async for req in request_iterator:
            total += len(req.payload.body)
        return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)

    async def FullDuplexCall(self, request_iterator: Any, context: Any) -> None:
        # The other grpc.aio style: read() and write() on the context, no generators.
        initial, trailing = _echo(context)
        if initial:
            await context.send_initial_metadata(initial)
        context.set_trailing_metadata(trailing)
        while True:
            req = await context.read()
            if req is grpc.aio.EOF:
                return
            status = _status(req)
            if status is not None:
                await context.abort(*status)
            for params in req.response_parameters:
                if params.interval_us:
                    await asyncio.sleep(params.interval_us / 1e6)
                await context.write(
                    messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))
                )

    async def HalfDuplexCall(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        buffered = [req async for req in request_iterator]
        for req in buffered:
            for params in req.response_parameters:
                yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))


def add_servicer(server: Any, servicer: Any) -> None:
    """What a grpcio program does with its server, done to an h2mesh ``Server``."""
    test_pb2_grpc.add_TestServiceServicer_to_server(servicer, server)

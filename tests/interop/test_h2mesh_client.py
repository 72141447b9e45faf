"""The gRPC interop cases, the h2mesh client against grpcio's server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from h2mesh import Channel, Code, RpcError
from h2mesh.protocol import ResponseMetadata

from ._protos import empty_pb2, messages_pb2, test_pb2_grpc
from ._service import ECHO_INITIAL, ECHO_TRAILING, TestServiceApi, UnimplementedServiceApi

SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"


def _echo(context: Any) -> None:
    md = dict(context.invocation_metadata())
    if ECHO_INITIAL in md:
        context.send_initial_metadata(((ECHO_INITIAL, md[ECHO_INITIAL]),))
    if ECHO_TRAILING in md:
        context.set_trailing_metadata(((ECHO_TRAILING, md[ECHO_TRAILING]),))


def _status(req: Any, context: Any) -> None:
    if req.HasField("response_status") and req.response_status.code:
        context.abort(
            grpc.StatusCode(_CODES[req.response_status.code]), req.response_status.message
        )


_CODES = {c.value[0]: c.value for c in grpc.StatusCode}


class GrpcioTestService(test_pb2_grpc.TestServiceServicer):  # type: ignore[misc]
    """TestService on grpcio, the reference peer."""

    def EmptyCall(self, req: Any, context: Any) -> Any:
        return empty_pb2.Empty()

    def UnaryCall(self, req: Any, context: Any) -> Any:
        _echo(context)
        _status(req, context)
        return messages_pb2.SimpleResponse(
            payload=messages_pb2.Payload(body=bytes(req.response_size))
        )

    def StreamingOutputCall(self, req: Any, context: Any) -> Iterator[Any]:
        for p in req.response_parameters:
            time.sleep(p.interval_us / 1e6)
            yield messages_pb2.StreamingOutputCallResponse(
                payload=messages_pb2.Payload(body=bytes(p.size))
            )

    def StreamingInputCall(self, reqs: Iterator[Any], context: Any) -> Any:
        total = sum(len(r.payload.body) for r in reqs)
        return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)

    def FullDuplexCall(self, reqs: Iterator[Any], context: Any) -> Iterator[Any]:
        _echo(context)
        for req in reqs:
            _status(req, context)
            for p in req.response_parameters:
                time.sleep(p.interval_us / 1e6)
                yield messages_pb2.StreamingOutputCallResponse(
                    payload=messages_pb2.Payload(body=bytes(p.size))
                )


@pytest.fixture(scope="module")
def grpcio_url() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    test_pb2_grpc.add_TestServiceServicer_to_server(GrpcioTestService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop(0).wait(5)


@pytest.fixture(params=[None, "gzip"])
def compression(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


def _out_req(size: int, payload: int = 0, **kw: Any) -> Any:
    return messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=size)],
        payload=messages_pb2.Payload(body=bytes(payload)),
        **kw,
    )


def test_unary_cases(run: Any, grpcio_url: str, compression: str | None) -> None:
    async def main() -> None:
        async with Channel(grpcio_url, protocol="grpc", compression=compression) as ch:
            api = ch.stub(TestServiceApi)
            # empty_unary
            assert await api.empty_call(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()
            # large_unary
            req = messages_pb2.SimpleRequest(
                response_size=314159, payload=messages_pb2.Payload(body=bytes(271828))
            )
            resp = await api.unary_call(req, timeout=5)
            assert resp.payload.body == bytes(314159)
            # custom_metadata
            md = ResponseMetadata()
            headers = {ECHO_INITIAL: "test_initial_metadata_value", ECHO_TRAILING: "\xab\xab\xab"}
            resp = await api.unary_call(req, headers=headers, metadata=md, timeout=5)
            assert md.headers[ECHO_INITIAL] == "test_initial_metadata_value"
            assert md.trailers[ECHO_TRAILING].encode("latin-1") == b"\xab\xab\xab"
            # status_code_and_message, special_status_message
            for message in ("test status message", SPECIAL_MESSAGE):
                bad = messages_pb2.SimpleRequest(
                    response_status=messages_pb2.EchoStatus(code=2, message=message)
                )
                with pytest.raises(RpcError) as info:
                    await api.unary_call(bad, timeout=5)
                assert info.value.code == Code.UNKNOWN
                assert info.value.message == message
            # unimplemented_method, unimplemented_service
            with pytest.raises(RpcError) as info:
                await api.unimplemented_call(empty_pb2.Empty(), timeout=5)
            assert info.value.code == Code.UNIMPLEMENTED
            with pytest.raises(RpcError) as info:
                await ch.stub(UnimplementedServiceApi).unimplemented_call(
                    empty_pb2.Empty(), timeout=5
                )
            assert info.value.code == Code.UNIMPLEMENTED

    run(main())


def test_stream_cases(run: Any, grpcio_url: str, compression: str | None) -> None:
    async def main() -> None:
        async with Channel(grpcio_url, protocol="grpc", compression=compression) as ch:
            api = ch.stub(TestServiceApi)
            # client_streaming
            sizes = [27182, 8, 1828, 45904]

            async def inputs() -> AsyncIterator[Any]:
                for n in sizes:
                    yield messages_pb2.StreamingInputCallRequest(
                        payload=messages_pb2.Payload(body=bytes(n))
                    )

            resp = await api.streaming_input_call(inputs(), timeout=5)
            assert resp.aggregated_payload_size == 74922
            # server_streaming
            out_sizes = [31415, 9, 2653, 58979]
            req = messages_pb2.StreamingOutputCallRequest(
                response_parameters=[messages_pb2.ResponseParameters(size=n) for n in out_sizes]
            )
            got = [len(r.payload.body) async for r in api.streaming_output_call(req, timeout=5)]
            assert got == out_sizes
            # ping_pong
            queue: asyncio.Queue[Any] = asyncio.Queue()

            async def pings() -> AsyncIterator[Any]:
                while (item := await queue.get()) is not None:
                    yield item

            responses = api.full_duplex_call(pings(), timeout=5)
            for size, payload in zip(out_sizes, sizes, strict=True):
                await queue.put(_out_req(size, payload))
                assert len((await anext(responses)).payload.body) == size
            await queue.put(None)
            assert [r async for r in responses] == []

            # empty_stream
            async def nothing() -> AsyncIterator[Any]:
                return
                yield

            assert [r async for r in api.full_duplex_call(nothing(), timeout=5)] == []
            # custom_metadata on a stream
            md = ResponseMetadata()
            headers = {ECHO_INITIAL: "test_initial_metadata_value", ECHO_TRAILING: "\xab\xab\xab"}

            async def one() -> AsyncIterator[Any]:
                yield _out_req(314159, 271828)

            got = [
                len(r.payload.body)
                async for r in api.full_duplex_call(one(), headers=headers, metadata=md, timeout=5)
            ]
            assert got == [314159]
            assert md.headers[ECHO_INITIAL] == "test_initial_metadata_value"
            assert md.trailers[ECHO_TRAILING] == "\xab\xab\xab"

            # status_code_and_message on a stream
            async def failing() -> AsyncIterator[Any]:
                yield messages_pb2.StreamingOutputCallRequest(
                    response_status=messages_pb2.EchoStatus(code=2, message=SPECIAL_MESSAGE)
                )

            with pytest.raises(RpcError) as info:
                [r async for r in api.full_duplex_call(failing(), timeout=5)]
            assert info.value.code == Code.UNKNOWN
            assert info.value.message == SPECIAL_MESSAGE

    run(main())


def test_cancel_and_timeout_cases(run: Any, grpcio_url: str) -> None:
    async def main() -> None:
        async with Channel(grpcio_url, protocol="grpc") as ch:
            api = ch.stub(TestServiceApi)
            hold = asyncio.Event()

            async def held() -> AsyncIterator[Any]:
                await hold.wait()
                return
                yield

            # cancel_after_begin
            task = asyncio.ensure_future(api.streaming_input_call(held(), timeout=5))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

            # cancel_after_first_response
            async def first_then_hold() -> AsyncIterator[Any]:
                yield _out_req(31415, 27182)
                await hold.wait()

            responses = api.full_duplex_call(first_then_hold(), timeout=5)
            assert len((await anext(responses)).payload.body) == 31415
            await responses.aclose()

            # timeout_on_sleeping_server
            async def payload_then_hold() -> AsyncIterator[Any]:
                yield messages_pb2.StreamingOutputCallRequest(
                    payload=messages_pb2.Payload(body=bytes(27182))
                )
                await hold.wait()

            with pytest.raises(RpcError) as info:
                [r async for r in api.full_duplex_call(payload_then_hold(), timeout=0.001)]
            assert info.value.code == Code.DEADLINE_EXCEEDED

            # a slow server stream ends with DEADLINE_EXCEEDED (grpc-timeout honoured)
            slow = messages_pb2.StreamingOutputCallRequest(
                response_parameters=[messages_pb2.ResponseParameters(size=1, interval_us=500_000)]
            )
            with pytest.raises(RpcError) as info:
                [r async for r in api.streaming_output_call(slow, timeout=0.1)]
            assert info.value.code == Code.DEADLINE_EXCEEDED
            # The channel is still good.
            assert await api.empty_call(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()
            hold.set()

    run(main())


def test_json_codec_against_h2mesh_is_symmetric(run: Any, grpcio_url: str) -> None:
    """grpcio only speaks proto; asking it for +json gets a clear error, not a hang."""

    async def main() -> None:
        async with Channel(grpcio_url, protocol="grpc", codec="json") as ch:
            with pytest.raises(RpcError) as info:
                await ch.stub(TestServiceApi).empty_call(empty_pb2.Empty(), timeout=5)
            assert info.value.code in (Code.UNIMPLEMENTED, Code.UNKNOWN, Code.INTERNAL)

    run(main())

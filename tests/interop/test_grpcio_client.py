"""The gRPC interop cases, grpcio's client against the h2mesh server.

Cases as named in grpc's doc/interop-test-descriptions.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from ._protos import empty_pb2, messages_pb2, test_pb2_grpc
from ._service import ECHO_INITIAL, ECHO_TRAILING, InteropTestService

SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"


@pytest.fixture
def server_services() -> list[Any]:
    return [InteropTestService()]


@pytest.fixture
def channel(server_url: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server_url.removeprefix("http://")) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> test_pb2_grpc.TestServiceStub:
    return test_pb2_grpc.TestServiceStub(channel)


def _out_req(size: int, payload: int = 0, **kw: Any) -> Any:
    return messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=size)],
        payload=messages_pb2.Payload(body=bytes(payload)),
        **kw,
    )


def test_empty_unary(stub: Any) -> None:
    assert stub.EmptyCall(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()


def test_large_unary(stub: Any) -> None:
    req = messages_pb2.SimpleRequest(
        response_size=314159, payload=messages_pb2.Payload(body=bytes(271828))
    )
    resp = stub.UnaryCall(req, timeout=5)
    assert resp.payload.body == bytes(314159)


def test_large_unary_compressed(stub: Any) -> None:
    req = messages_pb2.SimpleRequest(
        response_size=314159, payload=messages_pb2.Payload(body=bytes(271828))
    )
    resp = stub.UnaryCall(req, timeout=5, compression=grpc.Compression.Gzip)
    assert resp.payload.body == bytes(314159)


def test_client_streaming(stub: Any) -> None:
    sizes = [27182, 8, 1828, 45904]
    reqs = (
        messages_pb2.StreamingInputCallRequest(payload=messages_pb2.Payload(body=bytes(n)))
        for n in sizes
    )
    resp = stub.StreamingInputCall(reqs, timeout=5)
    assert resp.aggregated_payload_size == 74922


def test_server_streaming(stub: Any) -> None:
    sizes = [31415, 9, 2653, 58979]
    req = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=n) for n in sizes]
    )
    got = [len(r.payload.body) for r in stub.StreamingOutputCall(req, timeout=5)]
    assert got == sizes


def test_ping_pong(stub: Any) -> None:
    requests = [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)]
    outbox: list[Any] = []
    ready = threading.Semaphore(0)

    def gen() -> Iterator[Any]:
        for _ in requests:
            ready.acquire()
            yield outbox.pop(0)

    call = stub.FullDuplexCall(gen(), timeout=5)
    for size, payload in requests:
        outbox.append(_out_req(size, payload))
        ready.release()
        assert len(next(call).payload.body) == size
    with pytest.raises(StopIteration):
        next(call)
    assert call.code() == grpc.StatusCode.OK


def test_empty_stream(stub: Any) -> None:
    assert list(stub.FullDuplexCall(iter(()), timeout=5)) == []


def test_custom_metadata(stub: Any) -> None:
    metadata = ((ECHO_INITIAL, "test_initial_metadata_value"), (ECHO_TRAILING, b"\xab\xab\xab"))
    req = messages_pb2.SimpleRequest(
        response_size=314159, payload=messages_pb2.Payload(body=bytes(271828))
    )
    resp, call = stub.UnaryCall.with_call(req, metadata=metadata, timeout=5)
    assert len(resp.payload.body) == 314159
    assert (ECHO_INITIAL, "test_initial_metadata_value") in call.initial_metadata()
    assert (ECHO_TRAILING, b"\xab\xab\xab") in call.trailing_metadata()

    call = stub.FullDuplexCall(iter([_out_req(314159, 271828)]), metadata=metadata, timeout=5)
    assert [len(r.payload.body) for r in call] == [314159]
    assert (ECHO_INITIAL, "test_initial_metadata_value") in call.initial_metadata()
    assert (ECHO_TRAILING, b"\xab\xab\xab") in call.trailing_metadata()


@pytest.mark.parametrize("message", ["test status message", SPECIAL_MESSAGE])
def test_status_code_and_message(stub: Any, message: str) -> None:
    status = messages_pb2.EchoStatus(code=2, message=message)
    with pytest.raises(grpc.RpcError) as info:
        stub.UnaryCall(messages_pb2.SimpleRequest(response_status=status), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert info.value.details() == message

    call = stub.FullDuplexCall(
        iter([messages_pb2.StreamingOutputCallRequest(response_status=status)]), timeout=5
    )
    with pytest.raises(grpc.RpcError) as info:
        list(call)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert info.value.details() == message


def test_unimplemented_method(channel: grpc.Channel) -> None:
    call = channel.unary_unary(
        "/grpc.testing.TestService/UnimplementedCall",
        request_serializer=empty_pb2.Empty.SerializeToString,
        response_deserializer=empty_pb2.Empty.FromString,
    )
    with pytest.raises(grpc.RpcError) as info:
        call(empty_pb2.Empty(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unimplemented_service(channel: grpc.Channel) -> None:
    stub = test_pb2_grpc.UnimplementedServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.UnimplementedCall(empty_pb2.Empty(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_cancel_after_begin(stub: Any) -> None:
    hold = threading.Event()

    def never() -> Iterator[Any]:
        hold.wait(5)
        return
        yield

    fut = stub.StreamingInputCall.future(never(), timeout=5)
    fut.cancel()
    hold.set()
    assert fut.cancelled()
    assert fut.code() == grpc.StatusCode.CANCELLED
    # The server is still fine afterwards.
    assert stub.EmptyCall(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()


def test_cancel_after_first_response(stub: Any) -> None:
    hold = threading.Event()

    def gen() -> Iterator[Any]:
        yield _out_req(31415, 27182)
        hold.wait(5)

    call = stub.FullDuplexCall(gen(), timeout=5)
    assert len(next(call).payload.body) == 31415
    call.cancel()
    hold.set()
    assert call.code() == grpc.StatusCode.CANCELLED
    assert stub.EmptyCall(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()


def test_timeout_on_sleeping_server(stub: Any) -> None:
    hold = threading.Event()

    def gen() -> Iterator[Any]:
        yield messages_pb2.StreamingOutputCallRequest(
            payload=messages_pb2.Payload(body=bytes(27182))
        )
        hold.wait(5)

    call = stub.FullDuplexCall(gen(), timeout=0.001)
    with pytest.raises(grpc.RpcError) as info:
        list(call)
    hold.set()
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_server_side_deadline(stub: Any) -> None:
    """The grpc-timeout reaches the handler: a slow stream ends with DEADLINE_EXCEEDED."""
    req = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=1, interval_us=2_000_000)]
    )
    with pytest.raises(grpc.RpcError) as info:
        list(stub.StreamingOutputCall(req, timeout=0.2))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

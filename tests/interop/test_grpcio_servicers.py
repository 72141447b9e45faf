"""grpcio servicers, unchanged, served by h2mesh.

The servicers (sync and ``grpc.aio``) are added with grpcio's generated
``add_TestServiceServicer_to_server`` to an h2mesh ``Server``; then the gRPC interop
cases of ``test_grpcio_client`` run against them with grpcio's client, and curl, the
h2mesh Channel (gRPC-Web) and grpcio's reflection client call the same methods.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from h2mesh import Channel, Server

from ..conftest import LiveServer
from ._grpcio_servicers import AioTestService, SyncTestService, add_servicer
from ._protos import empty_pb2, messages_pb2, test_pb2_grpc

# The interop cases, run here against the grpcio servicers (fixtures come along).
from .test_grpcio_client import (  # noqa: F401
    channel,
    stub,
    test_cancel_after_begin,
    test_cancel_after_first_response,
    test_client_streaming,
    test_custom_metadata,
    test_empty_stream,
    test_empty_unary,
    test_large_unary,
    test_large_unary_compressed,
    test_ping_pong,
    test_server_side_deadline,
    test_server_streaming,
    test_status_code_and_message,
    test_timeout_on_sleeping_server,
    test_unimplemented_method,
    test_unimplemented_service,
)

UNARY = "/grpc.testing.TestService/UnaryCall"


class ProbeService(SyncTestService):
    """Reports what the context tells it, and waits for cancellation when asked."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.ended = threading.Event()
        self.returned = threading.Event()
        self.was_active: list[bool] = []

    def UnaryCall(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.fill_username:
            # Block until the caller cancels; add_callback and is_active see it.
            context.add_callback(self.ended.set)
            self.started.set()
            self.ended.wait(5)
            self.was_active.append(context.is_active())
            self.returned.set()
            return messages_pb2.SimpleResponse()
        remaining = context.time_remaining()
        context.set_trailing_metadata(
            [
                ("peer", context.peer()),
                ("remaining", "none" if remaining is None else f"{remaining:.3f}"),
            ]
        )
        if request.fill_server_id:
            context.cancel()
        return messages_pb2.SimpleResponse(username="probe")

    def EmptyCall(self, request: Any, context: grpc.ServicerContext) -> Any:
        raise ValueError("a servicer bug, with a secret in it")


@pytest.fixture(params=["sync", "aio"])
def servicer(request: pytest.FixtureRequest) -> Any:
    return SyncTestService() if request.param == "sync" else AioTestService()


@pytest.fixture
def live_server(loop_kind: str, servicer: Any) -> Iterator[LiveServer]:
    live = LiveServer([], loop_kind, setup=lambda server: add_servicer(server, servicer))
    try:
        live.start()
        yield live
    finally:
        live.close()


def _curl_json(curl: str, url: str, body: dict[str, Any], *args: str) -> tuple[int, Any]:
    out = subprocess.run(
        [
            curl,
            "-sS",
            *args,
            "-H",
            "content-type: application/json",
            "-d",
            json.dumps(body),
            "-w",
            "\n%{http_code}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    text, _, status = out.rpartition("\n")
    return int(status), json.loads(text)


@pytest.mark.parametrize("http", ["--http1.1", "--http2-prior-knowledge"])
def test_connect_json_with_curl(curl: str, server_url: str, http: str) -> None:
    status, body = _curl_json(curl, server_url + UNARY, {"responseSize": 3}, http)
    assert (status, body) == (200, {"payload": {"body": "AAAA"}})
    # set_code/set_details (sync) and abort (aio) reach a Connect caller as its error.
    failing = {"responseStatus": {"code": 5, "message": "no such thing"}}
    status, body = _curl_json(curl, server_url + UNARY, failing, http)
    assert (status, body) == (404, {"code": "not_found", "message": "no such thing"})


def test_connect_streams_and_grpc_web_through_channel(run: Any, server_url: str) -> None:
    from ._service import TestServiceApi

    async def main() -> None:
        for protocol, codec in (("connect", "json"), ("grpc-web", "proto"), ("grpc", "proto")):
            async with Channel(server_url, protocol=protocol, codec=codec) as ch:
                api = ch.stub(TestServiceApi)
                req = messages_pb2.StreamingOutputCallRequest(
                    response_parameters=[messages_pb2.ResponseParameters(size=n) for n in (1, 2)]
                )
                got = [len(r.payload.body) async for r in api.streaming_output_call(req)]
                assert got == [1, 2], protocol
                reqs = [
                    messages_pb2.StreamingOutputCallRequest(
                        response_parameters=[messages_pb2.ResponseParameters(size=4)]
                    )
                ] * 2
                if protocol != "grpc-web":  # gRPC-Web has no client streams
                    got = [len(r.payload.body) async for r in api.full_duplex_call(_aiter(reqs))]
                    assert got == [4, 4], protocol

    run(main())


async def _aiter(items: list[Any]) -> Any:
    for item in items:
        yield item


def test_reflection_lists_the_grpcio_service(server_url: str) -> None:
    with grpc.insecure_channel(server_url.removeprefix("http://")) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        reqs = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="grpc.testing.TestService"
            ),
        ]
        listed, file = list(stub.ServerReflectionInfo(iter(reqs), timeout=5))
    names = {s.name for s in listed.list_services_response.service}
    assert "grpc.testing.TestService" in names
    assert file.file_descriptor_response.file_descriptor_proto


# -- the ServicerContext ------------------------------------------------------------------
@pytest.fixture
def probe() -> ProbeService:
    return ProbeService()


@pytest.fixture
def probe_server(loop_kind: str, probe: ProbeService) -> Iterator[LiveServer]:
    live = LiveServer([], loop_kind, setup=lambda server: add_servicer(server, probe))
    try:
        live.start()
        yield live
    finally:
        live.close()


@pytest.fixture
def probe_stub(probe_server: LiveServer) -> Iterator[Any]:
    with grpc.insecure_channel(probe_server.url.removeprefix("http://")) as ch:
        yield test_pb2_grpc.TestServiceStub(ch)


def test_context_peer_and_time_remaining(probe_stub: Any) -> None:
    _, call = probe_stub.UnaryCall.with_call(messages_pb2.SimpleRequest(), timeout=5)
    trailers = dict(call.trailing_metadata())
    assert trailers["peer"].startswith("ipv4:127.0.0.1:")
    assert 0 < float(trailers["remaining"]) <= 5.1  # grpc-timeout is rounded up
    _, call = probe_stub.UnaryCall.with_call(messages_pb2.SimpleRequest())
    assert dict(call.trailing_metadata())["remaining"] == "none"


def test_context_callbacks_and_is_active_on_cancel(probe: ProbeService, probe_stub: Any) -> None:
    fut = probe_stub.UnaryCall.future(messages_pb2.SimpleRequest(fill_username=True), timeout=5)
    # The servicer's thread blocks until its add_callback fires: that is the cancel.
    assert probe.started.wait(5)
    fut.cancel()
    assert probe.ended.wait(5), "add_callback did not run when the call was cancelled"
    assert fut.cancelled()
    assert probe.returned.wait(5)
    assert probe.was_active == [False]


def test_context_cancel_resets_the_call(probe_stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        probe_stub.UnaryCall(messages_pb2.SimpleRequest(fill_server_id=True), timeout=5)
    assert info.value.code() == grpc.StatusCode.CANCELLED


def test_servicer_exception_is_unknown_without_its_text(probe_stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        probe_stub.EmptyCall(empty_pb2.Empty(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert "secret" not in (info.value.details() or "")
    # The server keeps serving.
    assert probe_stub.UnaryCall(messages_pb2.SimpleRequest(), timeout=5).username == "probe"


def test_grpcio_services_replace_builtins_and_register_once() -> None:
    from grpc_health.v1 import health, health_pb2_grpc

    server = Server([])
    add_servicer(server, SyncTestService())  # adds it twice: generic and registered handlers
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    paths = [m.path for m in server.methods]
    assert len(paths) == len(set(paths))
    assert UNARY in paths
    assert server.health is None  # grpcio's health servicer took over


def test_unsupported_generic_handler_is_refused() -> None:
    class Custom(grpc.GenericRpcHandler):
        def service(self, handler_call_details: Any) -> None:
            return None

    with pytest.raises(TypeError, match="GenericRpcHandler"):
        Server([]).add_generic_rpc_handlers((Custom(),))


def test_oversized_request_in_a_client_stream(stub: Any) -> None:  # noqa: F811
    """The server's 4 MiB limit ends the call with RESOURCE_EXHAUSTED, whatever the
    servicer does with the error its request iterator raised."""
    big = messages_pb2.StreamingInputCallRequest(payload=messages_pb2.Payload(body=bytes(5 << 20)))
    with pytest.raises(grpc.RpcError) as info:
        stub.StreamingInputCall(iter([big]), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.EmptyCall(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()

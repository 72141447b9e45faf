"""The built-in health and reflection services, against grpcio's own clients
(grpcio-health-checking's stub, grpcio-reflection's descriptor database)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from examples.greeter import Greeter
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from h2mesh import Service, rpc
from h2mesh.server._reflection import ReflectionV1, ServerReflectionRequest

from ..conftest import LiveServer
from ._protos import messages_pb2
from ._service import InteropTestService

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


@pytest.fixture
def server_services() -> list[Any]:
    return [InteropTestService(), Greeter()]


@pytest.fixture
def channel(server_url: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server_url.removeprefix("http://")) as ch:
        yield ch


def _set_health(live: LiveServer, name: str, status: str) -> None:
    async def set_status() -> None:
        assert live.server is not None and live.server.health is not None
        live.server.health.set(name, status)

    live.call(set_status())


# -- reflection --------------------------------------------------------------------------
def test_reflection_lists_services(channel: grpc.Channel) -> None:
    db = ProtoReflectionDescriptorDatabase(channel)
    assert set(db.get_services()) == {
        "grpc.testing.TestService",
        "demo.v1.Greeter",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def test_reflection_resolves_proto_first_and_python_first(channel: grpc.Channel) -> None:
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    test_service = pool.FindServiceByName("grpc.testing.TestService")
    unary = test_service.methods_by_name["UnaryCall"]
    assert unary.input_type.full_name == "grpc.testing.SimpleRequest"
    assert unary.input_type.fields_by_name["payload"].message_type.full_name == (
        "grpc.testing.Payload"
    )
    greeter = pool.FindServiceByName("demo.v1.Greeter")
    assert greeter.file.name == "demo/v1/greeter.proto"
    count = greeter.methods_by_name["Count"]
    assert count.input_type.full_name == "demo.v1.CountRequest"
    assert [f.name for f in count.input_type.fields] == ["to", "delay"]
    assert count.server_streaming and not count.client_streaming
    chat = pool.FindMethodByName("demo.v1.Greeter.Chat")
    assert chat.client_streaming and chat.server_streaming
    health = pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")
    assert [v.name for v in health.enum_types_by_name["ServingStatus"].values] == [
        "UNKNOWN",
        "SERVING",
        "NOT_SERVING",
        "SERVICE_UNKNOWN",
    ]


def _ask(channel: grpc.Channel, version: str, *reqs: Any) -> list[Any]:
    info = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return list(info(iter(reqs), timeout=5))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_answers(channel: grpc.Channel, version: str) -> None:
    req = reflection_pb2.ServerReflectionRequest
    by_file, missing, extension, numbers, unknown_type = _ask(
        channel,
        version,
        req(host="h", file_by_filename="h2interop/test.proto"),
        req(file_containing_symbol="no.such.Symbol"),
        req(file_containing_extension=reflection_pb2.ExtensionRequest(containing_type="x")),
        req(all_extension_numbers_of_type="grpc.testing.SimpleRequest"),
        req(all_extension_numbers_of_type="no.such.Type"),
    )
    assert by_file.valid_host == "h"
    assert by_file.original_request.file_by_filename == "h2interop/test.proto"
    names = [
        descriptor_pb2.FileDescriptorProto.FromString(raw).name
        for raw in by_file.file_descriptor_response.file_descriptor_proto
    ]
    assert names[0] == "h2interop/test.proto"
    assert {"h2interop/messages.proto", "h2interop/empty.proto"} <= set(names)
    for resp in (missing, extension, unknown_type):
        assert resp.WhichOneof("message_response") == "error_response"
        assert resp.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert numbers.all_extension_numbers_response.base_type_name == "grpc.testing.SimpleRequest"
    assert list(numbers.all_extension_numbers_response.extension_number) == []


# -- health --------------------------------------------------------------------------------
def test_health_check(channel: grpc.Channel, live_server: LiveServer) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    check = health_pb2.HealthCheckRequest
    assert health.Check(check(), timeout=5).status == SERVING
    assert health.Check(check(service="demo.v1.Greeter"), timeout=5).status == SERVING
    _set_health(live_server, "demo.v1.Greeter", "NOT_SERVING")
    assert health.Check(check(service="demo.v1.Greeter"), timeout=5).status == NOT_SERVING
    with pytest.raises(grpc.RpcError) as info:
        health.Check(check(service="no.such.Service"), timeout=5)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    listed = health.List(health_pb2.HealthListRequest(), timeout=5).statuses
    assert listed["demo.v1.Greeter"].status == NOT_SERVING
    assert listed[""].status == SERVING


def test_health_watch_sees_changes(channel: grpc.Channel, live_server: LiveServer) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    seen: queue.Queue[Any] = queue.Queue()
    watch = health.Watch(health_pb2.HealthCheckRequest(service="demo.v1.Greeter"), timeout=10)

    def read() -> None:
        try:
            for resp in watch:
                seen.put(resp.status)
        except grpc.RpcError as exc:
            seen.put(exc.code())
        seen.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.get(timeout=5) == SERVING
        _set_health(live_server, "demo.v1.Greeter", "NOT_SERVING")
        assert seen.get(timeout=5) == NOT_SERVING
        _set_health(live_server, "demo.v1.Greeter", "SERVING")
        assert seen.get(timeout=5) == SERVING
        live_server.stop(grace=5.0)  # shutting down: NOT_SERVING, then the stream ends
        assert seen.get(timeout=5) == NOT_SERVING
        assert seen.get(timeout=5) is None
    finally:
        watch.cancel()
        reader.join(5)


def test_health_watch_of_an_unknown_service(channel: grpc.Channel, live_server: LiveServer) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service="later.v1.Svc"), timeout=10)
    try:
        first = next(watch)
        assert first.status == SERVICE_UNKNOWN
        _set_health(live_server, "later.v1.Svc", "SERVING")
        assert next(watch).status == SERVING
    finally:
        watch.cancel()


def test_health_over_connect_json(curl: str, server_url: str) -> None:
    done = subprocess.run(
        [
            curl,
            "-sS",
            "--http2-prior-knowledge",
            "-H",
            "content-type: application/json",
            "-d",
            '{"service": "demo.v1.Greeter"}',
            f"{server_url}/grpc.health.v1.Health/Check",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert json.loads(done.stdout) == {"status": "SERVING"}


def test_reflection_builds_a_file_for_undeclared_proto_first_services() -> None:
    # No generated module declares x.v1.Echo: its file is built from its message types.
    class Echo(Service, name="x.v1.Echo"):
        @rpc
        async def echo(self, req: messages_pb2.SimpleRequest) -> messages_pb2.SimpleResponse:
            return messages_pb2.SimpleResponse()

    reflection = ReflectionV1(lambda: [Echo()])
    resp = reflection.answer(ServerReflectionRequest(file_containing_symbol="x.v1.Echo.Echo"))
    assert resp.file_descriptor_response is not None
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in resp.file_descriptor_response.file_descriptor_proto
    ]
    assert files[0].name == "x/v1/echo.proto"
    assert list(files[0].dependency) == ["h2interop/messages.proto"]
    assert files[0].service[0].method[0].input_type == ".grpc.testing.SimpleRequest"
    assert "h2interop/messages.proto" in {f.name for f in files}

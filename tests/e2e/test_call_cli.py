"""``h2mesh call / list / describe / bench`` as a grpcurl peer, run as real processes.

Against a grpcio server (the interop TestService as a grpcio servicer, with
grpcio-reflection) and against ``h2mesh serve``: reflection-driven list and describe,
calls over gRPC, gRPC-Web and Connect, client streams from a file, metadata, ``--proto``
without reflection, exit statuses by gRPC code, and a short bench run.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection

from ..interop._grpcio_servicers import SyncTestService, add_servicer
from .test_cli import H2MESH, REPO, ServerProcess, _serve

TEST_PROTO = Path("/usr/share/grpc-proto/grpc/testing/test.proto")
PROTO_ROOT = Path("/usr/share/grpc-proto")


def h2mesh(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(H2MESH), *args], cwd=REPO, input=stdin, capture_output=True, text=True, timeout=30
    )


@pytest.fixture(scope="module")
def grpcio_address() -> Iterator[str]:
    """A grpcio server: the interop TestService and grpcio's own reflection service."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add_servicer(server, SyncTestService())
    names = ("grpc.testing.TestService", reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture(scope="module")
def greeter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = _serve(tmp_path_factory.mktemp("serve"), "examples.greeter:Greeter")
    yield srv
    srv.stop()


# -- against grpcio ------------------------------------------------------------------------
def test_list_and_describe_grpcio(grpcio_address: str) -> None:
    out = h2mesh("list", grpcio_address, "--plaintext")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == sorted(
        ["grpc.testing.TestService", "grpc.reflection.v1alpha.ServerReflection"]
    )
    out = h2mesh("list", grpcio_address, "grpc.testing.TestService", "--plaintext")
    assert "grpc.testing.TestService.FullDuplexCall" in out.stdout.splitlines()
    out = h2mesh("describe", grpcio_address, "grpc.testing.TestService", "--plaintext")
    assert out.returncode == 0, out.stderr
    assert "rpc StreamingInputCall ( stream .grpc.testing.StreamingInputCallRequest )" in (
        out.stdout
    )
    out = h2mesh("describe", grpcio_address, "grpc.testing.SimpleRequest", "--plaintext")
    assert out.stdout.startswith("grpc.testing.SimpleRequest is a message:\n")
    assert "int32 response_size = 2;" in out.stdout
    out = h2mesh("describe", grpcio_address, "grpc.testing.Nope", "--plaintext")
    assert out.returncode == 2 and "not found" in out.stderr


def test_call_grpcio_unary_stream_and_error(grpcio_address: str, tmp_path: Path) -> None:
    url = f"http://{grpcio_address}"
    unary = "grpc.testing.TestService/UnaryCall"
    out = h2mesh("call", "--protocol", "grpc", url, unary, "-d", '{"responseSize": 3}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"payload": {"body": "AAAA"}}
    # A client stream from a file of several JSON messages.
    requests = tmp_path / "in.json"
    requests.write_text('{"payload": {"body": "AAAA"}}\n{"payload": {"body": "AAAAAAAA"}}\n')
    out = h2mesh(
        "call", "--protocol", "grpc", url, "grpc.testing.TestService/StreamingInputCall",
        "-d", f"@{requests}",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"aggregatedPayloadSize": 9}
    body = '{"responseParameters": [{"size": 1}, {"size": 2}]}'
    out = h2mesh(
        "call", "--protocol", "grpc", url, "grpc.testing.TestService/StreamingOutputCall",
        "-d", "@-",
        stdin=body,
    )  # fmt: skip
    assert [json.loads(line) for line in out.stdout.splitlines()] == [
        {"payload": {"body": "AA=="}},
        {"payload": {"body": "AAA="}},
    ]
    failing = '{"responseStatus": {"code": 5, "message": "gone"}}'
    out = h2mesh("call", "--protocol", "grpc", url, unary, "-d", failing)
    assert out.returncode == 64 + 5
    assert out.stderr.strip() == "error: not_found: gone"


def test_grpc_without_schema_is_a_usage_error(grpcio_address: str) -> None:
    out = h2mesh(
        "call", "--protocol", "grpc", "--plaintext", grpcio_address, "no.such.Service/Call"
    )
    assert out.returncode == 2
    assert "no schema" in out.stderr


# -- against h2mesh ------------------------------------------------------------------------
def test_list_and_describe_h2mesh(greeter: ServerProcess) -> None:
    out = h2mesh("list", greeter.url)
    assert out.returncode == 0, out.stderr
    assert "demo.v1.Greeter" in out.stdout.splitlines()
    out = h2mesh("describe", greeter.url, "demo.v1.Greeter")
    assert "rpc Total ( stream .demo.v1.Num ) returns ( .demo.v1.Sum );" in out.stdout


@pytest.mark.parametrize("protocol", ["grpc", "grpcweb", "connect"])
def test_call_h2mesh_each_protocol(greeter: ServerProcess, protocol: str) -> None:
    out = h2mesh(
        "call", "--protocol", protocol, "-H", "x-trace: t1", greeter.url,
        "demo.v1.Greeter/SayHello", "-d", '{"name": "p"}',
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"message": "Hello, p!"}
    if protocol != "grpcweb":  # gRPC-Web has no client streams
        out = h2mesh(
            "call", "--protocol", protocol, greeter.url, "demo.v1.Greeter/Total",
            "-d", '{"value": 2} {"value": 5}',
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        reply = json.loads(out.stdout)
        assert {k: int(v) for k, v in reply.items()} == {"total": 7, "count": 2}


def test_proto_file_without_reflection(tmp_path: Path, loop_kind: str) -> None:
    from ..conftest import LiveServer
    from ..interop._service import InteropTestService

    live = LiveServer([InteropTestService()], loop_kind, reflection=False)
    live.start()
    try:
        common = ["--protocol", "grpc", live.url, "grpc.testing.TestService/UnaryCall"]
        out = h2mesh("call", *common, "-d", '{"responseSize": 1}')
        assert out.returncode == 2 and "reflection" in out.stderr  # none to ask
        proto = ["--proto", str(TEST_PROTO), "-I", str(PROTO_ROOT)]
        out = h2mesh("call", *common, *proto, "-d", '{"responseSize": 1}')
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"payload": {"body": "AA=="}}
    finally:
        live.close()


def test_metadata_reaches_the_server(tmp_path: Path) -> None:
    srv = _serve(tmp_path, "tests.e2e.echo_service:Echo")
    try:
        out = h2mesh("call", srv.url, "test.v1.Echo/Headers", "-H", "X-Trace: abc", "-d", "{}")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["values"]["x-trace"] == "abc"
    finally:
        srv.stop()


def test_bench_prints_a_histogram(greeter: ServerProcess) -> None:
    out = h2mesh(
        "bench", greeter.url, "demo.v1.Greeter/SayHello", '{"name": "b"}',
        "--concurrency", "4", "--duration", "1.5",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Summary:" in out.stdout and "Response time histogram:" in out.stdout
    assert "99 % in" in out.stdout
    ok = next(line for line in out.stdout.splitlines() if "[OK]" in line)
    assert int(ok.split()[1].replace(",", "")) > 10
    assert "calls" in out.stderr and "/s" in out.stderr  # the progress line

"""@connectrpc/connect-node's client against the h2mesh server, over every transport.

``node/connect_client.js`` calls grpc.testing.TestService (message types from a
FileDescriptorSet built by ``buf build``) over the Connect (binary, JSON and gzip, HTTP/2 and
HTTP/1.1), gRPC (proto, JSON, gzip) and gRPC-Web (HTTP/2 and HTTP/1.1, gzip) transports, and
reports one JSON line per transport and case. It runs once per server; each
(transport, case) pair is checked as its own test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..conftest import LiveServer
from .conftest import json_lines, run_node

TRANSPORTS = (
    "connect-h2",
    "connect-h2-json",
    "connect-h2-gzip",
    "connect-h1",
    "connect-h1-json",
    "grpc-h2",
    "grpc-h2-json",
    "grpc-h2-gzip",
    "grpcweb-h2",
    "grpcweb-h1",
    "grpcweb-h1-gzip",
    "grpcweb-h1-json",
)
CASES = (
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
)
# Full-duplex cases need HTTP/2; connect-node does not run them over HTTP/1.1.
HTTP2_ONLY = {"ping_pong", "empty_stream"}
MATRIX = [
    (transport, case)
    for transport in TRANSPORTS
    for case in CASES
    if not (case in HTTP2_ONLY and "-h1" in transport)
]


@pytest.fixture(scope="module")
def connect_results(
    node: str, interop_server: LiveServer, interop_schema: Path
) -> dict[tuple[str, str], dict[str, Any]]:
    done = run_node(
        node,
        "connect_client.js",
        f"--url={interop_server.url}",
        f"--schema={interop_schema}",
        f"--transports={','.join(TRANSPORTS)}",
    )
    assert done.returncode in (0, 1), done.stderr
    return {(line["transport"], line["case"]): line for line in json_lines(done.stdout)}


@pytest.mark.parametrize(("transport", "case"), MATRIX)
def test_connect_node_client(
    connect_results: dict[tuple[str, str], dict[str, Any]], transport: str, case: str
) -> None:
    result = connect_results.get((transport, case))
    assert result is not None, f"connect_client.js did not run {case} over {transport}"
    assert result["ok"], result.get("error")


def test_connect_client_builds_its_own_schema(node: str, interop_server: LiveServer) -> None:
    """Without --schema the client compiles the interop protos with ``buf build``."""
    done = run_node(
        node,
        "connect_client.js",
        f"--url={interop_server.url}",
        "--transports=connect-h2,grpc-h2,grpcweb-h1",
        "--cases=large_unary,server_streaming",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [(line["transport"], line["case"], line["ok"]) for line in json_lines(done.stdout)] == [
        (t, c, True)
        for t in ("connect-h2", "grpc-h2", "grpcweb-h1")
        for c in ("large_unary", "server_streaming")
    ]

"""``buf curl`` (the Go connect-go / grpc client inside the buf CLI) against h2mesh.

Calls grpc.testing.TestService over Connect, gRPC and gRPC-Web, on HTTP/2 with prior
knowledge and (Connect, gRPC-Web) on HTTP/1.1, with the schema from a FileDescriptorSet;
then through server reflection (``grpc.reflection.v1``) with no schema at all.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..conftest import LiveServer

# (protocol, HTTP/2 with prior knowledge?)
PROTOCOLS = [
    pytest.param("connect", True, id="connect-h2"),
    pytest.param("grpc", True, id="grpc-h2"),
    pytest.param("grpcweb", True, id="grpcweb-h2"),
    pytest.param("connect", False, id="connect-h1"),
    pytest.param("grpcweb", False, id="grpcweb-h1"),
]
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
SERVICE = "grpc.testing.TestService"
TRAILING_B64 = base64.b64encode(b"\xab\xab\xab").decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def buf_curl(
    buf: str,
    server: LiveServer,
    method: str,
    *args: str,
    data: Any = None,
    protocol: str = "grpc",
    http2: bool = True,
    schema: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``buf curl`` on ``/grpc.testing.TestService/<method>`` of ``server``.

    ``data`` is one request (a dict) or a list of them (a client stream).
    """
    cmd = [buf, "curl", "--protocol", protocol, *args]
    if http2:
        cmd.append("--http2-prior-knowledge")
    if schema is not None:
        cmd += ["--schema", str(schema)]
    if data is not None:
        items = data if isinstance(data, list) else [data]
        cmd += ["-d", " ".join(json.dumps(item) for item in items)]
    cmd.append(f"{server.url}/{SERVICE}/{method}")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def _messages(stdout: str) -> list[Any]:
    """The JSON messages buf curl printed (pretty-printed, one after another)."""
    decoder = json.JSONDecoder()
    out, pos, text = [], 0, stdout.strip()
    while pos < len(text):
        obj, end = decoder.raw_decode(text, pos)
        out.append(obj)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


@pytest.mark.parametrize(("protocol", "http2"), PROTOCOLS)
def test_unary(
    buf: str, interop_server: LiveServer, interop_schema: Path, protocol: str, http2: bool
) -> None:
    req = {"responseSize": 31415, "payload": {"body": _b64(bytes(27182))}}
    done = buf_curl(
        buf,
        interop_server,
        "UnaryCall",
        data=req,
        protocol=protocol,
        http2=http2,
        schema=interop_schema,
    )
    assert done.returncode == 0, done.stderr
    [resp] = _messages(done.stdout)
    assert base64.b64decode(resp["payload"]["body"]) == bytes(31415)


@pytest.mark.parametrize(("protocol", "http2"), PROTOCOLS)
def test_server_stream(
    buf: str, interop_server: LiveServer, interop_schema: Path, protocol: str, http2: bool
) -> None:
    sizes = [31415, 9, 2653, 58979]
    req = {"responseParameters": [{"size": n} for n in sizes]}
    done = buf_curl(
        buf,
        interop_server,
        "StreamingOutputCall",
        data=req,
        protocol=protocol,
        http2=http2,
        schema=interop_schema,
    )
    assert done.returncode == 0, done.stderr
    got = [len(base64.b64decode(m["payload"]["body"])) for m in _messages(done.stdout)]
    assert got == sizes


@pytest.mark.parametrize(("protocol", "http2"), PROTOCOLS)
def test_client_stream(
    buf: str, interop_server: LiveServer, interop_schema: Path, protocol: str, http2: bool
) -> None:
    reqs = [{"payload": {"body": _b64(bytes(n))}} for n in (27182, 8, 1828, 45904)]
    done = buf_curl(
        buf,
        interop_server,
        "StreamingInputCall",
        data=reqs,
        protocol=protocol,
        http2=http2,
        schema=interop_schema,
    )
    assert done.returncode == 0, done.stderr
    assert _messages(done.stdout) == [{"aggregatedPayloadSize": 74922}]


@pytest.mark.parametrize(("protocol", "http2"), PROTOCOLS)
def test_error_status(
    buf: str, interop_server: LiveServer, interop_schema: Path, protocol: str, http2: bool
) -> None:
    req = {"responseStatus": {"code": 5, "message": SPECIAL_MESSAGE}}
    done = buf_curl(
        buf,
        interop_server,
        "UnaryCall",
        data=req,
        protocol=protocol,
        http2=http2,
        schema=interop_schema,
    )
    # buf curl exits with eight times the status code.
    assert done.returncode == 5 * 8, done.stdout + done.stderr
    assert _messages(done.stderr) == [{"code": "not_found", "message": SPECIAL_MESSAGE}]


@pytest.mark.parametrize(("protocol", "http2"), PROTOCOLS)
def test_metadata_echo(
    buf: str, interop_server: LiveServer, interop_schema: Path, protocol: str, http2: bool
) -> None:
    done = buf_curl(
        buf,
        interop_server,
        "UnaryCall",
        "-v",
        "-H",
        "x-grpc-test-echo-initial: test_initial_metadata_value",
        "-H",
        f"x-grpc-test-echo-trailing-bin: {TRAILING_B64}",
        data={"responseSize": 1},
        protocol=protocol,
        http2=http2,
        schema=interop_schema,
    )
    assert done.returncode == 0, done.stderr
    received = [line.lower() for line in done.stderr.splitlines() if "< (#1)" in line]
    assert any(
        line.endswith("x-grpc-test-echo-initial: test_initial_metadata_value") for line in received
    ), done.stderr
    if protocol == "grpcweb":
        return  # buf curl -v does not show gRPC-Web trailers (sent in the body)
    # Unary Connect sends trailers as "trailer-" headers; buf curl shows them either way.
    assert any(
        line.endswith(f"x-grpc-test-echo-trailing-bin: {TRAILING_B64}".lower()) for line in received
    ), done.stderr


def test_unimplemented_method(buf: str, interop_server: LiveServer, interop_schema: Path) -> None:
    done = buf_curl(buf, interop_server, "UnimplementedCall", data={}, schema=interop_schema)
    assert done.returncode == 12 * 8, done.stdout + done.stderr
    assert _messages(done.stderr)[0]["code"] == "unimplemented"


@pytest.mark.parametrize("protocol", ["grpc", "connect", "grpcweb"])
def test_server_reflection(buf: str, interop_server: LiveServer, protocol: str) -> None:
    """``grpc.reflection.v1``: list services and methods, then call with no schema."""
    base = [
        buf,
        "curl",
        "--http2-prior-knowledge",
        "--protocol",
        protocol,
        "--reflect-protocol",
        "grpc-v1",
    ]
    run: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 30, "check": False}

    done = subprocess.run([*base, "--list-services", interop_server.url], **run)
    assert done.returncode == 0, done.stderr
    assert SERVICE in done.stdout.split()

    done = subprocess.run([*base, "--list-methods", interop_server.url], **run)
    assert done.returncode == 0, done.stderr
    methods = set(done.stdout.split())
    for name in ("EmptyCall", "UnaryCall", "StreamingOutputCall", "FullDuplexCall"):
        assert f"{SERVICE}/{name}" in methods, done.stdout

    data = json.dumps({"responseSize": 3, "payload": {"body": _b64(b"abc")}})
    done = subprocess.run([*base, "-d", data, f"{interop_server.url}/{SERVICE}/UnaryCall"], **run)
    assert done.returncode == 0, done.stderr
    assert _messages(done.stdout) == [{"payload": {"body": _b64(bytes(3))}}]

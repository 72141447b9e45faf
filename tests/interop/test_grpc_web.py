"""gRPC-Web against the h2mesh server: curl over HTTP/1.1, httpx over HTTP/2, binary and
text, the CORS preflight, and the h2mesh gRPC-Web client."""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from h2mesh import Channel, Code, RpcError
from h2mesh.protocol.grpc import parse_trailer_block
from h2mesh.protocol.grpc_web import Base64Framing

from ._protos import messages_pb2
from ._service import InteropTestService, TestServiceApi

UNARY = "/grpc.testing.TestService/UnaryCall"
STREAM = "/grpc.testing.TestService/StreamingOutputCall"


@pytest.fixture
def server_services() -> list[Any]:
    return [InteropTestService()]


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def frames(data: bytes) -> tuple[list[bytes], dict[bytes, bytes]]:
    """Messages and the trailer frame of a gRPC-Web body."""
    messages: list[bytes] = []
    trailers: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        flags, length = struct.unpack(">BI", data[pos : pos + 5])
        payload = data[pos + 5 : pos + 5 + length]
        assert len(payload) == length, "truncated frame"
        pos += 5 + length
        if flags & 0x80:
            trailers = dict(parse_trailer_block(payload))
        else:
            messages.append(payload)
    return messages, trailers


def run_curl(curl: str, url: str, tmp_path: Path, body: bytes, *args: str) -> tuple[str, bytes]:
    (tmp_path / "req").write_bytes(body)
    proc = subprocess.run(
        [
            curl,
            "-sS",
            "--http1.1",
            "-D",
            str(tmp_path / "head"),
            "-o",
            str(tmp_path / "body"),
            "--data-binary",
            f"@{tmp_path / 'req'}",
            *args,
            url,
        ],
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return (tmp_path / "head").read_text().lower(), (tmp_path / "body").read_bytes()


UNARY_REQ = messages_pb2.SimpleRequest(response_size=7).SerializeToString()
STREAM_REQ = messages_pb2.StreamingOutputCallRequest(
    response_parameters=[messages_pb2.ResponseParameters(size=n) for n in (3, 5, 8)]
).SerializeToString()


@pytest.mark.parametrize("ct", ["application/grpc-web", "application/grpc-web+proto"])
def test_curl_http1_unary_and_stream(curl: str, server_url: str, tmp_path: Path, ct: str) -> None:
    head, body = run_curl(
        curl,
        server_url + UNARY,
        tmp_path,
        envelope(UNARY_REQ),
        "-H",
        f"content-type: {ct}",
        "-H",
        "x-grpc-web: 1",
    )
    assert head.startswith("http/1.1 200")
    assert "content-type: application/grpc-web" in head  # +proto is the default subtype
    messages, trailers = frames(body)
    assert [messages_pb2.SimpleResponse.FromString(m).payload.body for m in messages] == [bytes(7)]
    assert trailers[b"grpc-status"] == b"0"

    head, body = run_curl(
        curl, server_url + STREAM, tmp_path, envelope(STREAM_REQ), "-H", f"content-type: {ct}"
    )
    messages, trailers = frames(body)
    sizes = [
        len(messages_pb2.StreamingOutputCallResponse.FromString(m).payload.body) for m in messages
    ]
    assert sizes == [3, 5, 8]
    assert trailers[b"grpc-status"] == b"0"


def test_curl_http1_error_trailer(curl: str, server_url: str, tmp_path: Path) -> None:
    req = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=2)],
        response_status=messages_pb2.EchoStatus(code=9, message="nope ☺"),
    ).SerializeToString()
    _, body = run_curl(
        curl,
        server_url + STREAM,
        tmp_path,
        envelope(req),
        "-H",
        "content-type: application/grpc-web",
    )
    messages, trailers = frames(body)
    assert len(messages) == 1
    assert trailers[b"grpc-status"] == b"9"
    assert trailers[b"grpc-message"] == b"nope %E2%98%BA"


def test_curl_http1_text(curl: str, server_url: str, tmp_path: Path) -> None:
    # Two padded base64 pieces one after the other, as browsers may send.
    msg = envelope(STREAM_REQ)
    text = base64.b64encode(msg[:4]) + base64.b64encode(msg[4:])
    head, body = run_curl(
        curl,
        server_url + STREAM,
        tmp_path,
        text,
        "-H",
        "content-type: application/grpc-web-text",
        "-H",
        "accept: application/grpc-web-text",
    )
    assert "content-type: application/grpc-web-text" in head
    framing = Base64Framing()
    decoded = framing.decode(body) + framing.decode_end()
    messages, trailers = frames(decoded)
    assert len(messages) == 3
    assert trailers[b"grpc-status"] == b"0"


def test_curl_cors_preflight(curl: str, server_url: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            curl,
            "-sS",
            "--http1.1",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "OPTIONS",
            "-H",
            "origin: https://app.example",
            "-H",
            "access-control-request-method: POST",
            "-H",
            "access-control-request-headers: content-type,x-grpc-web,x-user-agent",
            server_url + UNARY,
        ],
        capture_output=True,
        timeout=10,
        check=True,
    )
    head = proc.stdout.decode().lower()
    assert head.startswith("http/1.1 204")
    assert "access-control-allow-origin: https://app.example" in head
    assert "access-control-allow-methods: post, options" in head
    assert "access-control-allow-headers: content-type,x-grpc-web,x-user-agent" in head
    assert (
        "access-control-expose-headers: grpc-status, grpc-message, grpc-status-details-bin" in head
    )
    assert "access-control-max-age:" in head

    head, _ = run_curl(
        curl,
        server_url + UNARY,
        tmp_path,
        envelope(UNARY_REQ),
        "-H",
        "content-type: application/grpc-web",
        "-H",
        "origin: https://app.example",
    )
    assert "access-control-allow-origin: https://app.example" in head
    assert "grpc-status" in head.split("access-control-expose-headers:")[1].split("\n")[0]


@pytest.mark.parametrize("text", [False, True])
def test_httpx_http2(server_url: str, text: bool) -> None:
    ct = "application/grpc-web-text" if text else "application/grpc-web+proto"
    body = envelope(STREAM_REQ)
    with httpx.Client(base_url=server_url, http1=False, http2=True, timeout=10.0) as client:
        resp = client.post(
            STREAM, content=base64.b64encode(body) if text else body, headers={"content-type": ct}
        )
    assert resp.http_version == "HTTP/2"
    assert resp.headers["content-type"] == ct.removesuffix("+proto")
    data = resp.content
    if text:
        framing = Base64Framing()
        data = framing.decode(data) + framing.decode_end()
    messages, trailers = frames(data)
    assert len(messages) == 3
    assert trailers[b"grpc-status"] == b"0"


@pytest.mark.parametrize("protocol", ["grpc-web", "grpc-web-text"])
def test_h2mesh_grpc_web_client(run: Any, server_url: str, protocol: str) -> None:
    async def main() -> None:
        async with Channel(server_url, protocol=protocol) as ch:
            api = ch.stub(TestServiceApi)
            resp = await api.unary_call(messages_pb2.SimpleRequest(response_size=9), timeout=5)
            assert resp.payload.body == bytes(9)
            req = messages_pb2.StreamingOutputCallRequest.FromString(STREAM_REQ)
            got = [len(r.payload.body) async for r in api.streaming_output_call(req, timeout=5)]
            assert got == [3, 5, 8]
            bad = messages_pb2.SimpleRequest(
                response_status=messages_pb2.EchoStatus(code=5, message="gone")
            )
            with pytest.raises(RpcError) as info:
                await api.unary_call(bad, timeout=5)
            assert (info.value.code, info.value.message) == (Code.NOT_FOUND, "gone")

    run(main())


def test_json_codec_with_protobuf_types(run: Any, server_url: str) -> None:
    """Protobuf message types over gRPC with +json use the protobuf JSON mapping."""

    async def main() -> None:
        async with Channel(server_url, protocol="grpc", codec="json") as ch:
            resp = await ch.stub(TestServiceApi).unary_call(
                messages_pb2.SimpleRequest(response_size=4), timeout=5
            )
            assert resp.payload.body == bytes(4)

    run(main())
    with httpx.Client(base_url=server_url, timeout=10.0) as client:
        resp = client.post(UNARY, json={"responseSize": 2})
    assert resp.json() == {"payload": {"body": "AAA="}}


def test_default_channel_carries_protobuf_types_in_messagepack(run: Any, server_url: str) -> None:
    """The default Channel (Connect + MessagePack) with generated protobuf classes."""

    async def main() -> None:
        async with Channel(server_url) as ch:
            api = ch.stub(TestServiceApi)
            req = messages_pb2.SimpleRequest(response_size=3, fill_username=True)
            resp = await api.unary_call(req, timeout=5)
            assert resp.payload.body == bytes(3)
            stream_req = messages_pb2.StreamingOutputCallRequest.FromString(STREAM_REQ)
            sizes = [len(r.payload.body) async for r in api.streaming_output_call(stream_req)]
            assert sizes == [3, 5, 8]

    run(main())
    # On the wire it is MessagePack (a map of the protobuf JSON field names).
    import msgspec

    body = msgspec.msgpack.encode({"responseSize": 2})
    with httpx.Client(base_url=server_url, timeout=10.0) as client:
        resp = client.post(UNARY, content=body, headers={"content-type": "application/msgpack"})
    assert resp.status_code == 200, resp.text
    assert msgspec.msgpack.decode(resp.content) == {"payload": {"body": "AAA="}}


def test_connect_proto_with_protobuf_types(run: Any, server_url: str) -> None:
    """The same protobuf service answers Connect with application/proto."""
    with httpx.Client(base_url=server_url, timeout=10.0) as client:
        resp = client.post(UNARY, content=UNARY_REQ, headers={"content-type": "application/proto"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/proto"
    assert messages_pb2.SimpleResponse.FromString(resp.content).payload.body == bytes(7)

    async def main() -> None:
        async with Channel(server_url, codec="proto") as ch:
            api = ch.stub(TestServiceApi)
            resp = await api.unary_call(messages_pb2.SimpleRequest(response_size=3), timeout=5)
            assert resp.payload.body == bytes(3)
            req = messages_pb2.StreamingOutputCallRequest.FromString(STREAM_REQ)
            got = [len(r.payload.body) async for r in api.streaming_output_call(req, timeout=5)]
            assert got == [3, 5, 8]

    run(main())

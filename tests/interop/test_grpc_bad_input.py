"""Bad gRPC input against the h2mesh server over a raw HTTP/2 client: each gets the
right grpc-status (no hang, no crash) and the connection stays usable."""

from __future__ import annotations

import asyncio
import gzip
import struct
from typing import Any

import pytest

from h2mesh import TransportConfig
from h2mesh.transport import H2Connection

from ._protos import empty_pb2, messages_pb2
from ._service import InteropTestService

UNARY = b"/grpc.testing.TestService/UnaryCall"
EMPTY = b"/grpc.testing.TestService/EmptyCall"


@pytest.fixture
def server_services() -> list[Any]:
    return [InteropTestService()]


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


class RawClient:
    def __init__(self, conn: H2Connection, port: int) -> None:
        self.conn = conn
        self.port = port

    async def call(
        self, path: bytes, body: bytes, *extra: tuple[bytes, bytes], ct: bytes = b"application/grpc"
    ) -> tuple[dict[bytes, bytes], bytes, dict[bytes, bytes]]:
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", f"127.0.0.1:{self.port}".encode()),
            (b":path", path),
            (b"content-type", ct),
            (b"te", b"trailers"),
            *extra,
        ]
        async with asyncio.timeout(5):
            stream = self.conn.open_stream(headers, False)
            await stream.send_data(body, end_stream=True)
            resp = dict(await stream.wait_response())
            data = await stream.read_all(1 << 24)
        return resp, data, dict(stream.trailers or [])


async def connect(port: int) -> RawClient:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        lambda: H2Connection(client=True, config=TransportConfig(idle_timeout=None)),
        "127.0.0.1",
        port,
    )
    return RawClient(conn, port)


def status_of(resp: dict[bytes, bytes], trailers: dict[bytes, bytes]) -> int:
    raw = trailers.get(b"grpc-status", resp.get(b"grpc-status"))
    assert raw is not None, (resp, trailers)
    return int(raw)


GOOD = envelope(messages_pb2.SimpleRequest(response_size=3).SerializeToString())


@pytest.mark.parametrize(
    ("body", "extra", "code"),
    [
        pytest.param(b"\x00\x00\x00", (), 13, id="truncated-prefix"),
        pytest.param(envelope(b"\x08\x03")[:-1], (), 13, id="truncated-message"),
        pytest.param(envelope(b"\x08\x03", flags=1), (), 13, id="compressed-no-encoding"),
        pytest.param(struct.pack(">BI", 0, 5 << 20), (), 8, id="over-limit"),
        pytest.param(
            envelope(gzip.compress(bytes(8 << 20)), flags=1),
            ((b"grpc-encoding", b"gzip"),),
            8,
            id="decompression-bomb",
        ),
        pytest.param(GOOD, ((b"grpc-encoding", b"snappy"),), 12, id="unknown-encoding"),
        pytest.param(GOOD, ((b"grpc-timeout", b"123456789S"),), 3, id="bad-timeout"),
        pytest.param(envelope(b"\xff\xff\xff"), (), 3, id="malformed-protobuf"),
        # A cardinality violation: UNIMPLEMENTED, as the gRPC status-code table says.
        pytest.param(GOOD + GOOD, (), 12, id="two-messages-to-unary"),
        pytest.param(b"", (), 12, id="no-message"),
    ],
)
def test_bad_input_gets_status(
    run: Any, server_url: str, body: bytes, extra: tuple[Any, ...], code: int
) -> None:
    port = int(server_url.rsplit(":", 1)[1])

    async def main() -> None:
        client = await connect(port)
        try:
            resp, _, trailers = await client.call(UNARY, body, *extra)
            assert resp[b":status"] == b"200"
            assert status_of(resp, trailers) == code
            if code == 12:
                accepted = resp[b"grpc-accept-encoding"].decode()
                assert {"gzip", "deflate", "identity"} <= {a.strip() for a in accepted.split(",")}
            # The same connection serves the next call.
            resp, data, trailers = await client.call(
                EMPTY, envelope(empty_pb2.Empty().SerializeToString())
            )
            assert status_of(resp, trailers) == 0
            assert data == envelope(b"")
        finally:
            client.conn.abort()

    run(main())


@pytest.mark.parametrize("ct", [b"application/grpc+xml", b"text/plain"])
def test_wrong_content_type_is_415(run: Any, server_url: str, ct: bytes) -> None:
    port = int(server_url.rsplit(":", 1)[1])

    async def main() -> None:
        client = await connect(port)
        try:
            resp, _, _ = await client.call(UNARY, GOOD, ct=ct)
            assert resp[b":status"] == b"415"
            resp, _, trailers = await client.call(UNARY, GOOD)
            assert status_of(resp, trailers) == 0
        finally:
            client.conn.abort()

    run(main())


def test_compressed_request_and_response(run: Any, server_url: str) -> None:
    port = int(server_url.rsplit(":", 1)[1])
    req = messages_pb2.SimpleRequest(
        response_size=50_000, payload=messages_pb2.Payload(body=bytes(40_000))
    )

    async def main() -> None:
        client = await connect(port)
        try:
            resp, data, trailers = await client.call(
                UNARY,
                envelope(gzip.compress(req.SerializeToString()), flags=1),
                (b"grpc-encoding", b"gzip"),
                (b"grpc-accept-encoding", b"gzip"),
            )
            assert status_of(resp, trailers) == 0
            assert resp[b"grpc-encoding"] == b"gzip"
            flags, length = struct.unpack(">BI", data[:5])
            assert flags == 1 and length == len(data) - 5 < 50_000
            msg = messages_pb2.SimpleResponse.FromString(gzip.decompress(data[5:]))
            assert msg.payload.body == bytes(50_000)
        finally:
            client.conn.abort()

    run(main())


def test_grpc_over_http1_is_refused_with_status(curl: str, server_url: str, tmp_path: Any) -> None:
    import subprocess

    body = tmp_path / "body"
    body.write_bytes(GOOD)
    out = (
        subprocess.run(
            [
                curl,
                "-sS",
                "--http1.1",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-H",
                "content-type: application/grpc",
                "--data-binary",
                f"@{body}",
                server_url + UNARY.decode(),
            ],
            capture_output=True,
            timeout=10,
            check=True,
        )
        .stdout.decode()
        .lower()
    )
    assert "grpc-status: 13" in out
    assert "http/2" in out

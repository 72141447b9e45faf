"""Fuzz targets: each takes arbitrary bytes and runs one parser a client's input reaches.

A target may raise only what its parser documents for bad input (``RpcError``,
``MessageTooLarge``); anything else, a hang or an unbounded allocation is a bug. Run them
with ``python -m tests.fuzz.run TARGET [libFuzzer options]`` (``scripts/fuzz.sh`` runs
every target for a while; the test suite runs each briefly).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from examples.greeter import HelloRequest

from h2mesh import RpcError
from h2mesh.codec import JSON, MSGPACK
from h2mesh.protocol import grpc
from h2mesh.protocol._envelope import EnvelopeReader
from h2mesh.protocol.connect import _parse_timeout as connect_timeout
from h2mesh.transport import MessageTooLarge, TransportConfig
from h2mesh.transport._h1 import H1Connection

_JSON_HELLO = JSON.decoder(HelloRequest)
_MSGPACK_HELLO = MSGPACK.decoder(HelloRequest)
_JSON_ANY = JSON.decoder(Any)
_MSGPACK_ANY = MSGPACK.decoder(Any)
_MAX_ENVELOPE = 64 * 1024


def envelopes(data: bytes) -> None:
    """The Connect/gRPC envelope reader, fed in two pieces."""
    reader = EnvelopeReader(_MAX_ENVELOPE)
    half = len(data) // 2
    try:
        for piece in (data[:half], data[half:]):
            reader.feed(piece)
            while (frame := reader.next()) is not None:
                flags, payload = frame
                assert 0 <= flags <= 255 and len(payload) <= _MAX_ENVELOPE
    except MessageTooLarge:
        pass


def grpc_headers(data: bytes) -> None:
    """grpc-timeout, grpc-message (percent-encoded), -bin metadata and the trailers that
    carry a status (with google.rpc.Status details)."""
    for parse in (grpc.parse_timeout, connect_timeout):
        with contextlib.suppress(RpcError):
            assert parse(data) >= 0  # type: ignore[operator]
    grpc.percent_decode(data)
    grpc.decode_status_details(data)
    fields = dict(grpc.parse_trailer_block(data))
    fields.setdefault(b"grpc-status", data[:2])
    fields.setdefault(b"grpc-status-details-bin", data)
    error = grpc._error_from_fields(fields)
    assert error is None or isinstance(error, RpcError)
    with contextlib.suppress(RpcError):
        grpc._decode_bin_headers([(b"x-trace-bin", data), (b"x-plain", data)])


def messages(data: bytes) -> None:
    """The JSON and MessagePack decoders, typed and untyped."""
    for decode in (_JSON_HELLO, _MSGPACK_HELLO, _JSON_ANY, _MSGPACK_ANY):
        with contextlib.suppress(RpcError):
            decode(data)


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def abort(self) -> None:
        self.closed = True

    def resume_reading(self) -> None:
        pass


_LOOP = asyncio.new_event_loop()
_CONFIG = TransportConfig(h1_buffer_limit=64 * 1024)


async def _h1_session(data: bytes) -> None:
    streams: list[Any] = []
    conn = H1Connection(config=_CONFIG, on_stream=streams.append, scheme=b"http")
    transport = _Transport()
    conn.connection_made(transport)
    for i in range(0, len(data), 97):  # in pieces, as a socket delivers it
        conn.data_received(data[i : i + 97])
        if transport.closed:
            break
    for stream in streams:
        assert stream.headers is not None
        for name, value in stream.headers:
            assert isinstance(name, bytes) and isinstance(value, bytes)
    conn.connection_lost(None)
    assert len(transport.out) < 64 * 1024


def http1_head(data: bytes) -> None:
    """The HTTP/1.1 request parser and head checks (httptools under H1Connection)."""
    _LOOP.run_until_complete(_h1_session(data))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "envelopes": envelopes,
    "grpc_headers": grpc_headers,
    "messages": messages,
    "http1_head": http1_head,
}

SEEDS: dict[str, list[bytes]] = {
    "envelopes": [b"\x00\x00\x00\x00\x05hello", b"\x02\x00\x00\x00\x02{}"],
    "grpc_headers": [b"100m", b"grpc-status: 3\r\ngrpc-message: bad%20thing\r\n", b"AAEC"],
    "messages": [b'{"name":"x"}', b"\x81\xa4name\xa1x", b"[1,2.5,null]"],
    "http1_head": [
        b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ],
}

"""The client's one call flow, seen from outside: the same outcome whatever the protocol.

A server that answers a call with a number of messages other than the one the client
expects (a cardinality violation) is ``UNIMPLEMENTED`` on every path: unary calls over
the enveloped protocols, client streams on the async and the sync stubs. The sync stub
takes the async stub's arguments (``key=`` included).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import msgspec
import pytest

from h2mesh import Channel, Code, Context, RpcError, Service, SyncChannel, rpc
from h2mesh.transport import ErrorCode
from tests.conftest import LiveServer


class Item(msgspec.Struct):
    n: int


class Loose(Service, name="flow.v1.Loose"):
    """Answers with as many messages as asked for, whatever the client expects."""

    @rpc
    async def many(self, req: Item, ctx: Context) -> AsyncIterator[Item]:
        for i in range(req.n):
            yield Item(i)

    @rpc
    async def gather(self, reqs: AsyncIterator[Item], ctx: Context) -> AsyncIterator[Item]:
        async for req in reqs:
            for i in range(req.n):
                yield Item(i)


class Strict(Service, name="flow.v1.Loose"):
    """The same paths, declared as the client expects them: one response each."""

    @rpc
    async def many(self, req: Item, ctx: Context) -> Item:
        raise NotImplementedError

    @rpc
    async def gather(self, reqs: AsyncIterator[Item], ctx: Context) -> Item:
        raise NotImplementedError


class Named(Service, name="flow.v1.Named"):
    def __init__(self, name: str) -> None:
        self.name = name

    @rpc
    async def who(self, req: Item, ctx: Context) -> Item:
        return Item(int(self.name))


class One(Service, name="flow.v1.One"):
    """A unary method on the server."""

    @rpc
    async def one(self, req: Item, ctx: Context) -> Item:
        return Item(req.n + 1)


class SendsMany(Service, name="flow.v1.One"):
    """The same path as the client sees it: it sends a stream of requests."""

    @rpc
    async def one(self, reqs: AsyncIterator[Item], ctx: Context) -> Item:
        raise NotImplementedError


@pytest.fixture
def server_services() -> list[Service]:
    return [Loose(), One()]


@pytest.mark.parametrize("protocol", ["grpc", "grpc-web", "grpc-web-text"])
@pytest.mark.parametrize("count", [0, 2])
def test_unary_call_with_other_than_one_message_is_unimplemented(
    run: Callable[..., Any], server_url: str, protocol: str, count: int
) -> None:
    async def main() -> None:
        async with Channel(server_url, protocol=protocol, codec="json") as ch:
            with pytest.raises(RpcError) as info:
                await ch.stub(Strict).many(Item(count), timeout=5)
            assert info.value.code is Code.UNIMPLEMENTED
            assert f"returned {count} response messages, expected 1" in info.value.message
            # The connection is fine afterwards: a well-formed call still works.
            got = [m.n async for m in ch.stub(Loose).many(Item(2), timeout=5)]
            assert got == [0, 1]

    run(main())


@pytest.mark.parametrize("protocol", ["connect", "grpc"])
@pytest.mark.parametrize("count", [0, 3])
def test_client_stream_with_other_than_one_message_is_unimplemented(
    run: Callable[..., Any], server_url: str, protocol: str, count: int
) -> None:
    async def requests() -> AsyncIterator[Item]:
        yield Item(count)

    async def main() -> None:
        async with Channel(server_url, protocol=protocol, codec="json") as ch:
            with pytest.raises(RpcError) as info:
                await ch.stub(Strict).gather(requests(), timeout=5)
            assert info.value.code is Code.UNIMPLEMENTED

    run(main())


@pytest.mark.parametrize("protocol", ["connect", "grpc", "grpc-web"])
@pytest.mark.parametrize("count", [0, 2])
def test_a_unary_method_sent_other_than_one_request_message_answers_unimplemented(
    run: Callable[..., Any], server_url: str, protocol: str, count: int
) -> None:
    async def requests() -> AsyncIterator[Item]:
        for i in range(count):
            yield Item(i)

    async def main() -> None:
        async with Channel(server_url, protocol=protocol, codec="json") as ch:
            with pytest.raises(RpcError) as info:
                await ch.stub(SendsMany).one(requests(), timeout=5)
            assert info.value.code is Code.UNIMPLEMENTED
            # Connect turns a stream away at its content type (a unary method takes
            # application/json); gRPC reads the envelopes and counts them.
            hint = "is unary" if protocol == "connect" else "expected 1"
            assert hint in info.value.message
            assert await ch.stub(One).one(Item(1), timeout=5) == Item(2)

    run(main())


def test_sync_client_stream_cardinality_is_unimplemented_too(server_url: str) -> None:
    with SyncChannel(server_url, codec="json") as ch:
        with pytest.raises(RpcError) as info:
            ch.stub(Strict).gather([Item(2)], timeout=5)
        assert info.value.code is Code.UNIMPLEMENTED
        assert ch.stub(Strict).gather([Item(1)], timeout=5) == Item(0)


@pytest.fixture
def replicas(loop_kind: str) -> Iterator[list[LiveServer]]:
    servers = [LiveServer([Named(str(i))], loop_kind) for i in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.close()


def test_sync_stub_takes_the_ring_hash_key(replicas: list[LiveServer]) -> None:
    target = "static://" + ",".join(f"127.0.0.1:{s.port}" for s in replicas)
    with SyncChannel(target, codec="json", policy="ring_hash") as ch:
        stub = ch.stub(Named)
        for key in ("alpha", "beta", "gamma", "delta"):
            seen = {stub.who(Item(0), key=key, timeout=5).n for _ in range(5)}
            assert len(seen) == 1, (key, seen)  # one key, one replica
        spread = {stub.who(Item(0), key=f"k{i}", timeout=5).n for i in range(40)}
        assert len(spread) > 1  # and the keys do spread over the replicas


# -- deadlines the client enforces itself ---------------------------------------------------
# An empty SETTINGS frame: the server's half of the HTTP/2 connection preface.
_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


async def _silent_peer(preface: bool) -> tuple[asyncio.Server, str]:
    """A TCP peer that reads everything and answers nothing (with ``preface``, only its
    SETTINGS, so the client's streams are opened): only the client's own deadline can end
    a call to it, while it connects or on the open stream."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if preface:
            writer.write(_SETTINGS)
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _collect(responses: AsyncIterator[Any]) -> list[Any]:
    return [message async for message in responses]


@pytest.mark.parametrize("preface", [True, False], ids=["streams-open", "connecting"])
@pytest.mark.parametrize("protocol", ["connect", "grpc"])
def test_client_deadline_ends_calls_to_a_silent_peer(
    run: Callable[..., Any], protocol: str, preface: bool
) -> None:
    async def requests() -> AsyncIterator[Item]:
        yield Item(1)
        await asyncio.Event().wait()  # never ends on its own

    async def main() -> None:
        server, url = await _silent_peer(preface)
        try:
            async with Channel(url, protocol=protocol, codec="json") as ch:
                stub = ch.stub(Loose)
                calls = {
                    "unary": ch.stub(Named).who(Item(0), timeout=0.2),
                    "server stream": _collect(stub.many(Item(3), timeout=0.2)),
                    "bidi": _collect(stub.gather(requests(), timeout=0.2)),
                }
                for name, call in calls.items():
                    started = time.monotonic()
                    with pytest.raises(RpcError) as info:
                        await call
                    assert info.value.code is Code.DEADLINE_EXCEEDED, name
                    assert time.monotonic() - started < 3.0, name
        finally:
            server.close()
            await server.wait_closed()

    run(main())


# -- a stream the server resets -------------------------------------------------------------
async def _resetting_peer(code: int) -> tuple[asyncio.Server, str]:
    """An HTTP/2 server (python-hyper ``h2``) that resets every stream it is sent with
    ``code`` once the request has arrived, before any response."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if isinstance(event, h2.events.StreamEnded):
                    conn.reset_stream(event.stream_id, error_code=code)
            writer.write(conn.data_to_send())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


# The mapping of gRPC's PROTOCOL-HTTP2.md ("RST_STREAM error codes to gRPC error codes").
_RESET_CODES = {
    # NO_ERROR before the response ended: the response is cut short.
    ErrorCode.NO_ERROR: Code.INTERNAL,
    ErrorCode.PROTOCOL_ERROR: Code.INTERNAL,
    ErrorCode.INTERNAL_ERROR: Code.INTERNAL,
    ErrorCode.FLOW_CONTROL_ERROR: Code.INTERNAL,
    ErrorCode.FRAME_SIZE_ERROR: Code.INTERNAL,
    ErrorCode.COMPRESSION_ERROR: Code.INTERNAL,
    ErrorCode.CONNECT_ERROR: Code.INTERNAL,
    ErrorCode.CANCEL: Code.CANCELED,
    ErrorCode.ENHANCE_YOUR_CALM: Code.RESOURCE_EXHAUSTED,
    ErrorCode.INADEQUATE_SECURITY: Code.PERMISSION_DENIED,
    ErrorCode.REFUSED_STREAM: Code.UNAVAILABLE,
}


@pytest.mark.parametrize("protocol", ["connect", "grpc"])
@pytest.mark.parametrize("reset", list(_RESET_CODES), ids=lambda c: c.name)
def test_a_stream_reset_by_the_server_ends_the_call_with_grpcs_status_for_its_code(
    run: Callable[..., Any], protocol: str, reset: ErrorCode
) -> None:
    async def main() -> None:
        server, url = await _resetting_peer(int(reset))
        try:
            async with Channel(url, protocol=protocol, codec="json", timeout=5.0) as ch:
                with pytest.raises(RpcError) as info:
                    await ch.stub(Named).who(Item(0))
                assert info.value.code is _RESET_CODES[reset]
                assert "Traceback" not in info.value.message
        finally:
            server.close()
            await server.wait_closed()

    run(main())


# -- a gRPC-Web body that holds only the trailer envelope -----------------------------------
async def _grpc_web_trailers_peer(trailers: bytes) -> tuple[asyncio.Server, str]:
    """A gRPC-Web server (python-hyper ``h2``) that answers every call with status 200
    and a body of one trailer envelope (flag 0x80) holding ``trailers``, no message."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if isinstance(event, h2.events.StreamEnded):
                    head = [(":status", "200"), ("content-type", "application/grpc-web+json")]
                    conn.send_headers(event.stream_id, head)
                    frame = b"\x80" + len(trailers).to_bytes(4, "big") + trailers
                    conn.send_data(event.stream_id, frame, end_stream=True)
            writer.write(conn.data_to_send())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("trailers", "code"),
    [
        (b"grpc-status: 5\r\ngrpc-message: no such item\r\n", Code.NOT_FOUND),
        (b"grpc-status: 0\r\n", Code.UNIMPLEMENTED),  # OK, but no message for a unary call
    ],
    ids=["error", "ok-without-message"],
)
def test_a_grpc_web_body_of_only_trailers_is_read_as_trailers_not_as_a_message(
    run: Callable[..., Any], trailers: bytes, code: Code
) -> None:
    async def main() -> None:
        server, url = await _grpc_web_trailers_peer(trailers)
        try:
            async with Channel(url, protocol="grpc-web", codec="json", timeout=5.0) as ch:
                with pytest.raises(RpcError) as info:
                    await ch.stub(Named).who(Item(0))
                assert info.value.code is code, info.value
        finally:
            server.close()
            await server.wait_closed()

    run(main())


# -- a Connect stream answered with an HTTP error status -------------------------------------
async def _http_error_peer(split: bool) -> tuple[asyncio.Server, str]:
    """An HTTP/2 server (python-hyper ``h2``) that answers every request with 503 and a
    Connect JSON error body; ``split``: the rest of the body only after a PING round trip
    (so the client has read the head and the start of the body alone)."""
    body = b'{"code": "resource_exhausted", "message": "try later"}'

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        waiting: list[int] = []  # streams whose rest waits for the PING's ack
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if isinstance(event, h2.events.StreamEnded):
                    sid = event.stream_id
                    conn.send_headers(
                        sid, [(":status", "503"), ("content-type", "application/json")]
                    )
                    conn.send_data(sid, body[:10])
                    if split:
                        waiting.append(sid)
                        conn.ping(b"12345678")
                    else:
                        conn.send_data(sid, body[10:], end_stream=True)
                if isinstance(event, h2.events.PingAckReceived):
                    for sid in waiting:
                        conn.send_data(sid, body[10:], end_stream=True)
                    waiting.clear()
            writer.write(conn.data_to_send())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("split", [False, True], ids=["whole", "split"])
def test_a_connect_stream_answered_with_an_http_error_raises_the_error_of_its_body(
    run: Callable[..., Any], split: bool
) -> None:
    async def main() -> None:
        server, url = await _http_error_peer(split)
        try:
            async with Channel(url, protocol="connect", codec="json", timeout=5.0) as ch:
                with pytest.raises(RpcError) as info:
                    await _collect(ch.stub(Loose).many(Item(3)))
                assert info.value.code is Code.RESOURCE_EXHAUSTED, info.value
                assert info.value.message == "try later"
        finally:
            server.close()
            await server.wait_closed()

    run(main())

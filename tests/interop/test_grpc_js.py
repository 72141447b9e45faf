"""The gRPC interop cases between h2mesh and @grpc/grpc-js, both ways.

- grpc-js's client (``node/grpc_client.js``) against the h2mesh server: one Node process
  runs every case per server, and each case is checked as its own test.
- The h2mesh client against grpc-js's server (``node/grpc_server.js``).
"""

from __future__ import annotations

import asyncio
import select
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from h2mesh import Channel, Code, RpcError
from h2mesh.protocol import ResponseMetadata

from ..conftest import LiveServer
from ._protos import empty_pb2, messages_pb2
from ._service import ECHO_INITIAL, ECHO_TRAILING, TestServiceApi, UnimplementedServiceApi
from .conftest import NODE_DIR, json_lines, run_node

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
    "unimplemented_service",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
)
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"


# -- grpc-js client -> h2mesh server -------------------------------------------------------
@pytest.fixture(scope="module")
def grpc_js_client_results(node: str, interop_server: LiveServer) -> dict[str, dict[str, Any]]:
    done = run_node(
        node,
        "grpc_client.js",
        "--server_host=127.0.0.1",
        f"--server_port={interop_server.port}",
        "--test_case=all",
    )
    results = {line["case"]: line for line in json_lines(done.stdout)}
    failed = [name for name, line in results.items() if not line["ok"]]
    assert done.returncode == (1 if failed else 0), done.stderr
    return results


@pytest.mark.parametrize("case", CASES)
def test_grpc_js_client(grpc_js_client_results: dict[str, dict[str, Any]], case: str) -> None:
    result = grpc_js_client_results.get(case)
    assert result is not None, f"grpc_client.js did not run {case}"
    assert result["ok"], result.get("error")


def test_grpc_js_client_single_case(node: str, interop_server: LiveServer) -> None:
    """The client runs one named case, as grpc's interop runner calls it."""
    done = run_node(
        node,
        "grpc_client.js",
        "--server_port",
        str(interop_server.port),
        "--test_case",
        "large_unary",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json_lines(done.stdout) == [{"case": "large_unary", "ok": True}]


# -- h2mesh client -> grpc-js server -------------------------------------------------------
@pytest.fixture(scope="module")
def grpc_js_url(node: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [node, str(NODE_DIR / "grpc_server.js")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NODE_DIR,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15.0)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            _, err = proc.communicate(timeout=5)
            pytest.fail(f"grpc_server.js did not start: {err}", pytrace=False)
        port = json_lines(line)[0]["port"]
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _out_req(size: int, payload: int = 0, **kw: Any) -> Any:
    return messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=size)],
        payload=messages_pb2.Payload(body=bytes(payload)),
        **kw,
    )


async def _items(*items: Any) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def _held(hold: asyncio.Event, *first: Any) -> AsyncIterator[Any]:
    """Yields ``first``, then waits for ``hold`` without ending the request stream."""
    for item in first:
        yield item
    await hold.wait()


def _echo_headers() -> dict[str, str]:
    return {ECHO_INITIAL: "test_initial_metadata_value", ECHO_TRAILING: "\xab\xab\xab"}


def _assert_echoed(md: ResponseMetadata) -> None:
    assert md.headers[ECHO_INITIAL] == "test_initial_metadata_value"
    assert md.trailers[ECHO_TRAILING].encode("latin-1") == b"\xab\xab\xab"


async def _raises(code: Code, call: Awaitable[Any], message: str | None = None) -> None:
    with pytest.raises(RpcError) as info:
        await call
    assert info.value.code == code
    if message is not None:
        assert info.value.message == message


async def _collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def empty_unary(ch: Channel) -> None:
    api = ch.stub(TestServiceApi)
    assert await api.empty_call(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()


async def large_unary(ch: Channel) -> None:
    req = messages_pb2.SimpleRequest(
        response_size=314159, payload=messages_pb2.Payload(body=bytes(271828))
    )
    resp = await ch.stub(TestServiceApi).unary_call(req, timeout=5)
    assert resp.payload.body == bytes(314159)


async def client_streaming(ch: Channel) -> None:
    reqs = [
        messages_pb2.StreamingInputCallRequest(payload=messages_pb2.Payload(body=bytes(n)))
        for n in (27182, 8, 1828, 45904)
    ]
    resp = await ch.stub(TestServiceApi).streaming_input_call(_items(*reqs), timeout=5)
    assert resp.aggregated_payload_size == 74922


async def server_streaming(ch: Channel) -> None:
    sizes = [31415, 9, 2653, 58979]
    req = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=n) for n in sizes]
    )
    got = await _collect(ch.stub(TestServiceApi).streaming_output_call(req, timeout=5))
    assert [len(r.payload.body) for r in got] == sizes


async def ping_pong(ch: Channel) -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pings() -> AsyncIterator[Any]:
        while (item := await queue.get()) is not None:
            yield item

    responses = ch.stub(TestServiceApi).full_duplex_call(pings(), timeout=5)
    for size, payload in [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)]:
        await queue.put(_out_req(size, payload))
        assert len((await anext(responses)).payload.body) == size
    await queue.put(None)
    assert await _collect(responses) == []


async def empty_stream(ch: Channel) -> None:
    assert await _collect(ch.stub(TestServiceApi).full_duplex_call(_items(), timeout=5)) == []


async def custom_metadata(ch: Channel) -> None:
    api = ch.stub(TestServiceApi)
    req = messages_pb2.SimpleRequest(
        response_size=314159, payload=messages_pb2.Payload(body=bytes(271828))
    )
    md = ResponseMetadata()
    resp = await api.unary_call(req, headers=_echo_headers(), metadata=md, timeout=5)
    assert len(resp.payload.body) == 314159
    _assert_echoed(md)

    md = ResponseMetadata()
    stream = api.full_duplex_call(
        _items(_out_req(314159, 271828)), headers=_echo_headers(), metadata=md, timeout=5
    )
    assert [len(r.payload.body) for r in await _collect(stream)] == [314159]
    _assert_echoed(md)


async def status_code_and_message(ch: Channel) -> None:
    api = ch.stub(TestServiceApi)
    status = messages_pb2.EchoStatus(code=2, message="test status message")
    bad = messages_pb2.SimpleRequest(response_status=status)
    await _raises(Code.UNKNOWN, api.unary_call(bad, timeout=5), "test status message")
    stream = api.full_duplex_call(
        _items(messages_pb2.StreamingOutputCallRequest(response_status=status)), timeout=5
    )
    await _raises(Code.UNKNOWN, _collect(stream), "test status message")


async def special_status_message(ch: Channel) -> None:
    status = messages_pb2.EchoStatus(code=2, message=SPECIAL_MESSAGE)
    bad = messages_pb2.SimpleRequest(response_status=status)
    call = ch.stub(TestServiceApi).unary_call(bad, timeout=5)
    await _raises(Code.UNKNOWN, call, SPECIAL_MESSAGE)


async def unimplemented_method(ch: Channel) -> None:
    call = ch.stub(TestServiceApi).unimplemented_call(empty_pb2.Empty(), timeout=5)
    await _raises(Code.UNIMPLEMENTED, call)


async def unimplemented_service(ch: Channel) -> None:
    call = ch.stub(UnimplementedServiceApi).unimplemented_call(empty_pb2.Empty(), timeout=5)
    await _raises(Code.UNIMPLEMENTED, call)


async def cancel_after_begin(ch: Channel) -> None:
    hold = asyncio.Event()
    api = ch.stub(TestServiceApi)
    task = asyncio.ensure_future(api.streaming_input_call(_held(hold), timeout=5))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await api.empty_call(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()


async def cancel_after_first_response(ch: Channel) -> None:
    hold = asyncio.Event()
    api = ch.stub(TestServiceApi)
    responses = api.full_duplex_call(_held(hold, _out_req(31415, 27182)), timeout=5)
    assert len((await anext(responses)).payload.body) == 31415
    await responses.aclose()
    assert await api.empty_call(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()


async def timeout_on_sleeping_server(ch: Channel) -> None:
    hold = asyncio.Event()
    first = messages_pb2.StreamingOutputCallRequest(payload=messages_pb2.Payload(body=bytes(27182)))
    stream = ch.stub(TestServiceApi).full_duplex_call(_held(hold, first), timeout=0.001)
    await _raises(Code.DEADLINE_EXCEEDED, _collect(stream))


H2MESH_CASES: dict[str, Callable[[Channel], Awaitable[None]]] = {
    name: globals()[name] for name in CASES
}


@pytest.mark.parametrize("case", CASES)
def test_h2mesh_client(run: Any, grpc_js_url: str, case: str) -> None:
    async def main() -> None:
        async with Channel(grpc_js_url, protocol="grpc") as ch:
            await H2MESH_CASES[case](ch)

    run(main())


@pytest.mark.parametrize("case", ["large_unary", "client_streaming", "ping_pong"])
def test_h2mesh_client_gzip(run: Any, grpc_js_url: str, case: str) -> None:
    """Compressed requests; grpc-js answers with the encoding it accepts."""

    async def main() -> None:
        async with Channel(grpc_js_url, protocol="grpc", compression="gzip") as ch:
            await H2MESH_CASES[case](ch)

    run(main())


def test_server_side_deadline(run: Any, grpc_js_url: str) -> None:
    """A slow grpc-js server stream ends with DEADLINE_EXCEEDED at the h2mesh client."""

    async def main() -> None:
        slow = messages_pb2.StreamingOutputCallRequest(
            response_parameters=[messages_pb2.ResponseParameters(size=1, interval_us=2_000_000)]
        )
        async with Channel(grpc_js_url, protocol="grpc") as ch:
            api = ch.stub(TestServiceApi)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await _raises(
                Code.DEADLINE_EXCEEDED, _collect(api.streaming_output_call(slow, timeout=0.1))
            )
            assert loop.time() - started < 1.5
            assert await api.empty_call(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()

    run(main())

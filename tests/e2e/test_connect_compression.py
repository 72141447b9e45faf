"""Connect compression: content-encoding for unary, connect-content-encoding for streams."""

from __future__ import annotations

import base64
import gzip
import json
import struct
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest
from examples.greeter import CountRequest, Greeter, HelloRequest, Msg, Num

from h2mesh import Channel, Code, RpcError

Run = Callable[[Coroutine[Any, Any, Any]], Any]
SAY_HELLO = "/demo.v1.Greeter/SayHello"


def _client() -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=5.0)


def _envelope(payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def _envelopes(body: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(body):
        flags, length = struct.unpack_from(">BI", body, pos)
        out.append((flags, body[pos + 5 : pos + 5 + length]))
        pos += 5 + length
    return out


def test_gzip_request_gets_a_gzip_response(server_url: str) -> None:
    with _client() as client:
        resp = client.post(
            server_url + SAY_HELLO,
            content=gzip.compress(b'{"name":"zip"}'),
            headers={
                "content-type": "application/json",
                "content-encoding": "gzip",
                "accept-encoding": "gzip",
            },
        )
        assert resp.status_code == 200
        assert resp.headers["content-encoding"] == "gzip"
        assert resp.json() == {"message": "Hello, zip!"}  # httpx inflates it
        # A plain request on the same connection stays plain.
        plain = client.post(
            server_url + SAY_HELLO,
            content=b'{"name":"plain"}',
            headers={"content-type": "application/json", "accept-encoding": "gzip"},
        )
        assert "content-encoding" not in plain.headers
        assert plain.json() == {"message": "Hello, plain!"}


def test_unsupported_or_corrupt_compression_is_refused(server_url: str) -> None:
    with _client() as client:
        resp = client.post(
            server_url + SAY_HELLO,
            content=b"xx",
            headers={"content-type": "application/json", "content-encoding": "br"},
        )
        assert resp.status_code == 501
        body = resp.json()
        assert body["code"] == "unimplemented"
        assert "'br'" in body["message"] and "gzip" in body["message"]
        bad = client.post(
            server_url + SAY_HELLO,
            content=b"not gzip at all",
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert bad.status_code == 500 and bad.json()["code"] == "internal"
        bomb = client.post(
            server_url + SAY_HELLO,
            content=gzip.compress(b"{" + b" " * (5 * 1024 * 1024) + b"}"),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert bomb.status_code == 429 and bomb.json()["code"] == "resource_exhausted"
        assert client.post(
            server_url + SAY_HELLO,
            content=b'{"name":"after"}',
            headers={"content-type": "application/json"},
        ).json() == {"message": "Hello, after!"}


def test_get_with_compressed_message(server_url: str) -> None:
    message = base64.urlsafe_b64encode(gzip.compress(b'{"name":"get"}')).rstrip(b"=").decode()
    url = f"{server_url}{SAY_HELLO}?encoding=json&base64=1&compression=gzip&message={message}"
    with _client() as client:
        resp = client.get(url)
    assert resp.status_code == 200
    assert resp.json() == {"message": "Hello, get!"}


def test_compressed_stream_envelopes(server_url: str) -> None:
    body = _envelope(gzip.compress(json.dumps({"to": 3}).encode()), flags=1)
    with _client() as client:
        resp = client.post(
            server_url + "/demo.v1.Greeter/Count",
            content=body,
            headers={
                "content-type": "application/connect+json",
                "connect-content-encoding": "gzip",
                "connect-accept-encoding": "gzip",
            },
        )
    assert resp.status_code == 200
    assert resp.headers["connect-content-encoding"] == "gzip"
    frames = _envelopes(resp.content)
    assert [flags & 1 for flags, _ in frames[:-1]] == [1, 1, 1]
    assert [json.loads(gzip.decompress(p)) for _, p in frames[:-1]] == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]
    assert frames[-1][0] & 2


@pytest.mark.parametrize("compression", ["gzip", "deflate", "zstd"])
def test_channel_with_compression(run: Run, server_url: str, compression: str) -> None:
    async def nums() -> AsyncIterator[Num]:
        for value in range(5):
            yield Num(value=value)

    async def msgs() -> AsyncIterator[Msg]:
        yield Msg(text="x" * 2000)

    async def main() -> None:
        async with Channel(server_url, codec="json", compression=compression) as ch:
            greeter = ch.stub(Greeter)
            assert (await greeter.say_hello(HelloRequest(name="c"))).message == "Hello, c!"
            assert [t.n async for t in greeter.count(CountRequest(to=3))] == [1, 2, 3]
            assert (await greeter.total(nums())).total == 10
            assert [m.text async for m in greeter.chat(msgs())] == ["echo: " + "x" * 2000]
            with pytest.raises(RpcError) as excinfo:
                await greeter.say_hello(HelloRequest(name=""))
            assert excinfo.value.code is Code.INVALID_ARGUMENT

    run(main())


def test_channel_rejects_unknown_compression() -> None:
    with pytest.raises(ValueError, match="unknown compression 'lz4'"):
        Channel("http://127.0.0.1:1", compression="lz4")

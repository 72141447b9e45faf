"""The server against real third-party clients: curl, nghttp and httpx.

Every test runs twice, against a server on uvloop and on plain asyncio.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import msgspec
import pytest
from examples.greeter import Greeter

from h2mesh import Service, rpc

if TYPE_CHECKING:
    from tests.conftest import LiveServer

Run = Callable[[Coroutine[Any, Any, Any]], Any]

SECRET = "kaboom-secret-detail"
FOUR_MIB = 4 * 1024 * 1024


class Empty(msgspec.Struct):
    pass


class Nap(msgspec.Struct):
    seconds: float


class Boom(Service, name="test.Boom"):
    """Misbehaving handlers: one raises a plain exception, one outlives its deadline."""

    @rpc
    async def explode(self, req: Empty) -> Empty:
        raise ValueError(SECRET)

    @rpc
    async def slow(self, req: Nap) -> Empty:
        await asyncio.sleep(req.seconds)
        return Empty()


@pytest.fixture
def server_services() -> list[Service]:
    return [Greeter(), Boom()]


HELLO = "/demo.v1.Greeter/SayHello"
COUNT = "/demo.v1.Greeter/Count"
JSON_CT = {"content-type": "application/json"}

HTTP_VERSIONS = pytest.mark.parametrize("http", ["2", "1.1"])


# -- wire helpers -------------------------------------------------------------------------
def envelope(payload: bytes, flags: int = 0) -> bytes:
    """One Connect stream envelope: flags, 4-byte big-endian length, payload."""
    return struct.pack(">BI", flags, len(payload)) + payload


def parse_envelopes(data: bytes) -> list[tuple[int, bytes]]:
    """Every envelope of a Connect stream body; the body must end on a boundary."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 5, f"truncated envelope header at {pos}: {data[pos:]!r}"
        flags, size = struct.unpack_from(">BI", data, pos)
        pos += 5
        assert len(data) - pos >= size, f"truncated envelope at {pos}"
        out.append((flags, data[pos : pos + size]))
        pos += size
    return out


def split_stream(data: bytes) -> tuple[list[Any], dict[str, Any]]:
    """(messages, end-stream object) of a Connect JSON stream body."""
    envs = parse_envelopes(data)
    assert envs, "empty stream body"
    *messages, (end_flags, end_payload) = envs
    assert end_flags == 0x02, f"last envelope has flags {end_flags:#x}"
    for flags, _ in messages:
        assert flags == 0, f"message envelope has flags {flags:#x}"
    return [json.loads(p) for _, p in messages], json.loads(end_payload)


@dataclass
class CurlResult:
    status: int
    http_version: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


class Curl:
    """Runs curl against the live server, writing headers and body to files."""

    def __init__(self, binary: str, base_url: str, tmp_path: Path) -> None:
        self.binary = binary
        self.base_url = base_url
        self.tmp_path = tmp_path
        self._n = 0

    def file(self, data: bytes) -> Path:
        self._n += 1
        path = self.tmp_path / f"req-{self._n}.bin"
        path.write_bytes(data)
        return path

    def __call__(
        self, path: str, *args: str, http: str = "2", data: bytes | None = None
    ) -> CurlResult:
        self._n += 1
        head = self.tmp_path / f"head-{self._n}.txt"
        body = self.tmp_path / f"body-{self._n}.bin"
        flag = "--http2-prior-knowledge" if http == "2" else "--http1.1"
        cmd = [
            self.binary,
            "-sS",
            flag,
            "--max-time",
            "10",
            "-D",
            str(head),
            "-o",
            str(body),
            "-w",
            "%{http_code} %{http_version}",
            *args,
        ]
        if data is not None:
            cmd += ["--data-binary", f"@{self.file(data)}"]
        cmd.append(self.base_url + path)
        proc = subprocess.run(cmd, capture_output=True, timeout=20, check=False)
        assert proc.returncode == 0, f"curl failed ({proc.returncode}): {proc.stderr.decode()}"
        status, version = proc.stdout.decode().split()
        headers: dict[str, str] = {}
        for line in head.read_text("latin-1").splitlines()[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return CurlResult(int(status), version, headers, body.read_bytes())


@pytest.fixture
def curl_peer(curl: str, server_url: str, tmp_path: Path) -> Curl:
    return Curl(curl, server_url, tmp_path)


@pytest.fixture
def h2client(server_url: str) -> Iterator[httpx.Client]:
    """httpx speaking HTTP/2 with prior knowledge (no HTTP/1.1, no upgrade)."""
    with httpx.Client(base_url=server_url, http1=False, http2=True, timeout=10.0) as client:
        yield client


def assert_error(resp: httpx.Response | CurlResult, status: int, code: str) -> dict[str, Any]:
    body = resp.content if isinstance(resp, httpx.Response) else resp.body
    status_got = resp.status_code if isinstance(resp, httpx.Response) else resp.status
    assert status_got == status, body
    err = json.loads(body)
    assert err["code"] == code, err
    assert isinstance(err.get("message"), str) and err["message"], err
    return err  # type: ignore[no-any-return]


# -- curl -------------------------------------------------------------------------------
@HTTP_VERSIONS
def test_curl_unary_json(curl_peer: Curl, http: str) -> None:
    res = curl_peer(
        HELLO, "-H", "content-type: application/json", http=http, data=b'{"name":"curl"}'
    )
    assert res.status == 200, res.body
    assert res.http_version == http
    assert res.json() == {"message": "Hello, curl!"}
    assert res.headers["content-type"] == "application/json"
    assert res.headers["x-greeter"] == "h2mesh"


@HTTP_VERSIONS
def test_curl_unary_error(curl_peer: Curl, http: str) -> None:
    res = curl_peer(HELLO, "-H", "content-type: application/json", http=http, data=b'{"name":""}')
    assert res.http_version == http
    err = assert_error(res, 400, "invalid_argument")
    assert err["message"] == "name must not be empty"
    assert res.headers["content-type"] == "application/json"


@HTTP_VERSIONS
def test_curl_get_idempotent(curl_peer: Curl, http: str) -> None:
    query = urlencode({"encoding": "json", "message": '{"name":"get"}'})
    res = curl_peer(f"{HELLO}?{query}", http=http)
    assert res.status == 200, res.body
    assert res.http_version == http
    assert res.json() == {"message": "Hello, get!"}


@HTTP_VERSIONS
def test_curl_server_stream(curl_peer: Curl, http: str) -> None:
    body = envelope(b'{"to":4}')
    res = curl_peer(COUNT, "-H", "content-type: application/connect+json", http=http, data=body)
    assert res.status == 200, res.body
    assert res.http_version == http
    assert res.headers["content-type"] == "application/connect+json"
    messages, end = split_stream(res.body)
    assert messages == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert "error" not in end
    assert set(end) <= {"metadata"}


@HTTP_VERSIONS
def test_curl_stream_error_in_end_message(curl_peer: Curl, http: str) -> None:
    # A stream request that is not even valid JSON: the error rides in the end-stream envelope.
    body = envelope(b'{"to":')
    res = curl_peer(COUNT, "-H", "content-type: application/connect+json", http=http, data=body)
    assert res.status == 200, res.body
    messages, end = split_stream(res.body)
    assert messages == []
    assert end["error"]["code"] == "invalid_argument"


# -- nghttp -----------------------------------------------------------------------------
def test_nghttp_unary(nghttp: str, server_url: str, tmp_path: Path) -> None:
    req = tmp_path / "req.json"
    req.write_bytes(b'{"name":"nghttp"}')
    proc = subprocess.run(
        [
            nghttp,
            "-v",
            "-t",
            "10",
            "-d",
            str(req),
            "-H",
            "content-type: application/json",
            server_url + HELLO,
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, out + proc.stderr.decode()
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", out), out
    assert re.search(r"recv \(stream_id=\d+\) x-greeter: h2mesh", out), out
    assert '{"message":"Hello, nghttp!"}' in out


def test_nghttp_error(nghttp: str, server_url: str, tmp_path: Path) -> None:
    req = tmp_path / "req.json"
    req.write_bytes(b'{"name":""}')
    proc = subprocess.run(
        [
            nghttp,
            "-v",
            "-t",
            "10",
            "-d",
            str(req),
            "-H",
            "content-type: application/json",
            server_url + HELLO,
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    out = proc.stdout.decode("utf-8", "replace")
    assert re.search(r"recv \(stream_id=\d+\) :status: 400", out), out
    assert '"code":"invalid_argument"' in out


# -- httpx over HTTP/2 ------------------------------------------------------------------------
def test_httpx_unary_json(h2client: httpx.Client) -> None:
    r = h2client.post(HELLO, content=b'{"name":"httpx"}', headers=JSON_CT)
    assert r.status_code == 200, r.text
    assert r.http_version == "HTTP/2"
    assert r.json() == {"message": "Hello, httpx!"}
    assert r.headers["x-greeter"] == "h2mesh"


def test_httpx_unary_msgpack(h2client: httpx.Client) -> None:
    body = msgspec.msgpack.encode({"name": "mp"})
    r = h2client.post(HELLO, content=body, headers={"content-type": "application/msgpack"})
    assert r.status_code == 200, r.content
    assert r.headers["content-type"] == "application/msgpack"
    assert msgspec.msgpack.decode(r.content) == {"message": "Hello, mp!"}
    # Errors are JSON whatever the request codec.
    bad = h2client.post(
        HELLO,
        content=msgspec.msgpack.encode({"name": ""}),
        headers={"content-type": "application/msgpack"},
    )
    assert_error(bad, 400, "invalid_argument")


def test_httpx_get(h2client: httpx.Client) -> None:
    r = h2client.get(HELLO, params={"encoding": "json", "message": '{"name":"g"}'})
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Hello, g!"}
    # GET of a method that is not idempotent is refused: 405, and which method to use.
    r = h2client.get(COUNT, params={"encoding": "json", "message": '{"to":1}'})
    assert_error(r, 405, "unimplemented")
    assert r.headers["allow"] == "POST"


def test_httpx_server_stream(h2client: httpx.Client) -> None:
    r = h2client.post(
        COUNT,
        content=envelope(b'{"to":3}'),
        headers={"content-type": "application/connect+json"},
    )
    assert r.status_code == 200
    messages, end = split_stream(r.content)
    assert messages == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert "error" not in end


def test_httpx_many_concurrent_on_one_connection(run: Run, live_server: LiveServer) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(
            base_url=live_server.url, http1=False, http2=True, timeout=20.0
        ) as client:

            async def one(i: int) -> tuple[int, Any, int]:
                r = await client.post(HELLO, json={"name": f"n{i}"})
                return r.status_code, r.json(), id(r.extensions["network_stream"])

            results = await asyncio.gather(*(one(i) for i in range(200)))
            for i, (status, body, _) in enumerate(results):
                assert status == 200
                assert body == {"message": f"Hello, n{i}!"}
            assert len({conn for _, _, conn in results}) == 1
            count = await asyncio.to_thread(live_server.connection_count)
            assert count == 1

    run(main())


# -- bad input ------------------------------------------------------------------------------
def _good_call(client: httpx.Client, conn: object) -> None:
    r = client.post(HELLO, content=b'{"name":"again"}', headers=JSON_CT)
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Hello, again!"}
    assert r.extensions["network_stream"] is conn, "the good call used another connection"


@pytest.fixture
def conn_of(h2client: httpx.Client) -> object:
    """The network stream of ``h2client``'s one connection (opened by a first call)."""
    r = h2client.post(HELLO, content=b'{"name":"first"}', headers=JSON_CT)
    assert r.status_code == 200
    return r.extensions["network_stream"]


def test_malformed_json(h2client: httpx.Client, conn_of: object) -> None:
    r = h2client.post(HELLO, content=b'{"name": "x"', headers=JSON_CT)
    err = assert_error(r, 400, "invalid_argument")
    assert "malformed JSON" in err["message"]
    _good_call(h2client, conn_of)


def test_wrong_field_type(h2client: httpx.Client, conn_of: object) -> None:
    r = h2client.post(HELLO, content=b'{"name": 5}', headers=JSON_CT)
    err = assert_error(r, 400, "invalid_argument")
    assert "str" in err["message"] and "name" in err["message"], err
    _good_call(h2client, conn_of)


def test_missing_field(h2client: httpx.Client, conn_of: object) -> None:
    r = h2client.post(HELLO, content=b"{}", headers=JSON_CT)
    err = assert_error(r, 400, "invalid_argument")
    assert "name" in err["message"], err
    _good_call(h2client, conn_of)


def test_unknown_method(h2client: httpx.Client, conn_of: object) -> None:
    r = h2client.post("/demo.v1.Greeter/NoSuchMethod", content=b"{}", headers=JSON_CT)
    err = assert_error(r, 501, "unimplemented")
    assert "/demo.v1.Greeter/NoSuchMethod" in err["message"]
    _good_call(h2client, conn_of)


def test_unknown_service(h2client: httpx.Client, conn_of: object) -> None:
    r = h2client.post("/no.such.v1.Service/SayHello", content=b"{}", headers=JSON_CT)
    assert_error(r, 501, "unimplemented")
    _good_call(h2client, conn_of)


def test_unsupported_content_type(h2client: httpx.Client, conn_of: object) -> None:
    r = h2client.post(HELLO, content=b"name=x", headers={"content-type": "text/plain"})
    assert r.status_code == 415, r.text
    _good_call(h2client, conn_of)


def test_body_over_limit(h2client: httpx.Client, conn_of: object) -> None:
    # A well-formed request that would succeed if the 4 MiB limit were not enforced.
    body = b'{"name":"' + b"x" * FOUR_MIB + b'"}'
    r = h2client.post(HELLO, content=body, headers=JSON_CT)
    err = assert_error(r, 429, "resource_exhausted")
    assert str(FOUR_MIB) in err["message"], err
    _good_call(h2client, conn_of)


def test_handler_exception_is_internal(h2client: httpx.Client, conn_of: object) -> None:
    r = h2client.post("/test.Boom/Explode", content=b"{}", headers=JSON_CT)
    assert_error(r, 500, "internal")
    assert SECRET not in r.text
    assert "Traceback" not in r.text and "ValueError" not in r.text
    _good_call(h2client, conn_of)


def test_unary_call_to_stream_method(h2client: httpx.Client, conn_of: object) -> None:
    r = h2client.post(COUNT, content=b'{"to":1}', headers=JSON_CT)
    assert_error(r, 501, "unimplemented")
    _good_call(h2client, conn_of)


def test_bad_timeout_header(h2client: httpx.Client, conn_of: object) -> None:
    r = h2client.post(
        HELLO, content=b'{"name":"x"}', headers={**JSON_CT, "connect-timeout-ms": "soon"}
    )
    assert_error(r, 400, "invalid_argument")
    _good_call(h2client, conn_of)


# -- deadlines ----------------------------------------------------------------------------
def test_stream_deadline(h2client: httpx.Client, conn_of: object) -> None:
    started = time.monotonic()
    r = h2client.post(
        COUNT,
        content=envelope(b'{"to":20,"delay":0.04}'),
        headers={"content-type": "application/connect+json", "connect-timeout-ms": "100"},
    )
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    messages, end = split_stream(r.content)
    assert len(messages) < 20
    assert messages == [{"n": n} for n in range(1, len(messages) + 1)]
    assert end["error"]["code"] == "deadline_exceeded", end
    assert elapsed < 2.0
    _good_call(h2client, conn_of)


def test_unary_deadline(h2client: httpx.Client, conn_of: object) -> None:
    started = time.monotonic()
    r = h2client.post(
        "/test.Boom/Slow",
        content=b'{"seconds":5}',
        headers={**JSON_CT, "connect-timeout-ms": "100"},
    )
    elapsed = time.monotonic() - started
    assert_error(r, 504, "deadline_exceeded")
    assert 0.09 <= elapsed < 2.0
    _good_call(h2client, conn_of)


def test_unary_within_deadline(h2client: httpx.Client) -> None:
    r = h2client.post(
        "/test.Boom/Slow",
        content=b'{"seconds":0.01}',
        headers={**JSON_CT, "connect-timeout-ms": "5000"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {}

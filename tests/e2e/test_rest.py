"""REST routes against real clients: curl (HTTP/1.1 and h2c), httpx (HTTP/1.1 and HTTP/2),
and the same methods over Connect (h2mesh's client, curl) and gRPC (grpcio, through the
.proto that ``h2mesh proto`` writes). Browser-style CORS requests go through httpx."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import grpc
import httpx
import pytest
from examples.users import User, UserId, Users

from h2mesh import Channel, Code, CorsPolicy, RpcError, Service

from ..conftest import ROOT, LiveServer, googleapis_root


@pytest.fixture
def server_services() -> list[Service]:
    return [Users()]


def _curl(curl: str, *args: str) -> tuple[int, dict[str, str], str]:
    proc = subprocess.run(
        [curl, "-sS", "-D", "-", *args], capture_output=True, timeout=10, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    head, _, body = proc.stdout.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


@pytest.mark.parametrize("version", ["--http1.1", "--http2-prior-knowledge"])
def test_curl_walks_a_resource_through_every_verb(curl: str, server_url: str, version: str) -> None:
    base = server_url + "/v1/users"
    status, headers, body = _curl(curl, version, base + "/1")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "id": 1,
        "name": "Ada",
        "email": "",
        "tags": ["math"],
        "address": {"city": "London", "country": ""},
    }
    new = {"name": "Edsger", "email": "ewd@example.org", "tags": ["goto"]}
    status, _, body = _curl(curl, version, "-X", "POST", base, "--json", json.dumps(new))
    assert status == 200
    created = json.loads(body)
    uid = created["id"]
    assert created["name"] == "Edsger" and uid > 3
    # PUT: the body is one field (`user`), the path names which user.
    replace = {"name": "E. W. Dijkstra", "tags": ["structured"]}
    status, _, body = _curl(
        curl, version, "-X", "PUT", f"{base}/{uid}", "--json", json.dumps(replace)
    )
    assert status == 200 and json.loads(body)["name"] == "E. W. Dijkstra"
    # PATCH: the body is the request; the path variable wins over a body `id`.
    status, _, body = _curl(
        curl, version, "-X", "PATCH", f"{base}/{uid}", "--json", '{"id": 1, "email": "e@x"}'
    )
    assert status == 200
    assert json.loads(body) == {**json.loads(body), "id": uid, "email": "e@x"}
    assert json.loads(body)["name"] == "E. W. Dijkstra"
    status, _, body = _curl(curl, version, "-X", "DELETE", f"{base}/{uid}")
    assert status == 200 and json.loads(body) == {"id": uid, "deleted": True}
    status, headers, body = _curl(curl, version, f"{base}/{uid}")
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"code": "not_found", "message": f"no user with id {uid}"}


@pytest.mark.parametrize("http2", [False, True])
def test_httpx_binds_query_parameters_repeated_and_nested(server_url: str, http2: bool) -> None:
    with httpx.Client(base_url=server_url, http1=not http2, http2=http2) as client:
        r = client.get("/v1/users", params=[("tag", "navy"), ("tag", "cobol")])
        assert r.status_code == 200
        assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert [u["name"] for u in r.json()["users"]] == ["Grace"]
        r = client.get("/v1/users", params={"page.size": "1", "page.offset": "1"})
        assert r.json() == {"users": [r.json()["users"][0]], "total": 3}
        assert r.json()["users"][0]["name"] == "Grace"
        # A second route of the same method, and a multi-segment path variable.
        assert client.get("/v1/people", params={"city": "Portland"}).json()["total"] == 1
        r = client.get("/v1/orgs/kernel/users")
        assert [u["name"] for u in r.json()["users"]] == ["Linus"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "message"),
    [
        ("GET", "/v1/users/abc", None, 400, "invalid_argument", "field `id`: expected an integer"),
        ("GET", "/v1/users?page.size=x", None, 400, "invalid_argument", "field `page.size`"),
        (
            "GET",
            "/v1/users?page.size=500",
            None,
            400,
            "invalid_argument",
            "<= 100 - at `$.page.size`",
        ),
        ("POST", "/v1/users", b'{"name": 5}', 400, "invalid_argument", "got `int` - at `$.name`"),
        ("POST", "/v1/users", b"{nope", 400, "invalid_argument", "malformed JSON"),
        ("POST", "/v1/users", b"{}", 400, "invalid_argument", "missing required field `name`"),
        ("GET", "/v1/users/99999", None, 404, "not_found", "no user with id 99999"),
        ("DELETE", "/v1/users", None, 405, "unimplemented", "allowed: GET, POST"),
    ],
)
def test_errors_are_connect_json_with_their_status(
    server_url: str,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: str,
    message: str,
) -> None:
    r = httpx.request(method, server_url + path, content=body)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert r.json()["code"] == code
    assert message in r.json()["message"]
    if status == 405:
        assert r.headers["allow"] == "GET, POST"
    # The server is unharmed: the next call on a new connection works.
    assert httpx.get(server_url + "/v1/users/1").status_code == 200


@pytest.mark.parametrize("http2", [False, True])
def test_head_answers_a_get_route_without_a_body(server_url: str, http2: bool) -> None:
    with httpx.Client(base_url=server_url, http1=not http2, http2=http2) as client:
        for path in ("/v1/users/1", "/openapi.json"):
            r = client.head(path)
            assert r.status_code == 200 and r.content == b""
            assert r.headers["content-type"].startswith("application/json")
        assert client.head("/v1/users/4040").status_code == 404
        assert client.get("/v1/users/1").json()["id"] == 1  # the connection is fine


def test_server_stream_is_ndjson_or_sse(server_url: str, curl: str) -> None:
    with httpx.stream("GET", server_url + "/v1/users:watch", params={"count": 2}) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [u["name"] for u in lines] == ["Ada", "Grace"]
    status, headers, body = _curl(
        curl, "-N", "-H", "accept: text/event-stream", server_url + "/v1/users:watch?count=3"
    )
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = [e for e in body.split("\n\n") if e]
    assert [json.loads(e.removeprefix("data: "))["name"] for e in events] == [
        "Ada",
        "Grace",
        "Linus",
    ]
    # A bad argument before the first message is a plain JSON error.
    r = httpx.get(server_url + "/v1/users:watch", params={"interval": "2"})
    assert r.status_code == 400 and "<= 1" in r.json()["message"]


def test_the_same_methods_answer_over_connect(run: Any, server_url: str, curl: str) -> None:
    status, _, body = _curl(
        curl,
        "-H",
        "content-type: application/json",
        "--data",
        '{"id": 2}',
        server_url + "/demo.users.v1.Users/GetUser",
    )
    assert status == 200 and json.loads(body)["name"] == "Grace"

    async def main() -> None:
        async with Channel(server_url) as ch:
            users = ch.stub(Users)
            user = await users.get_user(UserId(3))
            assert user == User(3, "Linus", tags=["kernel"], address=user.address)
            assert [u.name async for u in users.watch_users(_watch(2))] == ["Ada", "Grace"]
            with pytest.raises(RpcError) as info:
                await users.get_user(UserId(404))
            assert info.value.code is Code.NOT_FOUND

    run(main())


def _watch(count: int) -> Any:
    from examples.users import WatchRequest

    return WatchRequest(count=count)


@pytest.fixture(scope="module")
def users_pb(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, ModuleType]:
    """users_pb2 and users_pb2_grpc: ``h2mesh proto`` output compiled by grpcio-tools."""
    root = tmp_path_factory.mktemp("users_proto")
    target = root / "demo" / "users" / "v1" / "users.proto"
    target.parent.mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-m", "h2mesh", "proto", "examples.users:Users", "-o", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 'import "google/api/annotations.proto";' in target.read_text()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{googleapis_root()}",
            f"--python_out={root}",
            f"--grpc_python_out={root}",
            "demo/users/v1/users.proto",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(root))
    try:
        return (
            importlib.import_module("demo.users.v1.users_pb2"),
            importlib.import_module("demo.users.v1.users_pb2_grpc"),
        )
    finally:
        sys.path.remove(str(root))


def test_the_proto_carries_the_routes_as_google_api_http(
    users_pb: tuple[ModuleType, ModuleType],
) -> None:
    from google.api import annotations_pb2

    pb2, _ = users_pb
    methods = pb2.DESCRIPTOR.services_by_name["Users"].methods_by_name
    rule = methods["ListUsers"].GetOptions().Extensions[annotations_pb2.http]
    assert rule.get == "/v1/users"
    assert [b.get for b in rule.additional_bindings] == ["/v1/people"]
    rule = methods["ReplaceUser"].GetOptions().Extensions[annotations_pb2.http]
    assert (rule.put, rule.body) == ("/v1/users/{id}", "user")
    rule = methods["ListOrgUsers"].GetOptions().Extensions[annotations_pb2.http]
    assert rule.get == "/v1/{name=orgs/*}/users"


def test_the_same_methods_answer_over_grpc(
    server_url: str, users_pb: tuple[ModuleType, ModuleType]
) -> None:
    pb2, pb2_grpc = users_pb
    with grpc.insecure_channel(server_url.removeprefix("http://")) as ch:
        stub = pb2_grpc.UsersStub(ch)
        assert stub.GetUser(pb2.UserId(id=1), timeout=5).name == "Ada"
        created = stub.CreateUser(pb2.NewUser(name="Barbara", tags=["clu"]), timeout=5)
        assert created.id > 3
        names = [u.name for u in stub.WatchUsers(pb2.WatchRequest(count=2), timeout=5)]
        assert names == ["Ada", "Grace"]
        with pytest.raises(grpc.RpcError) as info:
            stub.GetUser(pb2.UserId(id=404), timeout=5)
        assert info.value.code() is grpc.StatusCode.NOT_FOUND
    # What gRPC created, REST reads.
    assert httpx.get(f"{server_url}/v1/users/{created.id}").json()["name"] == "Barbara"


BROWSER = "https://app.example"


def test_browser_cors_preflight_and_response_agree(server_url: str) -> None:
    with httpx.Client(base_url=server_url) as client:
        pre = client.options(
            "/v1/users/1",
            headers={
                "origin": BROWSER,
                "access-control-request-method": "PATCH",
                "access-control-request-headers": "content-type",
            },
        )
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == BROWSER
        assert "PATCH" in pre.headers["access-control-allow-methods"]
        assert pre.headers["access-control-allow-headers"] == "content-type"
        assert pre.headers["allow"] == "GET, PUT, PATCH, DELETE, OPTIONS"
        r = client.patch("/v1/users/1", json={"email": "ada@x"}, headers={"origin": BROWSER})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == BROWSER
        assert r.headers["vary"] == "origin"
        # Connect POST: the same policy (this answered no allow-origin before).
        r = client.post("/demo.users.v1.Users/GetUser", json={"id": 1}, headers={"origin": BROWSER})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == BROWSER
        # Errors carry the header too, so that the page can read them.
        r = client.get("/v1/users/777", headers={"origin": BROWSER})
        assert r.status_code == 404 and r.headers["access-control-allow-origin"] == BROWSER
        r = client.post("/v1/users/1", headers={"origin": BROWSER})
        assert r.status_code == 405 and r.headers["access-control-allow-origin"] == BROWSER


@pytest.fixture
def strict_cors(loop_kind: str) -> Iterator[LiveServer]:
    live = LiveServer([Users()], loop_kind, cors=CorsPolicy(["https://good.example"]))
    try:
        live.start()
        yield live
    finally:
        live.close()


def test_restricted_origins_are_granted_only_to_those_listed(strict_cors: LiveServer) -> None:
    with httpx.Client(base_url=strict_cors.url) as client:
        for origin, granted in [("https://good.example", True), ("https://evil.example", False)]:
            pre = client.options(
                "/demo.users.v1.Users/GetUser",
                headers={"origin": origin, "access-control-request-method": "POST"},
            )
            assert pre.status_code == 204
            assert ("access-control-allow-origin" in pre.headers) is granted
            r = client.post(
                "/demo.users.v1.Users/GetUser", json={"id": 1}, headers={"origin": origin}
            )
            assert r.status_code == 200
            assert r.headers.get("access-control-allow-origin") == (origin if granted else None)
            r = client.get("/v1/users/1", headers={"origin": origin})
            assert r.headers.get("access-control-allow-origin") == (origin if granted else None)

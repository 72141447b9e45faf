"""``h2mesh serve`` with several MODULE:OBJECT targets: services beside an ASGI or WSGI
application, told apart automatically or as ``--interface`` forces; run as real processes,
called by curl, httpx, ``h2mesh list`` and grpcio's health and reflection clients."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from h2mesh.cli import _configure_server, build_parser, load_server
from tests.e2e.test_cli import H2MESH, REPO, _serve
from tests.web.silent_ws import stay_silent_h1
from tests.web.test_websocket import _client_logger, _Pings

WS_APP = "tests.web.apps.ws_apps:fastapi_app"
DUAL_APP = "tests.web.apps.dual_interface:app"
SCOPE_APP = "tests.web.apps.scope_echo:app"


def test_service_and_fastapi_app_on_one_port(tmp_path: Path, curl: str) -> None:
    server = _serve(tmp_path, "examples.greeter:Greeter", "examples.web_app:app")
    try:
        rpc = subprocess.run(
            [
                curl,
                "-sS",
                "--http2-prior-knowledge",
                "-H",
                "content-type: application/json",
                "-d",
                '{"name": "cli"}',
                f"{server.url}/demo.v1.Greeter/SayHello",
            ],
            capture_output=True,
            check=True,
            timeout=10,
        )
        assert json.loads(rpc.stdout) == {"message": "Hello, cli!"}
        with httpx.Client(base_url=server.url, http2=True, http1=False) as client:
            hello = client.get("/hello/web")
            assert hello.json() == {"message": "Hello from FastAPI, web!"}
            assert hello.http_version == "HTTP/2"
            assert client.get("/openapi.json").json()["info"]["title"] == "web beside Greeter"
            assert client.get("/nowhere").json() == {"detail": "Not Found"}
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
        log = server.log.read_text()
        assert "route /demo.v1.Greeter/SayHello" in log
        assert "every other path: ASGI application fastapi.applications:FastAPI" in log
    finally:
        server.stop()


def test_a_wsgi_app_is_detected(tmp_path: Path) -> None:
    server = _serve(tmp_path, "tests.web.apps.flask_app:app")
    try:
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/items/flask").json()["name"] == "flask"
        assert "WSGI application" in server.log.read_text()
    finally:
        server.stop()


def test_health_and_reflection_answer_beside_an_app(tmp_path: Path) -> None:
    """The built-in services stay the server's with an application mounted, and a path
    no service serves is the application's 404, not h2mesh's ``unimplemented``."""
    server = _serve(tmp_path, "examples.greeter:Greeter", "examples.web_app:app")
    try:
        listed = subprocess.run(
            [str(H2MESH), "list", server.url],
            cwd=REPO, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert "demo.v1.Greeter" in listed.stdout.split()
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            reflection = ProtoReflectionDescriptorDatabase(channel)
            assert set(reflection.get_services()) >= {
                "demo.v1.Greeter",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
            }
            greeter = descriptor_pool.DescriptorPool(reflection).FindServiceByName(
                "demo.v1.Greeter"
            )
            assert greeter.methods_by_name["SayHello"].input_type.full_name == (
                "demo.v1.HelloRequest"
            )
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", "demo.v1.Greeter"):
                request = health_pb2.HealthCheckRequest(service=name)
                reply = health.Check(request, timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        with httpx.Client(base_url=server.url, http1=False, http2=True, timeout=5) as client:
            # A plain path, and a gRPC call of a method no service has: both the app's.
            for reply in (
                client.get("/nowhere"),
                client.post(
                    "/demo.v1.Nowhere/Nothing",
                    content=b"\0\0\0\0\0",
                    headers={"content-type": "application/grpc", "te": "trailers"},
                ),
            ):
                assert reply.status_code == 404
                assert reply.json() == {"detail": "Not Found"}
                assert "grpc-status" not in reply.headers
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("flags", "kind"),
    [([], "wsgi"), (["--interface", "wsgi"], "wsgi"), (["--interface", "asgi"], "asgi")],
    ids=["detected", "forced-wsgi", "forced-asgi"],
)
def test_interface_flag_forces_how_the_app_is_called(
    tmp_path: Path, flags: list[str], kind: str
) -> None:
    """The application's ``__call__`` is a plain method, so detection takes it for WSGI;
    ``--interface asgi`` calls it with ASGI's arguments and awaits what it returns."""
    server = _serve(tmp_path, "examples.greeter:Greeter", DUAL_APP, *flags)
    try:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            reply = client.get("/which")
            assert (reply.status_code, reply.text) == (200, f"{kind} /which")
            hello = client.post("/demo.v1.Greeter/SayHello", json={"name": kind})
            assert hello.json() == {"message": f"Hello, {kind}!"}
        log = server.log.read_text()
        described = f"every other path: {kind.upper()} application"
        assert f"{described} tests.web.apps.dual_interface:DualApp" in log
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("target", "interface", "message"),
    [
        (
            "tests.web.apps.flask_app:app",
            "asgi",
            "tests.web.apps.flask_app:app: --interface asgi, but it takes "
            "(environ, start_response), not the ASGI arguments (scope, receive, send)",
        ),
        (
            "tests.web.apps.fastapi_app:app",
            "wsgi",
            "tests.web.apps.fastapi_app:app: --interface wsgi, but it is an ASGI "
            "application (an async callable)",
        ),
    ],
    ids=["wsgi-app-as-asgi", "asgi-app-as-wsgi"],
)
def test_a_wrong_forced_interface_exits_2(target: str, interface: str, message: str) -> None:
    """Not a server that answers 500 to every request: the target cannot be called so."""
    out = subprocess.run(
        [str(H2MESH), "serve", "examples.greeter:Greeter", target, "--interface", interface,
         "--port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr == f"error: {message}\n"
    assert "serving on" not in out.stdout


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (
            ["tests.web.apps.fastapi_app:app", "tests.web.apps.flask_app:app"],
            "at most one ASGI or WSGI application",
        ),
        (["examples.greeter:Greeter", "examples.greeter:Greeter"], "two services serve"),
    ],
)
def test_conflicting_targets_exit_2(targets: list[str], message: str) -> None:
    out = subprocess.run(
        [str(H2MESH), "serve", *targets, "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_a_failed_lifespan_startup_exits_1_with_the_apps_message() -> None:
    out = subprocess.run(
        [str(H2MESH), "serve", "tests.web.apps.failing_lifespan:app", "--port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 1
    assert "error: the application did not start" in out.stderr
    assert "no database" in out.stderr
    assert "Traceback" not in out.stderr
    assert "serving on" not in out.stdout


def test_ws_flags_set_keepalive_and_the_message_size_limit(tmp_path: Path) -> None:
    """``--ws-ping-interval 0.3 --ws-ping-timeout 0.5``: a client that answers no ping
    is closed with 1011 and dropped 0.8 s after the handshake (plus what a loaded
    machine adds), one that answers stays; ``--ws-max-size`` closes a larger message
    with 1009."""
    interval, timeout = 0.3, 0.5
    server = _serve(
        tmp_path, WS_APP,
        "--ws-ping-interval", str(interval), "--ws-ping-timeout", str(timeout),
        "--ws-max-size", "4096",
    )  # fmt: skip
    url = f"ws://127.0.0.1:{server.port}/echo"

    async def main() -> None:
        silent = await stay_silent_h1("127.0.0.1", server.port, "/echo", deadline=15.0)
        assert silent.pings >= 1, silent.log
        assert (silent.close_code, silent.close_reason) == (1011, "keepalive ping timeout")
        assert silent.how in ("eof", "reset")
        assert interval + timeout - 0.1 <= silent.lasted <= interval + timeout + 3.0
        # A client that answers (websockets' own pongs) outlives three pings, that is
        # more than twice the time the silent one got.
        pings = _Pings(target=3)
        async with connect(url, ping_interval=None, logger=_client_logger(pings)) as ws:
            await asyncio.wait_for(pings.reached.wait(), 20.0)
            await ws.send("x" * 4096)
            assert await ws.recv() == "x" * 4096
            await ws.send("y" * 4097)
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1009

    try:
        asyncio.run(main())
    finally:
        server.stop()


@pytest.mark.parametrize("off", ["none", "0", "OFF"])
def test_ws_ping_flags_turn_off_with_0_or_none(off: str) -> None:
    args = build_parser().parse_args(
        ["serve", WS_APP, "--ws-ping-interval", off, "--ws-ping-timeout", off]
    )
    server = load_server(args.targets, args.interface)
    _configure_server(server, args)
    assert server.app is not None
    assert (server.app.ws_ping_interval, server.app.ws_ping_timeout) == (None, None)
    assert server.app.ws_max_size == 16 * 1024 * 1024  # not given: the default
    # A flag not given leaves what the server was built with.
    args = build_parser().parse_args(["serve", WS_APP, "--ws-ping-timeout", "7"])
    server = load_server(args.targets, args.interface)
    _configure_server(server, args)
    assert server.app is not None
    assert (server.app.ws_ping_interval, server.app.ws_ping_timeout) == (20.0, 7.0)


@pytest.mark.parametrize(("word", "on"), [("false", False), ("no", False), ("TRUE", True)])
def test_ws_per_message_deflate_flag(word: str, on: bool) -> None:
    args = build_parser().parse_args(["serve", WS_APP, "--ws-per-message-deflate", word])
    server = load_server(args.targets, args.interface)
    _configure_server(server, args)
    assert server.app is not None
    assert server.app.ws_per_message_deflate is on


def test_ws_flags_override_a_served_servers_own_options() -> None:
    target = "tests.web.apps.ws_server:server"  # ws_ping_interval=5, ws_max_size=1024
    args = build_parser().parse_args(["serve", target, "--ws-ping-timeout", "3"])
    server = load_server(args.targets, args.interface)
    _configure_server(server, args)
    assert server.app is not None
    assert (server.app.ws_ping_interval, server.app.ws_ping_timeout) == (5.0, 3.0)
    assert server.app.ws_max_size == 1024


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([WS_APP, "--ws-max-size", "0"], "ws_max_size must be a positive number of bytes"),
        ([WS_APP, "--ws-ping-interval", "-1"], "ws_ping_interval must be a number of seconds"),
        ([WS_APP, "--ws-ping-timeout", "soon"], "not a number of seconds: 'soon'"),
        ([WS_APP, "--ws-per-message-deflate", "maybe"], "not true or false: 'maybe'"),
        (["examples.greeter:Greeter", "--ws-ping-interval", "5"], "no application is served"),
        ([SCOPE_APP, "--wsgi-threads", "0"], "not a positive number of threads: '0'"),
        ([SCOPE_APP, "--wsgi-threads", "2"], "--wsgi-threads: the application is ASGI, not WSGI"),
        (
            ["tests.web.apps.flask_app:app", "--lifespan", "on"],
            "--lifespan on: a WSGI application has no lifespan",
        ),
        ([SCOPE_APP, "--lifespan", "sometimes"], "invalid choice: 'sometimes'"),
        (
            ["examples.greeter:Greeter", "--root-path", "/x"],
            "--root-path: no application is served",
        ),
        (
            ["examples.greeter:Greeter", "--interface", "wsgi"],
            "--interface wsgi: no application target is given",
        ),
    ],
)
def test_bad_app_flags_exit_2(args: list[str], message: str) -> None:
    out = subprocess.run(
        [str(H2MESH), "serve", *args, "--port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("flags", [False, True], ids=["defaults", "flags"])
def test_app_flags_set_root_path_lifespan_and_the_response_fields(
    tmp_path: Path, flags: bool
) -> None:
    """``--root-path /api --lifespan off --no-server-header --no-date-header`` reach the
    application's scope and every response, over HTTP/2 and HTTP/1.1; without them the
    defaults hold (no root path, lifespan run, ``server`` and ``date`` sent)."""
    extra = ["--root-path", "/api", "--lifespan", "off", "--no-server-header"] if flags else []
    extra += ["--no-date-header"] if flags else []
    server = _serve(tmp_path, SCOPE_APP, *extra)
    try:
        for http2 in (True, False):
            with httpx.Client(base_url=server.url, http2=http2, http1=not http2) as client:
                r = client.get("/api/items")
            assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            seen = r.json()
            assert seen["root_path"] == ("/api" if flags else "")
            assert seen["started"] is not flags
            assert ("server" in r.headers, "date" in r.headers) == (not flags, not flags)
            if not flags:
                assert r.headers["server"] == "h2mesh"
    finally:
        server.stop()


def test_wsgi_threads_flag_sizes_the_pool() -> None:
    args = build_parser().parse_args(
        ["serve", "tests.web.apps.flask_app:app", "--wsgi-threads", "3"]
    )
    server = load_server(args.targets, args.interface)
    _configure_server(server, args)
    assert server.app is not None and server.app.kind == "WSGI"
    assert server.app.app.threads == 3  # type: ignore[attr-defined]

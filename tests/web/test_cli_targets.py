"""``h2mesh serve`` with several MODULE:OBJECT targets: services beside an ASGI or WSGI
application, told apart automatically; run as real processes, called by curl and httpx."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import H2MESH, REPO, _serve


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
        with httpx.Client(base_url=server.url, http2=True) as client:
            assert client.get("/hello/web").json() == {"message": "Hello from FastAPI, web!"}
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

"""The OpenAPI document: served at /openapi.json, written by ``h2mesh openapi``, valid for
openapi-spec-validator, and true to the server (schemathesis ``--checks all`` against the
running server, bounded in examples and time)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from examples.users import Users
from openapi_spec_validator import validate

from ..conftest import ROOT, SETUP_HINT, LiveServer


@pytest.fixture(scope="module")
def users_server() -> Iterator[LiveServer]:
    live = LiveServer([Users()], "uvloop")
    try:
        live.start()
        yield live
    finally:
        live.close()


@pytest.fixture(scope="module")
def document(users_server: LiveServer) -> dict[str, object]:
    r = httpx.get(users_server.url + "/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc: dict[str, object] = r.json()
    return doc


def test_the_document_is_valid_openapi_3_1(document: dict[str, object]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_route_and_connect_endpoint_is_documented(document: dict[str, object]) -> None:
    paths = document["paths"]
    assert isinstance(paths, dict)
    assert set(paths["/v1/users/{id}"]) == {"get", "put", "patch", "delete"}
    assert set(paths["/v1/users"]) == {"get", "post"}
    assert "get" in paths["/v1/people"] and "get" in paths["/v1/users:watch"]
    # {name=orgs/*}: the literal segment stays in the path, the wildcard is the parameter.
    org = paths["/v1/orgs/{name}/users"]["get"]
    assert [p["name"] for p in org["parameters"]][:1] == ["name"]
    get = paths["/v1/users/{id}"]["get"]
    assert get["summary"] == "Get one user by id."
    assert "not_found" in get["description"]
    assert get["parameters"][0] == {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "Sets the request field `id`.",
        "schema": {"type": "integer"},
    }
    assert {"400", "404", "409", "500", "503"} <= set(get["responses"])
    listing = {p["name"]: p for p in paths["/v1/users"]["get"]["parameters"]}
    assert listing["tag"]["schema"] == {"type": "array", "items": {"type": "string"}, "default": []}
    assert listing["tag"]["explode"] is True
    assert listing["page.size"]["schema"]["maximum"] == 100
    put = paths["/v1/users/{id}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewUser"
    }
    watch = paths["/v1/users:watch"]["get"]["responses"]["200"]["content"]
    assert set(watch) == {"application/x-ndjson", "text/event-stream"}
    # The Connect endpoints of every unary method (and GET for idempotent ones).
    connect = paths["/demo.users.v1.Users/GetUser"]
    assert set(connect) == {"post", "get"}
    assert set(paths["/demo.users.v1.Users/CreateUser"]) == {"post"}
    assert "/demo.users.v1.Users/WatchUsers" not in paths  # streams are enveloped
    assert not any(p.startswith("/grpc.") for p in paths)


def test_the_cli_writes_the_served_document(tmp_path: Path, document: dict[str, object]) -> None:
    out = tmp_path / "openapi.json"
    done = subprocess.run(
        [sys.executable, "-m", "h2mesh", "openapi", "examples.users:Users", "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == document
    bad = subprocess.run(
        [sys.executable, "-m", "h2mesh", "openapi", "examples.users:Nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2 and "has no attribute 'Nope'" in bad.stderr


def test_openapi_false_turns_the_document_off(run: object, loop_kind: str) -> None:
    live = LiveServer([Users()], loop_kind, openapi=False, docs=False)
    try:
        live.start()
        r = httpx.get(live.url + "/openapi.json")
        assert r.status_code != 200 and r.json()["code"] == "unimplemented"
        assert httpx.get(live.url + "/v1/users/1").status_code == 200
    finally:
        live.close()


def test_schemathesis_finds_nothing_with_all_checks(
    users_server: LiveServer, tmp_path: Path
) -> None:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail(f"schemathesis is not installed: {SETUP_HINT}", pytrace=False)
    done = subprocess.run(
        [
            exe,
            "run",
            users_server.url + "/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "3",
            "--seed",
            "7",
            "--request-timeout",
            "5",
            "--generation-database",
            "none",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    tail = done.stdout[-6000:]
    assert done.returncode == 0, tail
    assert " passed" in tail and "failures" not in tail.split("SUMMARY")[-1], tail

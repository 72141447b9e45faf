"""``/docs`` in a real browser: headless Chromium (Debian's ``chromium``, driven by the
``playwright-core`` npm package) renders Swagger UI from the server's own assets, lists
every route, and a "Try it out" call succeeds."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.users import Users

from ..conftest import LiveServer, require_binary
from .conftest import NODE_DIR, NPM_HINT

SCRIPT = NODE_DIR / "docs_page.js"


@pytest.fixture(scope="module")
def docs_server() -> Iterator[LiveServer]:
    live = LiveServer([Users()], "uvloop")
    try:
        live.start()
        yield live
    finally:
        live.close()


def test_docs_page_lists_the_routes_and_try_it_out_works(
    node: str, docs_server: LiveServer, tmp_path: Path
) -> None:
    chromium = require_binary("chromium")
    if not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"node module playwright-core missing: {NPM_HINT}", pytrace=False)
    shot = tmp_path / "docs.png"
    done = subprocess.run(
        [
            node,
            str(SCRIPT),
            "--url",
            docs_server.url,
            "--chromium",
            chromium,
            "--profile",
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            "--op",
            "GET /v1/users/{id}",
            "--param",
            "id=2",
            "--screenshot",
            str(shot),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ops = set(result["operations"])
    for route in (
        "GET /v1/users/{id}",
        "PUT /v1/users/{id}",
        "PATCH /v1/users/{id}",
        "DELETE /v1/users/{id}",
        "GET /v1/users",
        "POST /v1/users",
        "GET /v1/orgs/{name}/users",
        "GET /v1/users:watch",
        "POST /demo.users.v1.Users/GetUser",
    ):
        assert route in ops, (route, sorted(ops))
    assert result["status"] == "200"
    assert json.loads(result["body"])["name"] == "Grace"
    assert result["errors"] == []
    assert result["external"] == []  # every asset came from the server itself: no CDN
    assert shot.stat().st_size > 10_000

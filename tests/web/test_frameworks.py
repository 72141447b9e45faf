"""Real applications of the Python web frameworks, hosted by h2mesh and called by real
clients over real sockets: httpx over HTTP/2 and HTTP/1.1, and curl over both.

One server per framework (module-scoped fixture); every test runs with every client.
Each framework's application (tests/web/apps) answers the same routes.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.web.apps import EVENTS, SECRET, stream_body
from tests.web.conftest import Fetcher, fetchers, start_hosting


@dataclass(frozen=True)
class Framework:
    name: str
    target: str  # module:attribute under tests.web.apps
    lifespan: bool  # the application has lifespan handlers that record EVENTS
    restartable: bool = True  # can start a second time in one process (Sanic cannot)

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(f"tests.web.apps.{module}"), attr)


FRAMEWORKS = [
    Framework("fastapi", "fastapi_app:app", True),
    Framework("starlette", "starlette_app:app", True),
    Framework("flask", "flask_app:app", False),
    Framework("django-asgi", "django_app:asgi_app", False),
    Framework("django-wsgi", "django_app:wsgi_app", False),
    Framework("quart", "quart_app:app", True),
    Framework("litestar", "litestar_app:app", True),
    Framework("falcon-asgi", "falcon_app:asgi_app", True),
    Framework("falcon-wsgi", "falcon_app:wsgi_app", False),
    Framework("sanic", "sanic_app:app", True, restartable=False),
]


@dataclass
class Hosted:
    framework: Framework
    live: LiveServer
    clients: dict[str, Fetcher]


@pytest.fixture(scope="module", params=FRAMEWORKS, ids=lambda f: f.name)
def hosted(request: pytest.FixtureRequest) -> Iterator[Hosted]:
    framework: Framework = request.param
    EVENTS.clear()
    live = start_hosting(framework.load())
    try:
        for clients in fetchers(live.url):
            yield Hosted(framework, live, clients)
    finally:
        live.close()
    if framework.lifespan and not framework.restartable:
        # Checked here, as the test below cannot start such an app a second time.
        assert EVENTS[-1] == f"{framework.name}:shutdown", EVENTS


@pytest.fixture
def fetch(hosted: Hosted, client_kind: str) -> Fetcher:
    return hosted.clients[client_kind]


def _version(fetch: Fetcher) -> str:
    return "2" if fetch.kind.endswith("h2") else "1.1"


def test_get_with_path_and_query(fetch: Fetcher) -> None:
    reply = fetch("GET", "/items/caf%C3%A9%20au%20lait?q=a%2Fb%26c&z=1")
    assert reply.status == 200, reply.body
    assert reply.json() == {
        "path": "/items/café au lait",
        "name": "café au lait",
        "q": "a/b&c",
        "http": _version(fetch),
    }
    assert reply.get_list("server") == ["h2mesh"]
    assert len(reply.get_list("date")) == 1


def _upload_parts(total: int, part: int) -> Iterator[bytes]:
    sent = 0
    i = 0
    while sent < total:
        block = bytes([i % 251]) * min(part, total - sent)
        sent += len(block)
        i += 1
        yield block


def test_streamed_upload_of_8_mib_is_hashed_by_the_app(fetch: Fetcher) -> None:
    total = 8 * 1024 * 1024
    expected = hashlib.sha256(b"".join(_upload_parts(total, 65536))).hexdigest()
    # Streamed from a generator with its length declared (Django's WSGI handler reads
    # only CONTENT_LENGTH bytes, so a chunked body would look empty to it).
    headers = {"content-length": str(total), "content-type": "application/octet-stream"}
    reply = fetch("POST", "/upload", _upload_parts(total, 65536), headers)
    assert reply.status == 200, reply.body
    assert reply.json() == {"sha256": expected, "size": total}


def test_streamed_response_of_1000_chunks(fetch: Fetcher) -> None:
    reply = fetch("GET", "/stream")
    assert reply.status == 200
    assert reply.body == stream_body()
    if fetch.kind.endswith("h1"):
        # Sent as it was produced, not buffered into one sized body.
        assert reply.get_list("transfer-encoding") == ["chunked"]


def test_two_set_cookie_fields_stay_apart(fetch: Fetcher) -> None:
    reply = fetch("GET", "/cookies")
    assert reply.status == 200
    cookies = sorted(c.split(";")[0] for c in reply.get_list("set-cookie"))
    assert cookies == ["a=1", "b=2"]


def test_app_exception_is_a_500_without_detail(fetch: Fetcher, hosted: Hosted) -> None:
    reply = fetch("GET", "/boom")
    assert reply.status == 500
    assert SECRET.encode() not in reply.body
    assert b"Traceback" not in reply.body
    # The server (and, over httpx, the same connection) goes on serving.
    assert fetch("GET", "/items/x").status == 200


def test_unknown_paths_get_the_apps_404(fetch: Fetcher) -> None:
    reply = fetch("GET", "/no/such/page")
    assert reply.status == 404
    # Not h2mesh's Connect "unimplemented" error.
    assert b"unimplemented" not in reply.body


def _accepted(live: LiveServer) -> int:
    """How many connections the server has accepted since it started."""

    async def count() -> int:
        assert live.server is not None
        return live.server.connections_accepted

    return live.call(count())


def test_200_concurrent_requests_over_one_http2_connection(hosted: Hosted) -> None:
    before = _accepted(hosted.live)

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=hosted.live.url, http2=True, http1=False, limits=limits, timeout=30
        ) as client:
            replies = await asyncio.gather(
                *(client.get(f"/items/n{i}", params={"q": str(i)}) for i in range(200))
            )
            # All 200 came over one connection: the server accepted exactly one. (Its
            # open connections also count the module's clients', which may be closing.)
            assert _accepted(hosted.live) - before == 1
            return replies

    replies = asyncio.run(main())
    assert [r.json()["q"] for r in replies] == [str(i) for i in range(200)]
    assert {r.http_version for r in replies} == {"HTTP/2"}


def test_lifespan_startup_and_shutdown_ran(hosted: Hosted) -> None:
    framework = hosted.framework
    if not framework.lifespan:
        # No lifespan handlers (WSGI has no lifespan; Django's ASGI handler refuses the
        # scope): the server still starts and serves.
        assert hosted.clients["httpx-h2"]("GET", "/items/x").status == 200
        return
    reply = hosted.clients["httpx-h2"]("GET", "/lifespan")
    assert reply.json() == {"started": True}
    if not framework.restartable:
        assert f"{framework.name}:startup" in EVENTS  # shutdown: checked at teardown
        return
    EVENTS.clear()
    live = start_hosting(framework.load())
    try:
        assert [f"{framework.name}:startup"] == EVENTS
    finally:
        live.close()
    assert [f"{framework.name}:startup", f"{framework.name}:shutdown"] == EVENTS


@pytest.mark.parametrize("h2", [True, False], ids=["h2", "h1"])
@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_django_file_response(big_file: tuple[Path, str], interface: str, h2: bool) -> None:
    """``FileResponse``: through ``wsgi.file_wrapper`` under WSGI, a streamed response
    under ASGI (which Django 5.2 reads whole into a list first, with a warning, as a
    synchronous iterator); either way the whole file with its ``content-length``, then
    the file closed."""
    from tests.web.apps import DOWNLOAD, OPENED, django_app

    path, digest = big_file
    DOWNLOAD["path"] = path
    OPENED.clear()
    live = start_hosting(getattr(django_app, f"{interface}_app"))
    try:
        with httpx.Client(base_url=live.url, http2=h2, http1=not h2, timeout=30) as client:
            sha = hashlib.sha256()
            size = 0
            with client.stream("GET", "/file") as reply:
                assert reply.status_code == 200
                assert reply.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
                assert reply.headers["content-type"] == "application/octet-stream"
                assert reply.headers["content-length"] == str(path.stat().st_size)
                assert "transfer-encoding" not in reply.headers
                for part in reply.iter_raw():
                    sha.update(part)
                    size += len(part)
            assert (size, sha.hexdigest()) == (path.stat().st_size, digest)
            assert len(OPENED) == 1
            assert OPENED[0].closed_event.wait(5.0), "the file was not closed"
            assert OPENED[0].read_bytes == size
            if interface == "wsgi":
                # Read by h2mesh's wsgi.file_wrapper (blocks of 256 KiB or more), not
                # by iterating Django's response (4 KiB blocks).
                assert OPENED[0].largest_read >= 256 * 1024
            # The connection goes on serving.
            assert client.get("/items/x").status_code == 200
    finally:
        live.close()

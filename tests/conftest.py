"""Shared fixtures: event-loop kinds, a live server in a background thread, peer binaries.

Every async test runs once per loop kind (uvloop and plain asyncio) through the ``run``
fixture::

    def test_x(run, server_url):
        async def main() -> None: ...
        run(main())

``live_server`` serves the services of the ``server_services`` fixture (Greeter by
default; a test module overrides that fixture to serve its own) on 127.0.0.1, on a
port picked at run time, from its own thread and event loop of the same kind. Blocking
peers (curl, nghttp) and async clients in the test's loop can both talk to it.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import settings

from h2mesh.testing import ServerThread as LiveServer
from h2mesh.testing import loop_factory

# Property tests check what comes out, not how fast: a per-example deadline would only
# measure how busy the machine is.
settings.register_profile("h2mesh", deadline=None)
settings.load_profile("h2mesh")

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

if TYPE_CHECKING:
    from h2mesh import Service

T = TypeVar("T")

LOOP_KINDS = ("uvloop", "asyncio")
SETUP_HINT = "run scripts/setup.sh to install the test peers"


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """The event loop kind the test (and its server) runs on."""
    return str(request.param)


@pytest.fixture
def run(
    loop_kind: str, request: pytest.FixtureRequest
) -> Iterator[Callable[[Coroutine[Any, Any, T]], T]]:
    """``run(coro)``: run a coroutine on the test's loop (one loop for the whole test).

    A test module's ``RUN_TIME_LIMIT`` (seconds) bounds each ``run``. Failures are raised
    again outside the loop, so that their tracebacks end in the test's own code (pytest
    cannot render uvloop's compiled frames).
    """
    limit: float | None = getattr(request.module, "RUN_TIME_LIMIT", None)

    async def guarded(coro: Coroutine[Any, Any, T]) -> tuple[T | None, BaseException | None]:
        try:
            return (await asyncio.wait_for(coro, limit) if limit else await coro), None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # assertion failures and pytest outcomes too
            return None, exc

    with asyncio.Runner(loop_factory=loop_factory(loop_kind)) as runner:

        def run_(coro: Coroutine[Any, Any, T]) -> T:
            result, error = runner.run(guarded(coro))
            if error is not None:
                raise error
            return result  # type: ignore[return-value]

        yield run_


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


# -- peers ------------------------------------------------------------------------------
def require_binary(name: str) -> str:
    """The path of a peer program; fails the test (never skips) if it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {SETUP_HINT}", pytrace=False)
    return path


def googleapis_root() -> Path:
    """Where googleapis-common-protos keeps google/api/annotations.proto (for protoc's -I:
    the .proto of a service with routes imports it)."""
    from google.api import annotations_pb2

    root = Path(annotations_pb2.__file__).parents[2]
    if not (root / "google" / "api" / "annotations.proto").is_file():
        pytest.fail(f"google/api/annotations.proto not found: {SETUP_HINT}", pytrace=False)
    return root


@pytest.fixture(scope="session")
def curl() -> str:
    return require_binary("curl")


@pytest.fixture(scope="session")
def nghttp() -> str:
    """nghttp, the HTTP/2 client of Debian's nghttp2-client."""
    return require_binary("nghttp")


# -- a live server ------------------------------------------------------------------------
@pytest.fixture
def server_services() -> list[Service]:
    """The services ``live_server`` serves; override in a test module to serve others."""
    from examples.greeter import Greeter

    return [Greeter()]


@pytest.fixture
def live_server(loop_kind: str, server_services: list[Service]) -> Iterator[LiveServer]:
    live = LiveServer(server_services, loop_kind)
    try:
        live.start()
        yield live
    finally:
        live.close()


@pytest.fixture
def server_url(live_server: LiveServer) -> str:
    """``http://127.0.0.1:PORT`` of a running server."""
    return live_server.url

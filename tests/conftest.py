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
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

if TYPE_CHECKING:
    from h2mesh import Server, Service

T = TypeVar("T")

LOOP_KINDS = ("uvloop", "asyncio")
SETUP_HINT = "run scripts/setup.sh to install the test peers"


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The constructor of a new event loop of ``kind`` ("uvloop" or "asyncio")."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if kind == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"unknown loop kind {kind!r}")


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """The event loop kind the test (and its server) runs on."""
    return str(request.param)


@pytest.fixture
def run(loop_kind: str) -> Iterator[Callable[[Coroutine[Any, Any, T]], T]]:
    """``run(coro)``: run a coroutine on the test's loop (one loop for the whole test)."""
    with asyncio.Runner(loop_factory=loop_factory(loop_kind)) as runner:
        yield runner.run


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
class LiveServer:
    """A ``Server`` running on its own event loop in a daemon thread."""

    def __init__(
        self,
        services: Sequence[Service],
        loop_kind: str,
        setup: Callable[[Server], None] | None = None,
        **server_options: Any,
    ) -> None:
        self.services = list(services)
        self.setup = setup  # called with each new Server before it starts
        self.loop_kind = loop_kind
        self.server_options = server_options
        self.loop = loop_factory(loop_kind)()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name=f"h2mesh-server-{loop_kind}", daemon=True
        )
        self._thread.start()
        self.server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the server's loop and wait for its result (from any thread)."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def start(self, port: int = 0) -> None:
        # Imported here so that unit tests collect even while the server is broken.
        from h2mesh import Server

        async def start() -> Server:
            server = Server(self.services, **self.server_options)
            if self.setup is not None:
                self.setup(server)
            await server.start("127.0.0.1", port)
            return server

        self.server = self.call(start())
        self.port = self.server.port

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving; the loop keeps running so that ``start`` may follow."""
        server, self.server = self.server, None
        if server is not None:
            self.call(server.stop(grace), timeout=grace + 10.0)

    def restart(self) -> None:
        """Stop, then serve again on the same port."""
        port = self.port
        self.stop()
        self.start(port)

    def connection_count(self) -> int:
        """How many client connections the server holds open right now."""

        async def count() -> int:
            assert self.server is not None
            return len(self.server._connections)

        return self.call(count())

    def close(self) -> None:
        """Stop the server, cancel what is left on its loop, and end the thread."""
        try:
            self.stop()
        finally:

            async def cancel_rest() -> None:
                me = asyncio.current_task()
                rest = [t for t in asyncio.all_tasks() if t is not me]
                for task in rest:
                    task.cancel()
                await asyncio.gather(*rest, return_exceptions=True)

            try:
                self.call(cancel_rest())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(10.0)
                if not self._thread.is_alive():
                    self.loop.close()


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

"""``ServerThread``: a real server on a free port, run by its own loop in a thread.

Tests that drive a server with blocking peers (curl, grpcio, httpx) and with async
clients on the test's own loop need the server to run elsewhere: here it has an event
loop of its own in a daemon thread, and listens on ``127.0.0.1`` on a port picked when
it starts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from .._loop import new_event_loop
from ..server import Server
from ..service import Service

__all__ = ["ServerThread", "loop_factory"]

T = TypeVar("T")


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The constructor of a new event loop of ``kind``: ``"uvloop"``, ``"asyncio"`` or
    ``"auto"`` (uvloop where it is installed)."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if kind == "asyncio":
        return asyncio.new_event_loop
    if kind == "auto":
        return new_event_loop
    raise ValueError(f"unknown loop kind {kind!r}")


class ServerThread:
    """A :class:`~h2mesh.Server` of ``services`` running on its own loop in a thread.

    ``setup(server)`` is called with each new Server before it starts (to add a hosted
    app, interceptors...); other keyword arguments go to ``Server``. ``start()`` serves on
    ``url``; ``call(coro)`` runs a coroutine on the server's loop from any thread;
    ``close()`` stops everything. Usable as a context manager.
    """

    def __init__(
        self,
        services: Sequence[Service],
        loop_kind: str = "auto",
        setup: Callable[[Server], None] | None = None,
        **server_options: Any,
    ) -> None:
        self.services = list(services)
        self.setup = setup
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
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the server's loop and wait for its result (from any thread)."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def start(self, port: int = 0) -> None:
        """Serve on ``port`` (0: a free one, then in ``port``)."""

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

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

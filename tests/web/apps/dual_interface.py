"""An application that is ASGI and WSGI at once, as ``--interface`` picks: its
``__call__`` is a plain method, so auto-detection takes it for WSGI; called with ASGI's
three arguments it returns the coroutine that answers.

Every path answers ``200`` with ``asgi PATH`` or ``wsgi PATH``: which way it was called.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any


class DualApp:
    def __call__(self, *args: Any) -> Iterable[bytes] | Coroutine[Any, Any, None]:
        if len(args) == 3:
            return self._asgi(*args)
        environ, start_response = args
        return self._wsgi(environ, start_response)

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = f"asgi {scope['path']}".encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = f"wsgi {environ['PATH_INFO']}".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]


app = DualApp()

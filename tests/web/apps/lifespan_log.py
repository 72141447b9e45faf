"""An ASGI application that writes what its lifespan and its requests do, one line each,
to the file named by ``$H2MESH_TEST_EVENTS``.

Startup makes a token and keeps it in the lifespan state; ``GET /token`` answers it from
the request's ``scope["state"]``, and shutdown writes it again. Every other path is the
application's own 404, ``no page here``.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

NOT_FOUND = b"no page here"


def _record(line: str) -> None:
    with open(os.environ["H2MESH_TEST_EVENTS"], "a", encoding="utf-8") as events:
        events.write(line + "\n")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        token = secrets.token_hex(8)
        scope["state"]["token"] = token
        _record(f"startup {token}")
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        _record(f"shutdown {token}")
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/token":
        token = scope["state"]["token"]
        _record(f"request {token}")
        status, body = 200, token.encode()
    else:
        status, body = 404, NOT_FOUND
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

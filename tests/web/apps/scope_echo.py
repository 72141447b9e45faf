"""An ASGI application that answers each request with what its scope says, as JSON:
``root_path``, ``path`` and whether the lifespan startup ran (``started``)."""

from __future__ import annotations

import json
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        scope["state"]["started"] = True
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    state = scope.get("state") or {}
    body = json.dumps(
        {"root_path": scope["root_path"], "path": scope["path"], "started": "started" in state}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})

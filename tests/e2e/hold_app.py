"""An ASGI application that takes requests and never reads their bodies (for the attack
tests: what the server holds of a body nobody reads is bounded by the windows)."""

from __future__ import annotations

import asyncio
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await asyncio.Event().wait()  # until the server gives up on the request

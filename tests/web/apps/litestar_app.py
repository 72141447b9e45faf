"""The common test application, written for Litestar."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from . import CHUNKS, EVENTS, SECRET, chunk


@get("/items/{name:str}")
async def item(
    name: FromPath[str], request: Request[Any, Any, Any], q: FromQuery[str] = ""
) -> dict[str, Any]:
    return {"path": request.url.path, "name": name, "q": q, "http": request.scope["http_version"]}


@post("/upload", status_code=200)
async def upload(request: Request[Any, Any, Any]) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    async for part in request.stream():
        digest.update(part)
        size += len(part)
    return {"sha256": digest.hexdigest(), "size": size}


@get("/stream")
async def stream() -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(CHUNKS):
            yield chunk(i)

    return Stream(chunks(), media_type="text/plain")


@get("/cookies")
async def cookies() -> Response[dict[str, str]]:
    return Response({"ok": "yes"}, cookies=[Cookie(key="a", value="1"), Cookie(key="b", value="2")])


@get("/boom")
async def boom() -> None:
    raise RuntimeError(SECRET)


@get("/lifespan")
async def started(state: State) -> dict[str, Any]:
    return {"started": state.get("started", False)}


def _startup(app: Litestar) -> None:
    EVENTS.append("litestar:startup")
    app.state.started = True


def _shutdown(app: Litestar) -> None:
    EVENTS.append("litestar:shutdown")


app = Litestar(
    route_handlers=[item, upload, stream, cookies, boom, started],
    on_startup=[_startup],
    on_shutdown=[_shutdown],
    request_max_body_size=16 * 1024 * 1024,
)

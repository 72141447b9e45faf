"""The common test application, written for Starlette."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from . import CHUNKS, EVENTS, SECRET, chunk


async def item(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "path": request.url.path,
            "name": request.path_params["name"],
            "q": request.query_params.get("q", ""),
            "http": request.scope["http_version"],
        }
    )


async def upload(request: Request) -> JSONResponse:
    digest = hashlib.sha256()
    size = 0
    async for part in request.stream():
        digest.update(part)
        size += len(part)
    return JSONResponse({"sha256": digest.hexdigest(), "size": size})


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(CHUNKS):
            yield chunk(i)

    return StreamingResponse(chunks(), media_type="text/plain")


async def cookies(request: Request) -> JSONResponse:
    response = JSONResponse({"ok": "yes"})
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


async def boom(request: Request) -> JSONResponse:
    raise RuntimeError(SECRET)


async def started(request: Request) -> JSONResponse:
    return JSONResponse({"started": request.state.started})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
    EVENTS.append("starlette:startup")
    yield {"started": True}
    EVENTS.append("starlette:shutdown")


app = Starlette(
    routes=[
        Route("/items/{name}", item),
        Route("/upload", upload, methods=["POST"]),
        Route("/stream", stream),
        Route("/cookies", cookies),
        Route("/boom", boom),
        Route("/lifespan", started),
    ],
    lifespan=lifespan,
)

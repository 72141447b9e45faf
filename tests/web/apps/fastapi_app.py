"""The common test application, written for FastAPI."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from . import CHUNKS, EVENTS, SECRET, chunk


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
    EVENTS.append("fastapi:startup")
    yield {"started": True}
    EVENTS.append("fastapi:shutdown")


app = FastAPI(lifespan=lifespan)


@app.get("/items/{name}")
async def item(name: str, request: Request, q: str = "") -> dict[str, object]:
    return {"path": request.url.path, "name": name, "q": q, "http": request.scope["http_version"]}


@app.post("/upload")
async def upload(request: Request) -> dict[str, object]:
    digest = hashlib.sha256()
    size = 0
    async for part in request.stream():
        digest.update(part)
        size += len(part)
    return {"sha256": digest.hexdigest(), "size": size}


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(CHUNKS):
            yield chunk(i)

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/cookies")
async def cookies(response: Response) -> dict[str, str]:
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return {"ok": "yes"}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError(SECRET)


@app.get("/lifespan")
async def started(request: Request) -> dict[str, object]:
    return {"started": request.state.started}

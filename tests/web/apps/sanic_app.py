"""The common test application, written for Sanic (run in its ASGI mode)."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import unquote

from sanic import Request, Sanic
from sanic.response import HTTPResponse, json

from . import CHUNKS, EVENTS, SECRET, chunk

app = Sanic("h2mesh_test_app")
app.config.REQUEST_MAX_SIZE = 16 * 1024 * 1024
app.config.OAS = False
_state: dict[str, bool] = {}


@app.before_server_start
async def startup(app: Sanic, loop: Any = None) -> None:
    EVENTS.append("sanic:startup")
    _state["started"] = True


@app.after_server_stop
async def shutdown(app: Sanic, loop: Any = None) -> None:
    EVENTS.append("sanic:shutdown")


@app.get("/items/<name:str>")
async def item(request: Request, name: str) -> HTTPResponse:
    return json(
        {
            # Sanic hands over the path still percent-encoded (as under its own server).
            "path": unquote(request.path),
            "name": unquote(name),
            "q": request.args.get("q", ""),
            "http": request.scope["http_version"],
        }
    )


@app.post("/upload", stream=True)
async def upload(request: Request) -> HTTPResponse:
    digest = hashlib.sha256()
    size = 0
    assert request.stream is not None
    async for part in request.stream:
        digest.update(part)
        size += len(part)
    return json({"sha256": digest.hexdigest(), "size": size})


@app.get("/stream")
async def stream(request: Request) -> None:
    response = await request.respond(content_type="text/plain")
    for i in range(CHUNKS):
        await response.send(chunk(i))
    await response.eof()


@app.get("/cookies")
async def cookies(request: Request) -> HTTPResponse:
    response = json({"ok": "yes"})
    response.add_cookie("a", "1", secure=False)
    response.add_cookie("b", "2", secure=False)
    return response


@app.get("/boom")
async def boom(request: Request) -> HTTPResponse:
    raise RuntimeError(SECRET)


@app.get("/lifespan")
async def started(request: Request) -> HTTPResponse:
    return json({"started": _state.get("started", False)})

"""The common test application, written for Quart."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from quart import Quart, Response, jsonify, request

from . import CHUNKS, EVENTS, SECRET, chunk

app = Quart(__name__)
_state: dict[str, bool] = {}


@app.before_serving
async def startup() -> None:
    EVENTS.append("quart:startup")
    _state["started"] = True


@app.after_serving
async def shutdown() -> None:
    EVENTS.append("quart:shutdown")


@app.get("/items/<name>")
async def item(name: str) -> Any:
    return jsonify(
        path=request.path, name=name, q=request.args.get("q", ""), http=request.http_version
    )


@app.post("/upload")
async def upload() -> Any:
    digest = hashlib.sha256()
    size = 0
    async for part in request.body:
        digest.update(part)
        size += len(part)
    return jsonify(sha256=digest.hexdigest(), size=size)


@app.get("/stream")
async def stream() -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(CHUNKS):
            yield chunk(i)

    return Response(chunks(), mimetype="text/plain")


@app.get("/cookies")
async def cookies() -> Any:
    response = jsonify(ok="yes")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


@app.get("/boom")
async def boom() -> Any:
    raise RuntimeError(SECRET)


@app.get("/lifespan")
async def started() -> Any:
    return jsonify(started=_state.get("started", False))

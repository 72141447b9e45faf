"""The common test application, written for Falcon: ``asgi_app`` and ``wsgi_app``."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import falcon
import falcon.asgi

from . import CHUNKS, EVENTS, SECRET, chunk

_state: dict[str, bool] = {}


class AsyncResources:
    async def on_get_item(self, req: Any, resp: Any, name: str) -> None:
        resp.media = {
            "path": req.path,
            "name": name,
            "q": req.get_param("q", default=""),
            "http": req.scope["http_version"],
        }

    async def on_post_upload(self, req: Any, resp: Any) -> None:
        digest = hashlib.sha256()
        size = 0
        async for part in req.stream:
            digest.update(part)
            size += len(part)
        resp.media = {"sha256": digest.hexdigest(), "size": size}

    async def on_get_stream(self, req: Any, resp: Any) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(CHUNKS):
                yield chunk(i)

        resp.content_type = "text/plain"
        resp.stream = chunks()

    async def on_get_cookies(self, req: Any, resp: Any) -> None:
        resp.set_cookie("a", "1", secure=False)
        resp.set_cookie("b", "2", secure=False)
        resp.media = {"ok": "yes"}

    async def on_get_boom(self, req: Any, resp: Any) -> None:
        raise RuntimeError(SECRET)

    async def on_get_lifespan(self, req: Any, resp: Any) -> None:
        resp.media = {"started": _state.get("started", False)}


class Lifespan:
    async def process_startup(self, scope: Any, event: Any) -> None:
        EVENTS.append("falcon-asgi:startup")
        _state["started"] = True

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        EVENTS.append("falcon-asgi:shutdown")


class SyncResources:
    def on_get_item(self, req: Any, resp: Any, name: str) -> None:
        resp.media = {
            "path": req.path,
            "name": name,
            "q": req.get_param("q", default=""),
            "http": req.env["SERVER_PROTOCOL"].removeprefix("HTTP/"),
        }

    def on_post_upload(self, req: Any, resp: Any) -> None:
        digest = hashlib.sha256()
        size = 0
        while part := req.bounded_stream.read(65536):
            digest.update(part)
            size += len(part)
        resp.media = {"sha256": digest.hexdigest(), "size": size}

    def on_get_stream(self, req: Any, resp: Any) -> None:
        def chunks() -> Iterator[bytes]:
            for i in range(CHUNKS):
                yield chunk(i)

        resp.content_type = "text/plain"
        resp.stream = chunks()

    def on_get_cookies(self, req: Any, resp: Any) -> None:
        resp.set_cookie("a", "1", secure=False)
        resp.set_cookie("b", "2", secure=False)
        resp.media = {"ok": "yes"}

    def on_get_boom(self, req: Any, resp: Any) -> None:
        raise RuntimeError(SECRET)


def _routes(app: Any, resources: Any) -> None:
    app.add_route("/items/{name}", resources, suffix="item")
    app.add_route("/upload", resources, suffix="upload")
    app.add_route("/stream", resources, suffix="stream")
    app.add_route("/cookies", resources, suffix="cookies")
    app.add_route("/boom", resources, suffix="boom")


asgi_app = falcon.asgi.App(middleware=[Lifespan()])
_routes(asgi_app, AsyncResources())
asgi_app.add_route("/lifespan", AsyncResources(), suffix="lifespan")
wsgi_app = falcon.App()
_routes(wsgi_app, SyncResources())

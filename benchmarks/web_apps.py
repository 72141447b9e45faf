"""The applications of the web-hosting benchmark (``benchmarks/web.py``), the same for
every server: a bare ASGI hello app, a FastAPI app and a Flask app."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from flask import Flask

_HELLO = b"Hello, world!"
_HEAD = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
_BODY = {"type": "http.response.body", "body": _HELLO}


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The bare ASGI app: 13 bytes of text, no framework."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(_HEAD)
    await send(_BODY)


fastapi_app = FastAPI()


@fastapi_app.get("/")
async def fastapi_hello() -> dict[str, str]:
    return {"message": "Hello, world!"}


flask_app = Flask(__name__)


@flask_app.get("/")
def flask_hello() -> str:
    return "Hello, world!"


def flask_a2wsgi() -> Any:
    """The Flask app behind a2wsgi's WSGI-to-ASGI adapter, to compare with h2mesh's own."""
    from a2wsgi import WSGIMiddleware

    return WSGIMiddleware(flask_app, workers=40)


try:
    a2wsgi_flask = flask_a2wsgi()
except ImportError:  # a2wsgi is in the bench extra only
    a2wsgi_flask = None

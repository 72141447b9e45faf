"""The common test application, written for Flask (WSGI)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request

from . import CHUNKS, SECRET, chunk

app = Flask(__name__)


@app.get("/items/<name>")
def item(name: str) -> Response:
    return jsonify(
        path=request.path,
        name=name,
        q=request.args.get("q", ""),
        http=request.environ["SERVER_PROTOCOL"].removeprefix("HTTP/"),
    )


@app.post("/upload")
def upload() -> Response:
    digest = hashlib.sha256()
    size = 0
    stream = request.stream
    while part := stream.read(65536):
        digest.update(part)
        size += len(part)
    return jsonify(sha256=digest.hexdigest(), size=size)


@app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[bytes]:
        for i in range(CHUNKS):
            yield chunk(i)

    return Response(chunks(), mimetype="text/plain")


@app.get("/cookies")
def cookies() -> Response:
    response = jsonify(ok="yes")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


@app.get("/boom")
def boom() -> Response:
    raise RuntimeError(SECRET)

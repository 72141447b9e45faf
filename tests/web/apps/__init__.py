"""One small application per web framework, all answering the same routes.

- ``GET /items/{name}?q=...``: the path, name and query back as JSON
- ``POST /upload``: the sha256 and size of the streamed request body
- ``GET /stream``: ``CHUNKS`` chunks, each sent on its own
- ``GET /cookies``: two ``set-cookie`` fields
- ``GET /boom``: raises an exception whose message must not reach the client
- ``GET /lifespan``: whether lifespan startup ran (ASGI applications)
"""

from __future__ import annotations

CHUNKS = 1000
SECRET = "secret-detail-4242"
#: What the applications' lifespan handlers did, in order.
EVENTS: list[str] = []


def chunk(i: int) -> bytes:
    """The ``i``-th chunk of ``/stream``."""
    return b"chunk %04d\n" % i


def stream_body() -> bytes:
    return b"".join(chunk(i) for i in range(CHUNKS))

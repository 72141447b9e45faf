"""One small application per web framework, all answering the same routes.

- ``GET /items/{name}?q=...``: the path, name and query back as JSON
- ``POST /upload``: the sha256 and size of the streamed request body
- ``GET /stream``: ``CHUNKS`` chunks, each sent on its own
- ``GET /cookies``: two ``set-cookie`` fields
- ``GET /boom``: raises an exception whose message must not reach the client
- ``GET /lifespan``: whether lifespan startup ran (ASGI applications)

Django's also serves ``GET /file``: ``DOWNLOAD`` through ``FileResponse``, each handle
it opened in ``OPENED``.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

CHUNKS = 1000
SECRET = "secret-detail-4242"
#: What the applications' lifespan handlers did, in order.
EVENTS: list[str] = []


def chunk(i: int) -> bytes:
    """The ``i``-th chunk of ``/stream``."""
    return b"chunk %04d\n" % i


def stream_body() -> bytes:
    return b"".join(chunk(i) for i in range(CHUNKS))


class TrackedFile(io.FileIO):
    """A file that counts the bytes read from it (and the largest read) and says when it
    is closed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "rb")
        self.read_bytes = self.largest_read = 0
        self.closed_event = threading.Event()

    def read(self, size: int = -1) -> bytes:
        data = super().read(size) or b""
        self.read_bytes += len(data)
        self.largest_read = max(self.largest_read, len(data))
        return data

    def close(self) -> None:
        super().close()
        self.closed_event.set()


class Opened(list[TrackedFile]):
    """The files an application opened; ``first`` is set when there is one."""

    def __init__(self) -> None:
        super().__init__()
        self.first = threading.Event()

    def append(self, handle: TrackedFile) -> None:
        super().append(handle)
        self.first.set()

    def clear(self) -> None:
        super().clear()
        self.first.clear()


#: The file Django's ``GET /file`` serves (``"path"``, set by the test) and what it opened.
DOWNLOAD: dict[str, Path] = {}
OPENED = Opened()

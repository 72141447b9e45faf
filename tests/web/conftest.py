"""Fixtures of the web-application hosting tests: a server hosting an application in its
own thread, and real HTTP clients (httpx over HTTP/2 and HTTP/1.1, curl) behind one
small ``fetch`` interface."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, require_binary

CLIENTS = ("httpx-h2", "httpx-h1", "curl-h2", "curl-h1")


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    http_version: str

    def get_list(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class Fetcher:
    """One kind of real client, kept for a test module (httpx clients keep connections)."""

    def __init__(self, kind: str, base_url: str) -> None:
        self.kind = kind
        self.base_url = base_url
        self._httpx: httpx.Client | None = None
        if kind.startswith("httpx"):
            h2 = kind.endswith("h2")
            self._httpx = httpx.Client(base_url=base_url, http2=h2, http1=not h2, timeout=30)
        else:
            self._curl = require_binary("curl")

    def __call__(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        if self._httpx is not None:
            r = self._httpx.request(method, path, content=body, headers=headers)
            return Reply(r.status_code, list(r.headers.multi_items()), r.content, r.http_version)
        return self._run_curl(method, path, body, headers or {})

    def _run_curl(
        self, method: str, path: str, body: bytes | Iterable[bytes] | None, headers: dict[str, str]
    ) -> Reply:
        with tempfile.TemporaryDirectory() as tmp:
            out, head = Path(tmp, "body"), Path(tmp, "head")
            args = [self._curl, "-sS", "-X", method, "-o", str(out), "-D", str(head)]
            args.append("--http2-prior-knowledge" if self.kind.endswith("h2") else "--http1.1")
            for name, value in headers.items():
                args += ["-H", f"{name}: {value}"]
            if body is not None:
                upload = Path(tmp, "upload")
                upload.write_bytes(body if isinstance(body, bytes) else b"".join(body))
                args += ["--data-binary", f"@{upload}"]
            subprocess.run([*args, self.base_url + path], check=True, timeout=60)
            # The last header block is the final response (after any 100 Continue).
            text = head.read_text("latin-1").replace("\r\n", "\n")
            blocks = [b for b in text.split("\n\n") if b.strip()]
            status_line, *lines = blocks[-1].strip().split("\n")
            version, status = status_line.split()[:2]
            fields = [tuple(x.strip() for x in line.split(":", 1)) for line in lines]
            return Reply(int(status), fields, out.read_bytes(), version)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._httpx is not None:
            self._httpx.close()


def start_hosting(app: Any, *, loop_kind: str = "uvloop", **options: Any) -> LiveServer:
    """A server hosting ``app`` (and the services in ``options``) on 127.0.0.1."""
    services = options.pop("services", [])
    live = LiveServer(services, loop_kind, app=app, **options)
    live.start()
    return live


@pytest.fixture(scope="module", params=CLIENTS)
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def fetchers(base_url: str) -> Iterator[dict[str, Fetcher]]:
    made = {kind: Fetcher(kind, base_url) for kind in CLIENTS}
    try:
        yield made
    finally:
        for fetcher in made.values():
            fetcher.close()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A file of several MiB (not a multiple of any block size) and its sha256."""
    path = tmp_path_factory.mktemp("files") / "blob.bin"
    data = os.urandom(6 * 1024 * 1024 + 12345)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()

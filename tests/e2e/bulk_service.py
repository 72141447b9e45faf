"""A service whose answers are as large as asked (for the send-buffer attack tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from h2mesh import Service, rpc


class BlobRequest(msgspec.Struct):
    size: int
    count: int = 1


class Blob(msgspec.Struct):
    data: str


class Bulk(Service, name="test.v1.Bulk"):
    @rpc
    async def download(self, req: BlobRequest) -> Blob:
        return Blob(data="x" * req.size)

    @rpc
    async def stream(self, req: BlobRequest) -> AsyncIterator[Blob]:
        blob = Blob(data="x" * req.size)
        for _ in range(req.count):
            yield blob

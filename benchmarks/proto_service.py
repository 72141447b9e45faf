"""The h2mesh benchmark service typed with the protoc-generated ``Msg`` of ``bench.proto``.

The same four methods as ``servers.Bench``, but requests and responses are instances of
the generated class, so h2mesh encodes them with its ``proto`` codec
(``SerializeToString``/``FromString``) and gRPC peers see ``application/grpc``. Importing
this module compiles ``bench.proto`` (``_proto.load()``): it needs grpcio-tools and
protobuf, so only the protobuf rows import it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from h2mesh import Service, rpc

from . import _proto

SERVICE = _proto.SERVICE

if TYPE_CHECKING:
    Msg = Any  # the generated class has no stubs
else:
    Msg = _proto.load().Msg  # what the annotations below resolve to at run time


class ProtoBench(Service, name=SERVICE):
    @rpc
    async def echo(self, req: Msg) -> Msg:
        return req

    @rpc
    async def stream(self, req: Msg) -> AsyncIterator[Msg]:
        reply = Msg(name=req.name)
        for _ in range(req.count):
            yield reply

    @rpc
    async def collect(self, reqs: AsyncIterator[Msg]) -> Msg:
        n = 0
        async for _ in reqs:
            n += 1
        return Msg(count=n)

    @rpc
    async def ping_pong(self, reqs: AsyncIterator[Msg]) -> AsyncIterator[Msg]:
        async for req in reqs:
            yield req

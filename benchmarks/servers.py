"""The benchmark servers: one echo service (Echo, Stream, Collect, PingPong) per system.

Run one with ``python -m benchmarks.servers SYSTEM PORT`` (h2mesh, h2mesh-proto, grpcio,
grpclib), or serve ``benchmarks.servers:connect_app`` with granian (FastAPI:
``benchmarks/fastapi_app.py``). ``h2mesh-proto`` serves ``proto_service.ProtoBench``.
Every server listens on 127.0.0.1 only and runs until SIGTERM.

Messages: ``Msg{name, data, count}``. Echo returns its request; Stream answers
``count`` copies of ``Msg{name}``; Collect answers ``Msg{count=<messages received>}``;
PingPong echoes each message as it arrives.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from h2mesh import Server, Service, rpc
from h2mesh import run as h2mesh_run

SERVICE = "bench.v1.Bench"
MAX_MESSAGE = 8 << 20


# -- h2mesh ---------------------------------------------------------------------------
class Msg(msgspec.Struct, omit_defaults=True):
    name: str = ""
    data: bytes = b""
    count: int = 0


class Bench(Service, name=SERVICE):
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


async def serve_h2mesh(port: int, service: Service | None = None) -> None:
    server = Server([service or Bench()], max_message_size=MAX_MESSAGE)
    await server.serve("127.0.0.1", port, grace=1.0)


async def serve_h2mesh_observed(port: int, metrics: bool, access_log: bool) -> None:
    """``Bench`` with call metrics (an admin listener on a free port) and/or the access
    log (to /dev/null): what observability costs."""
    import os

    from h2mesh.observability import AccessLog
    from h2mesh.observability._observer import observer_of

    server = Server([Bench()], max_message_size=MAX_MESSAGE)
    if access_log:
        observer = observer_of(server)
        observer.access = AccessLog(os.devnull)
        server.observer = observer
    admin = ("127.0.0.1", 0) if metrics else None
    await server.serve("127.0.0.1", port, grace=1.0, admin=admin)


async def serve_h2mesh_proto(port: int) -> None:
    """``Bench`` with the protoc-generated ``Msg``: the ``proto`` codec (gRPC+protobuf row)."""
    from .proto_service import ProtoBench

    await serve_h2mesh(port, ProtoBench())


# -- grpcio (grpc.aio) ----------------------------------------------------------------------
def _grpcio_handlers() -> Any:
    """grpcio's generic handler for the Bench service, aio behaviours."""
    import grpc

    from . import _proto

    pb = _proto.load()

    async def echo(req: Any, ctx: Any) -> Any:
        return req

    async def stream(req: Any, ctx: Any) -> AsyncIterator[Any]:
        reply = pb.Msg(name=req.name)
        for _ in range(req.count):
            yield reply

    async def collect(reqs: AsyncIterator[Any], ctx: Any) -> Any:
        n = 0
        async for _ in reqs:
            n += 1
        return pb.Msg(count=n)

    async def ping_pong(reqs: AsyncIterator[Any], ctx: Any) -> AsyncIterator[Any]:
        async for req in reqs:
            yield req

    codec = {
        "request_deserializer": pb.Msg.FromString,
        "response_serializer": pb.Msg.SerializeToString,
    }
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo, **codec),
        "Stream": grpc.unary_stream_rpc_method_handler(stream, **codec),
        "Collect": grpc.stream_unary_rpc_method_handler(collect, **codec),
        "PingPong": grpc.stream_stream_rpc_method_handler(ping_pong, **codec),
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


async def serve_grpcio(port: int) -> None:
    import grpc

    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
    )
    server.add_generic_rpc_handlers((_grpcio_handlers(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await _until_sigterm()
    await server.stop(1.0)


async def serve_h2mesh_grpcio(port: int) -> None:
    """The same grpcio handlers, unchanged, on an h2mesh Server."""
    server = Server([], max_message_size=MAX_MESSAGE)
    server.add_generic_rpc_handlers((_grpcio_handlers(),))
    await server.serve("127.0.0.1", port, grace=1.0)


# -- grpclib --------------------------------------------------------------------------------
async def serve_grpclib(port: int) -> None:
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server as GrpclibServer

    from . import _proto

    pb = _proto.load()

    class BenchHandler:
        async def echo(self, stream: Any) -> None:
            await stream.send_message(await stream.recv_message())

        async def stream(self, stream: Any) -> None:
            req = await stream.recv_message()
            reply = pb.Msg(name=req.name)
            for _ in range(req.count):
                await stream.send_message(reply)

        async def collect(self, stream: Any) -> None:
            n = 0
            async for _ in stream:
                n += 1
            await stream.send_message(pb.Msg(count=n))

        async def ping_pong(self, stream: Any) -> None:
            async for req in stream:
                await stream.send_message(req)

        def __mapping__(self) -> dict[str, Handler]:
            c = Cardinality
            return {
                f"/{SERVICE}/Echo": Handler(self.echo, c.UNARY_UNARY, pb.Msg, pb.Msg),
                f"/{SERVICE}/Stream": Handler(self.stream, c.UNARY_STREAM, pb.Msg, pb.Msg),
                f"/{SERVICE}/Collect": Handler(self.collect, c.STREAM_UNARY, pb.Msg, pb.Msg),
                f"/{SERVICE}/PingPong": Handler(self.ping_pong, c.STREAM_STREAM, pb.Msg, pb.Msg),
            }

    server = GrpclibServer([BenchHandler()])
    await server.start("127.0.0.1", port)
    await _until_sigterm()
    server.close()
    await server.wait_closed()


async def _until_sigterm() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# -- ASGI apps served by granian (built on first access) --------------------------------------
def _connect_app() -> Any:
    from connectrpc.method import IdempotencyLevel, MethodInfo
    from connectrpc.server import ConnectASGIApplication, Endpoint

    from . import _proto

    pb = _proto.load()

    def info(name: str) -> MethodInfo[Any, Any]:
        return MethodInfo(
            name=name,
            service_name=SERVICE,
            input=pb.Msg,
            output=pb.Msg,
            idempotency_level=IdempotencyLevel.UNKNOWN,
        )

    class Impl:
        async def echo(self, req: Any, ctx: Any) -> Any:
            return req

        async def stream(self, req: Any, ctx: Any) -> AsyncIterator[Any]:
            reply = pb.Msg(name=req.name)
            for _ in range(req.count):
                yield reply

        async def collect(self, reqs: AsyncIterator[Any], ctx: Any) -> Any:
            n = 0
            async for _ in reqs:
                n += 1
            return pb.Msg(count=n)

        async def ping_pong(self, reqs: AsyncIterator[Any], ctx: Any) -> AsyncIterator[Any]:
            async for req in reqs:
                yield req

    def endpoints(svc: Impl) -> dict[str, Any]:
        return {
            f"/{SERVICE}/Echo": Endpoint.unary(info("Echo"), svc.echo),
            f"/{SERVICE}/Stream": Endpoint.server_stream(info("Stream"), svc.stream),
            f"/{SERVICE}/Collect": Endpoint.client_stream(info("Collect"), svc.collect),
            f"/{SERVICE}/PingPong": Endpoint.bidi_stream(info("PingPong"), svc.ping_pong),
        }

    class BenchApp(ConnectASGIApplication[Impl]):
        @property
        def path(self) -> str:
            return f"/{SERVICE}"

    return BenchApp(
        service=Impl(), endpoints=endpoints, read_max_bytes=MAX_MESSAGE, compressions=()
    )


_APPS = {"connect_app": _connect_app}
_BUILT: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name in _APPS:
        if name not in _BUILT:
            _BUILT[name] = _APPS[name]()
        return _BUILT[name]
    raise AttributeError(name)


def main() -> None:
    system, port = sys.argv[1], int(sys.argv[2])
    if system == "h2mesh":
        h2mesh_run(serve_h2mesh(port))
    elif system in ("h2mesh-metrics", "h2mesh-access-log", "h2mesh-metrics-access-log"):
        metrics, access = "metrics" in system, "access-log" in system
        h2mesh_run(serve_h2mesh_observed(port, metrics, access))
    elif system == "h2mesh-proto":
        h2mesh_run(serve_h2mesh_proto(port))
    elif system == "h2mesh-grpcio":
        h2mesh_run(serve_h2mesh_grpcio(port))
    elif system == "grpcio":
        asyncio.run(serve_grpcio(port))  # grpc.aio brings its own poller; plain asyncio
    elif system == "grpclib":
        h2mesh_run(serve_grpclib(port))  # uvloop, as grpclib recommends
    else:
        raise SystemExit(f"unknown server {system!r}")


if __name__ == "__main__":
    main()

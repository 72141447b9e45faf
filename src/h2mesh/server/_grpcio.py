"""grpcio servicers, unchanged: grpcio's method handlers adapted into h2mesh services.

grpcio's generated ``add_XServicer_to_server(servicer, server)`` hands the server a
dictionary of ``grpc.RpcMethodHandler`` (through ``add_generic_rpc_handlers`` and, since
grpcio 1.62, ``add_registered_method_handlers``). Each becomes an h2mesh method whose
message types are the handler's protobuf classes, so it answers gRPC, gRPC-Web and
Connect (binary or protobuf JSON) like any proto-first h2mesh service.

Sync servicers run in the server's bounded thread pool; ``grpc.aio`` servicers (coroutines
and async generators) run on the event loop. Either way the servicer gets a context that
behaves like grpcio's ``ServicerContext`` for what servicers use (``_grpcio_context.py``).
grpcio is the user's dependency: nothing here imports it until a servicer is added.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any

from .._errors import Code, RpcError
from .._protobuf import is_message_type
from ..service import MethodDescriptor, MethodKind, Service
from ..transport import TransportError
from ._context import Context
from ._grpcio_context import AioServicerContext, ServicerContext, SyncServicerContext
from ._interceptors import Handler

__all__ = ["GrpcioService", "service_from_method_handlers", "services_from_generic_handlers"]

log = logging.getLogger("h2mesh.server")

_END = object()


class GrpcioService(Service):
    """The methods of one grpcio service (``pkg.Service``), as an h2mesh service.

    Built by ``Server.add_generic_rpc_handlers`` / ``add_registered_method_handlers``;
    each instance has a class of its own, named after the service.
    """

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self._handlers = handlers

    def __getattr__(self, name: str) -> Handler:
        # The server binds methods by their Python name, which here is the wire name.
        try:
            return self.__dict__["_handlers"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(m.path for m in self.__methods__.values())


# -- building services from handlers ------------------------------------------------------
def services_from_generic_handlers(
    handlers: Iterable[Any], runner: Callable[[], Executor]
) -> list[GrpcioService]:
    """The services behind ``grpc.method_handlers_generic_handler(...)`` objects."""
    out = []
    for handler in handlers:
        # grpc.method_handlers_generic_handler builds a DictionaryGenericHandler: its
        # service name and its handlers by full path ("/pkg.Service/Method").
        name = getattr(handler, "_name", None)
        by_path = getattr(handler, "_method_handlers", None)
        if not isinstance(name, str) or not isinstance(by_path, dict):
            raise TypeError(
                f"{type(handler).__name__}: h2mesh serves the generic handlers that "
                "grpc.method_handlers_generic_handler() builds (as generated code does), "
                "not arbitrary GenericRpcHandler classes"
            )
        prefix = f"/{name}/"
        methods = {
            path.removeprefix(prefix): h for path, h in by_path.items() if path.startswith(prefix)
        }
        out.append(service_from_method_handlers(name, methods, runner))
    return out


def service_from_method_handlers(
    service_name: str, method_handlers: Mapping[str, Any], runner: Callable[[], Executor]
) -> GrpcioService:
    """One service from ``{"Method": grpc.RpcMethodHandler}``."""
    methods: dict[str, MethodDescriptor] = {}
    handlers: dict[str, Handler] = {}
    for name, handler in method_handlers.items():
        desc = _descriptor(service_name, name, handler)
        methods[name] = desc
        handlers[name] = _adapt(desc, handler, runner)
    cls: type[GrpcioService] = type(
        service_name, (GrpcioService,), {"__module__": __name__}, name=service_name
    )
    cls.__methods__ = methods
    return cls(handlers)


def _kind(handler: Any) -> MethodKind:
    if handler.request_streaming:
        return MethodKind.BIDI_STREAM if handler.response_streaming else MethodKind.CLIENT_STREAM
    return MethodKind.SERVER_STREAM if handler.response_streaming else MethodKind.UNARY


def _descriptor(service_name: str, name: str, handler: Any) -> MethodDescriptor:
    where = f"/{service_name}/{name}"
    req_tp, resp_tp = _message_types(service_name, name, handler)
    if req_tp is None or resp_tp is None:
        raise TypeError(
            f"{where}: h2mesh serves grpcio handlers whose messages are generated protobuf "
            "classes (request_deserializer=X.FromString), and cannot find them for this one"
        )
    return MethodDescriptor(service_name, name, name, _kind(handler), req_tp, resp_tp)


def _message_types(service_name: str, name: str, handler: Any) -> tuple[Any, Any]:
    """The request and response classes: from the descriptor pool, or the deserializer."""
    from google.protobuf import descriptor_pool, message_factory

    owner = getattr(handler.request_deserializer, "__self__", None)
    req_tp = owner if is_message_type(owner) else None
    pool = req_tp.DESCRIPTOR.file.pool if req_tp is not None else descriptor_pool.Default()
    try:
        method = pool.FindServiceByName(service_name).methods_by_name[name]
    except KeyError:
        return req_tp, None
    return (
        req_tp or message_factory.GetMessageClass(method.input_type),
        message_factory.GetMessageClass(method.output_type),
    )


# -- running handlers -----------------------------------------------------------------------
def _behavior(handler: Any, kind: MethodKind) -> Any:
    return {
        MethodKind.UNARY: handler.unary_unary,
        MethodKind.SERVER_STREAM: handler.unary_stream,
        MethodKind.CLIENT_STREAM: handler.stream_unary,
        MethodKind.BIDI_STREAM: handler.stream_stream,
    }[kind]


def _adapt(method: MethodDescriptor, handler: Any, runner: Callable[[], Executor]) -> Handler:
    behavior = _behavior(handler, method.kind)
    if behavior is None:
        raise TypeError(f"{method.path}: the handler has no {method.kind.value} behavior")
    if inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior):
        return _aio_handler(method, behavior)
    return _sync_handler(method, behavior, runner)


class _Running:
    """Around a servicer: its exceptions as statuses, the end of the call, the status it
    asked for (abort, set_code) once it returns. (A class, not a generator context
    manager: this runs for every call, and contextlib's cost ~7,700 instructions more.)"""

    __slots__ = ("ctx", "gctx", "method")

    def __init__(self, method: MethodDescriptor, gctx: ServicerContext, ctx: Context) -> None:
        self.method = method
        self.gctx = gctx
        self.ctx = ctx

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        gctx = self.gctx
        if (
            exc is not None
            and isinstance(exc, Exception)
            # (the server answers these itself: a request over the size limit, a reset)
            and not isinstance(exc, (RpcError, TransportError))
        ):
            error = _failed(self.method, gctx)
            gctx._finish(cancelled=self.ctx.cancelled())
            raise error from None
        gctx._finish(cancelled=self.ctx.cancelled())
        if exc is None:
            failure = gctx._failure()
            if failure is not None:
                raise failure


def _failed(method: MethodDescriptor, gctx: ServicerContext) -> RpcError:
    """What the caller gets for a servicer's exception: the code the servicer set, else
    UNKNOWN; never the exception (which is logged)."""
    log.exception("servicer %s failed", method.path)
    return gctx._failure() or RpcError(Code.UNKNOWN, "exception calling application")


def _response(response: Any) -> Any:
    if response is None:
        raise RpcError(Code.INTERNAL, "the servicer returned no response")
    return response


def _sync_handler(
    method: MethodDescriptor, behavior: Callable[..., Any], runner: Callable[[], Executor]
) -> Handler:
    client_streams = method.kind.client_streams

    if method.kind.server_streams:

        async def stream_handler(request: Any, ctx: Context) -> AsyncIterator[Any]:
            loop = asyncio.get_running_loop()
            gctx = SyncServicerContext(ctx, loop)
            pool = runner()
            run = contextvars.copy_context().run
            requests = _BlockingRequests(request, loop) if client_streams else None
            responses: Iterator[Any] | None = None
            pending: asyncio.Future[Any] | None = None
            with _Running(method, gctx, ctx):
                try:
                    result = await loop.run_in_executor(
                        pool, run, behavior, requests or request, gctx
                    )
                    responses = iter(result)
                    while True:
                        pending = loop.run_in_executor(pool, run, _next_or_end, responses)
                        item = await pending
                        pending = None
                        if item is _END:
                            break
                        yield item
                finally:
                    if requests is not None:
                        requests.stop()
                    if responses is not None:
                        _close_later(pool, pending, responses)

        return stream_handler

    async def unary_handler(request: Any, ctx: Context) -> Any:
        loop = asyncio.get_running_loop()
        gctx = SyncServicerContext(ctx, loop)
        requests = _BlockingRequests(request, loop) if client_streams else None
        run = contextvars.copy_context().run
        with _Running(method, gctx, ctx):
            try:
                response = await loop.run_in_executor(
                    runner(), run, behavior, requests or request, gctx
                )
            finally:
                if requests is not None:
                    requests.stop()
        return _response(response)

    return unary_handler


def _next_or_end(responses: Iterator[Any]) -> Any:
    return next(responses, _END)


def _close_later(pool: Executor, pending: asyncio.Future[Any] | None, responses: Any) -> None:
    """Close a sync response generator in the pool, once no thread is running it."""
    close = getattr(responses, "close", None)
    if close is None:
        return

    def close_quietly() -> None:
        try:
            close()
        except Exception:
            log.debug("closing a response generator failed", exc_info=True)

    if pending is None:
        pool.submit(close_quietly)
    else:
        pending.add_done_callback(lambda _: pool.submit(close_quietly))


class _BlockingRequests:
    """The request stream as the blocking iterator a sync servicer reads in its thread."""

    def __init__(self, requests: AsyncIterator[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._requests = requests
        self._loop = loop
        self._pending: Any = None
        self._stopped = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._stopped:
            raise StopIteration
        fut = asyncio.run_coroutine_threadsafe(self._next(), self._loop)
        self._pending = fut
        try:
            item = fut.result()
        finally:
            self._pending = None
        if item is _END:
            raise StopIteration
        return item

    async def _next(self) -> Any:
        return await anext(self._requests, _END)

    def stop(self) -> None:
        """The call ended: a thread still waiting for a request gets none."""
        self._stopped = True
        pending = self._pending
        if pending is not None:
            pending.cancel()


def _aio_handler(method: MethodDescriptor, behavior: Callable[..., Any]) -> Handler:
    client_streams = method.kind.client_streams

    if method.kind.server_streams:
        generator = inspect.isasyncgenfunction(behavior)

        async def stream_handler(request: Any, ctx: Context) -> AsyncIterator[Any]:
            gctx = AioServicerContext(ctx, asyncio.get_running_loop())
            if client_streams:
                gctx._requests = request
            with _Running(method, gctx, ctx):
                responses = (
                    behavior(request, gctx) if generator else _written(behavior, request, gctx)
                )
                async for item in responses:
                    yield item

        return stream_handler

    async def unary_handler(request: Any, ctx: Context) -> Any:
        gctx = AioServicerContext(ctx, asyncio.get_running_loop())
        if client_streams:
            gctx._requests = request
        # (_Running inline, on purpose: this runs for every unary call, and the context
        # manager object with its two calls cost ~3,800 instructions per call)
        try:
            response = await behavior(request, gctx)
        except (RpcError, TransportError, asyncio.CancelledError):
            raise
        except Exception:
            raise _failed(method, gctx) from None
        finally:
            gctx._finish(cancelled=ctx.cancelled())
        failure = gctx._failure()
        if failure is not None:
            raise failure
        return _response(response)

    return unary_handler


async def _written(
    behavior: Callable[..., Any], request: Any, gctx: AioServicerContext
) -> AsyncIterator[Any]:
    """The messages a coroutine servicer sends with ``await context.write(...)``."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
    gctx._writes = queue

    async def run() -> None:
        try:
            await behavior(request, gctx)
        finally:
            me = asyncio.current_task()
            if me is None or not me.cancelling():  # cancelled: nobody reads any more
                await queue.put(_END)

    task = asyncio.ensure_future(run())
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            yield item
        await task  # re-raises what the servicer raised
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

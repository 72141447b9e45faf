"""grpcio servicers, unchanged: grpcio's method handlers adapted into h2mesh services.

grpcio's generated ``add_XServicer_to_server(servicer, server)`` hands the server a
dictionary of ``grpc.RpcMethodHandler`` (through ``add_generic_rpc_handlers`` and, since
grpcio 1.62, ``add_registered_method_handlers``). Each becomes an h2mesh method whose
message types are the handler's protobuf classes, so it answers gRPC, gRPC-Web and
Connect (binary or protobuf JSON) like any proto-first h2mesh service.

Sync servicers run in the server's bounded thread pool; ``grpc.aio`` servicers (coroutines
and async generators) run on the event loop. Either way the servicer gets a context that
behaves like grpcio's ``ServicerContext`` for what servicers use. grpcio is the user's
dependency: nothing here imports it until a servicer is added.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any, NamedTuple, NoReturn

from .._errors import Code, RpcError
from .._http2 import ErrorCode
from ..service import MethodDescriptor, MethodKind, Service
from ..transport import TransportError
from ._context import Context
from ._interceptors import Handler

__all__ = ["GrpcioService", "service_from_method_handlers", "services_from_generic_handlers"]

log = logging.getLogger("h2mesh.server")

_END = object()
# Guards every call's callback list (calls end on the loop; sync servicers add callbacks
# from pool threads). One lock for all: it is held for a few instructions, and a lock per
# call would cost each call more than it saves.
_CALLBACKS_LOCK = threading.Lock()
_CANCEL = ErrorCode.CANCEL


class Metadatum(NamedTuple):
    """One metadata entry, as grpcio's ``invocation_metadata()`` gives them."""

    key: str
    value: str | bytes


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

    from ..codec.proto import is_message_type

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


# -- the context a servicer sees ------------------------------------------------------------
def _status_code(code: Any) -> Code:
    """A ``grpc.StatusCode`` (or an int) as a ``Code``."""
    value = getattr(code, "value", code)
    return Code(value[0] if isinstance(value, tuple) else value)


def _grpc_status(code: Code) -> Any:
    import grpc

    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status
    return grpc.StatusCode.UNKNOWN


def _format_peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"ipv6:[{host}]:{port}" if ":" in str(host) else f"ipv4:{host}:{port}"
    return f"unix:{peer}" if isinstance(peer, str) else "unknown"


def _to_metadata(md: Any) -> dict[str, str]:
    # grpcio metadata: pairs of (key, str | bytes); h2mesh keeps binary values as latin-1.
    out: dict[str, str] = {}
    for key, value in md or ():
        out[key.lower()] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return out


class _ServicerContext:
    """What both grpcio context flavours share; wraps one call's h2mesh ``Context``."""

    def __init__(self, ctx: Context, loop: asyncio.AbstractEventLoop) -> None:
        self.h2mesh_context = ctx
        self._loop = loop
        self._code: Code | None = None
        self._details: str | None = None
        self._aborted: RpcError | None = None
        self._done = False
        self._cancelled = False
        self._callbacks: list[Callable[[], None]] | None = None

    # metadata
    def invocation_metadata(self) -> tuple[Metadatum, ...]:
        return tuple(
            Metadatum(k, v.encode("latin-1") if k.endswith("-bin") else v)
            for k, v in self.h2mesh_context.request_headers.items()
        )

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self.h2mesh_context.response_trailers.update(_to_metadata(trailing_metadata))

    def trailing_metadata(self) -> tuple[Metadatum, ...]:
        return tuple(
            Metadatum(k, v.encode("latin-1") if k.endswith("-bin") else v)
            for k, v in self.h2mesh_context.response_trailers.items()
        )

    def _initial_metadata(self, initial_metadata: Any) -> None:
        self.h2mesh_context.response_headers.update(_to_metadata(initial_metadata))

    # status
    def set_code(self, code: Any) -> None:
        self._code = _status_code(code)

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> Any:
        return None if self._code is None else _grpc_status(self._code)

    def details(self) -> str | None:
        return self._details

    def _abort_error(self, code: Any, details: str) -> RpcError:
        status = _status_code(code)
        if status == Code.OK:
            # grpcio refuses OK too: an abort must fail the call.
            status, details = Code.UNKNOWN, details or "aborted with OK"
        self._code, self._details = status, details
        self._aborted = RpcError(status, details)
        return self._aborted

    def abort_with_status(self, status: Any) -> NoReturn:
        self.set_trailing_metadata(status.trailing_metadata)
        raise self._abort_error(status.code, status.details)

    # the call
    def peer(self) -> str:
        return _format_peer(self.h2mesh_context.peer)

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def time_remaining(self) -> float | None:
        return self.h2mesh_context.time_remaining()

    def set_compression(self, compression: Any) -> None:
        """Accepted and ignored: the response compressor follows the request's."""

    def disable_next_message_compression(self) -> None:
        """Accepted and ignored."""

    def is_active(self) -> bool:
        return not self._done

    def cancel(self) -> None:
        """Cancel the call (RST_STREAM CANCEL to the client); safe from any thread."""
        self._loop.call_soon_threadsafe(self._cancel_on_loop)

    def _cancel_on_loop(self) -> None:
        if self._done:
            return
        self._cancelled = True
        stream = self.h2mesh_context._stream
        stream.reset(_CANCEL)
        if stream.task is not None:
            stream.task.cancel()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Call ``callback()`` when the call ends; False if it has already ended."""
        with _CALLBACKS_LOCK:  # a sync servicer adds them from its thread
            if self._done:
                return False
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(callback)
            return True

    def _finish(self, cancelled: bool) -> None:
        self._cancelled = self._cancelled or cancelled
        with _CALLBACKS_LOCK:
            self._done = True
            callbacks, self._callbacks = self._callbacks or (), None
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("callback of %s failed", self.h2mesh_context.method.path)

    def _failure(self) -> RpcError | None:
        """The error the servicer asked for (abort, or a non-OK set_code)."""
        if self._aborted is not None:
            return self._aborted
        if self._code is not None and self._code != Code.OK:
            return RpcError(self._code, self._details or "")
        return None


class SyncServicerContext(_ServicerContext):
    """grpcio's ``grpc.ServicerContext``, for servicers that run in the thread pool."""

    def abort(self, code: Any, details: str) -> NoReturn:
        raise self._abort_error(code, details)

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        self._initial_metadata(initial_metadata)


class AioServicerContext(_ServicerContext):
    """grpcio's ``grpc.aio.ServicerContext``, for servicers that run on the event loop."""

    def __init__(self, ctx: Context, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(ctx, loop)
        self._requests: AsyncIterator[Any] | None = None
        self._writes: asyncio.Queue[Any] | None = None

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        self.set_trailing_metadata(trailing_metadata)
        raise self._abort_error(code, details)

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        self._initial_metadata(initial_metadata)

    async def read(self) -> Any:
        """The next request message, or ``grpc.aio.EOF`` after the last."""
        if self._requests is None:
            raise RuntimeError("read() is for client-streaming and bidi methods")
        try:
            return await anext(self._requests)
        except StopAsyncIteration:
            import grpc

            return grpc.aio.EOF

    async def write(self, message: Any) -> None:
        """Send one response message (server-streaming and bidi methods)."""
        if self._writes is None:
            raise RuntimeError("write() is for server-streaming and bidi methods")
        await self._writes.put(message)

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self.add_callback(lambda: callback(self))

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._done


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


@contextlib.contextmanager
def _running(method: MethodDescriptor, gctx: _ServicerContext, ctx: Context) -> Iterator[None]:
    """Around a servicer: its exceptions as statuses, the end of the call, the status it
    asked for (abort, set_code) once it returns."""
    try:
        yield
    except (RpcError, TransportError, asyncio.CancelledError):
        raise  # the server answers these itself (a request over the size limit, a reset)
    except Exception:
        # The caller gets the code the servicer set, else UNKNOWN; never the exception.
        log.exception("servicer %s failed", method.path)
        raise gctx._failure() or RpcError(Code.UNKNOWN, "exception calling application") from None
    finally:
        gctx._finish(cancelled=ctx.cancelled())
    failure = gctx._failure()
    if failure is not None:
        raise failure


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
            with _running(method, gctx, ctx):
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
        with _running(method, gctx, ctx):
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
            with _running(method, gctx, ctx):
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
        with _running(method, gctx, ctx):
            response = await behavior(request, gctx)
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

"""The context a grpcio servicer sees: grpcio's ``ServicerContext`` (sync) and
``grpc.aio.ServicerContext`` over one call's h2mesh ``Context``."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple, NoReturn

from .._errors import Code, RpcError
from .._http2 import ErrorCode
from ._context import Context

__all__ = ["AioServicerContext", "Metadatum", "ServicerContext", "SyncServicerContext"]

log = logging.getLogger("h2mesh.server")

# Guards every call's callback list (calls end on the loop; sync servicers add callbacks
# from pool threads). One lock for all: it is held for a few instructions, and a lock per
# call would cost each call more than it saves.
_CALLBACKS_LOCK = threading.Lock()
_CANCEL = ErrorCode.CANCEL


class Metadatum(NamedTuple):
    """One metadata entry, as grpcio's ``invocation_metadata()`` gives them."""

    key: str
    value: str | bytes


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


class ServicerContext:
    """What both grpcio context flavours share; wraps one call's h2mesh ``Context``."""

    # Until a call sets them (most never do): class defaults, not per-call stores.
    _code: Code | None = None
    _details: str | None = None
    _aborted: RpcError | None = None
    _done = False
    _cancelled = False
    _callbacks: list[Callable[[], None]] | None = None

    def __init__(self, ctx: Context, loop: asyncio.AbstractEventLoop) -> None:
        self.h2mesh_context = ctx
        self._loop = loop

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
        if cancelled:
            self._cancelled = True
        with _CALLBACKS_LOCK:
            self._done = True
            callbacks = self._callbacks
            if callbacks is None:
                return
            self._callbacks = None
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


class SyncServicerContext(ServicerContext):
    """grpcio's ``grpc.ServicerContext``, for servicers that run in the thread pool."""

    def abort(self, code: Any, details: str) -> NoReturn:
        raise self._abort_error(code, details)

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        self._initial_metadata(initial_metadata)


class AioServicerContext(ServicerContext):
    """grpcio's ``grpc.aio.ServicerContext``, for servicers that run on the event loop."""

    _requests: AsyncIterator[Any] | None = None
    _writes: asyncio.Queue[Any] | None = None

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

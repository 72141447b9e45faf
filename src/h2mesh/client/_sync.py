"""``SyncChannel``: the async client driven from plain synchronous code.

A private event loop runs in a daemon thread; each call is submitted to it and the
calling thread waits for the result. Streams come back as ordinary iterators.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

from .._loop import new_event_loop
from ..service import MethodDescriptor, Service
from ._channel import Channel
from ._stub import make_stub

S = TypeVar("S", bound=Service)
T = TypeVar("T")

_STUB_CLASSES: dict[type[Service], type] = {}


class SyncChannel:
    """A blocking client: ``SyncChannel("http://host:port").stub(Greeter).say_hello(req)``."""

    def __init__(self, target: str, **options: Any) -> None:
        self._target = target
        self._options = options
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._stubs: dict[type[Service], Any] = {}
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._channel: Channel = asyncio.run_coroutine_threadsafe(
            self._make(self._target, self._options), self._loop
        ).result()

    @staticmethod
    async def _make(target: str, options: dict[str, Any]) -> Channel:
        return Channel(target, **options)

    def _check_caller(self) -> None:
        """Refuse a caller on a running loop; start anew in a forked child."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "SyncChannel called from a running event loop: it would block that loop "
                "(and deadlock a server running in it); use Channel and await the call"
            )
        if os.getpid() != self._pid:
            # A forked child (gunicorn --preload, uWSGI, multiprocessing): the loop thread
            # did not survive the fork, and the connections are the parent's. Start anew;
            # the inherited sockets are left alone for the parent.
            self._start()

    def _async_stub(self, service: type[Service]) -> Any:
        """The async stub of ``service`` on the current channel (a forked child has its own)."""
        stub = self._stubs.get(service)
        if stub is None:
            stub = self._stubs[service] = make_stub(self._channel, service)
        return stub

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def unary(self, method: MethodDescriptor, request: Any, **options: Any) -> Any:
        """A unary call; takes the keyword arguments of ``Channel.unary``."""
        self._check_caller()
        return self._run(_awaited(self._channel.unary, method, request, **options))

    def stream(
        self,
        method: MethodDescriptor,
        request: Any = None,
        requests: Iterable[Any] | None = None,
        **options: Any,
    ) -> Iterator[Any]:
        """A streaming call; takes the keyword arguments of ``Channel.stream``."""
        self._check_caller()
        many = None if requests is None else _async_iter(requests)
        return self._iterate(self._channel.stream, method, request, many, **options)

    def _iterate(
        self, start: Callable[..., AsyncIterator[Any]], *args: Any, **kw: Any
    ) -> Iterator[Any]:
        """The messages of the stream ``start(*args, **kw)`` returns (called on the loop,
        where the call takes its deadline)."""
        responses = self._run(_called(start, *args, **kw))
        try:
            while True:
                try:
                    yield self._run(anext(responses))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                self._run(aclose())

    def stub(self, service: type[S]) -> S:
        """A blocking stub: unary/client-stream methods return values, streams iterators.
        Its methods take the same arguments as the async stub's."""
        cls = _STUB_CLASSES.get(service)
        if cls is None:
            namespace: dict[str, Any] = {"__slots__": ("_service", "_sync")}
            for attr, method in service.__methods__.items():
                namespace[attr] = _sync_method(attr, method)
            cls = type(f"{service.__name__}SyncStub", (), namespace)
            _STUB_CLASSES[service] = cls
        stub = cls()
        stub._sync = self
        stub._service = service
        return stub  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the connection and stop the loop thread."""
        if self._loop.is_closed():
            return
        if os.getpid() != self._pid:
            return  # a forked child that made no call: nothing of its own to close
        self._run(self._channel.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _awaited(call: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
    return await call(*args, **kw)


async def _called(call: Callable[..., T], *args: Any, **kw: Any) -> T:
    return call(*args, **kw)


async def _async_iter(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


def _sync_method(attr: str, method: MethodDescriptor) -> Callable[..., Any]:
    """The blocking form of the async stub's method ``attr``."""
    kind = method.kind

    def call(self: Any, request: Any, **options: Any) -> Any:
        sync: SyncChannel = self._sync
        sync._check_caller()
        if kind.client_streams:
            request = _async_iter(request)
        method = getattr(sync._async_stub(self._service), attr)
        if kind.server_streams:
            return sync._iterate(method, request, **options)
        return sync._run(_awaited(method, request, **options))

    call.__name__ = method.python_name
    return call

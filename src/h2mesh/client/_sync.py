"""``SyncChannel``: the async client driven from plain synchronous code.

A private event loop runs in a daemon thread; each call is submitted to it and the
calling thread waits for the result. Streams come back as ordinary iterators.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypeVar

from .._loop import new_event_loop
from ..protocol import Metadata, ResponseMetadata
from ..service import MethodDescriptor, MethodKind, Service
from ._channel import Channel

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

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def unary(
        self,
        method: MethodDescriptor,
        request: Any,
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
    ) -> Any:
        self._check_caller()
        return self._run(
            self._channel.unary(
                method, request, timeout=timeout, headers=headers, metadata=metadata
            )
        )

    def stream(
        self,
        method: MethodDescriptor,
        request: Any = None,
        requests: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        async def agen(items: Iterable[Any]) -> AsyncIterator[Any]:
            for item in items:
                yield item

        self._check_caller()
        responses = self._channel.stream(
            method, request, agen(requests) if requests is not None else None, **kwargs
        )
        try:
            while True:
                try:
                    yield self._run(anext(responses))
                except StopAsyncIteration:
                    return
        finally:
            self._run(responses.aclose())  # type: ignore[attr-defined]

    def stub(self, service: type[S]) -> S:
        """A blocking stub: unary/client-stream methods return values, streams iterators."""
        cls = _STUB_CLASSES.get(service)
        if cls is None:
            namespace: dict[str, Any] = {}
            for attr, method in service.__methods__.items():
                namespace[attr] = _sync_method(method)
            cls = type(f"{service.__name__}SyncStub", (), namespace)
            _STUB_CLASSES[service] = cls
        stub = cls()
        stub._channel = self
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


def _sync_method(method: MethodDescriptor) -> Callable[..., Any]:
    kind = method.kind

    def call(self: Any, request: Any, **kwargs: Any) -> Any:
        ch: SyncChannel = self._channel
        if kind is MethodKind.UNARY:
            return ch.unary(method, request, **kwargs)
        if kind is MethodKind.SERVER_STREAM:
            return ch.stream(method, request, None, **kwargs)
        if kind is MethodKind.BIDI_STREAM:
            return ch.stream(method, None, request, **kwargs)
        results = list(ch.stream(method, None, request, **kwargs))
        if len(results) != 1:
            from .._errors import Code, RpcError

            raise RpcError(Code.INTERNAL, f"{method.path} returned {len(results)} messages")
        return results[0]

    call.__name__ = method.python_name
    return call

"""``ChannelFor``: services served in process, and a Channel to them, with no socket."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

from ..client import Channel
from ..server import Server
from ..service import Service

__all__ = ["ChannelFor"]


class ChannelFor:
    """An async context manager: a server for ``services`` and a ``Channel`` to it.

    ``services`` is an iterable of services or a configured :class:`~h2mesh.Server`
    (interceptors, hosted app, limits...). Keyword arguments go to the ``Channel``
    (``protocol="grpc"``, ``codec="msgpack"``, ``interceptors=[...]``, ``timeout=``...).
    On exit the channel closes and the server stops, as a real one would (GOAWAY, drain).
    """

    def __init__(
        self, services: Iterable[Service] | Server, *, grace: float = 1.0, **channel: Any
    ) -> None:
        self.server = services if isinstance(services, Server) else Server(list(services))
        self.grace = grace
        self._options = channel
        self._channel: Channel | None = None
        #: The ``http://host:port`` target of the in-memory listener, once entered.
        self.target = ""

    @property
    def channel(self) -> Channel:
        if self._channel is None:
            raise RuntimeError("ChannelFor is not entered (use `async with`)")
        return self._channel

    async def __aenter__(self) -> Channel:
        listener = await self.server.start_in_memory()
        self.target = f"http://{listener.address}"
        try:
            self._channel = Channel(self.target, **self._options)
        except BaseException:
            await self.server.stop(grace=0)
            raise
        return self._channel

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._channel is not None:
                await self._channel.close()
        finally:
            self._channel = None
            await self.server.stop(grace=self.grace)

"""``Resolver``: turns a target into a changing set of endpoints.

A resolver publishes complete endpoint sets (never deltas). Consumers iterate
``updates()`` to receive the first set and each later change, or ``await first()``. The
background work (polling, watching) starts on first use and stops at ``aclose()``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence

from .._endpoint import Endpoint, split_host_port

__all__ = ["Resolver", "StaticResolver", "parse_address"]


def parse_address(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` / ``host`` (with ``default_port``) -> (host, port)."""
    text = text.strip()
    host, port_text = split_host_port(text)
    if not port_text:
        if default_port is None:
            raise ValueError(f"address needs a port: {text!r}")
        return host, default_port
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad address {text!r}; expected host:port")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Resolver(ABC):
    """The source of endpoint sets for one target."""

    def __init__(self) -> None:
        self._current: tuple[Endpoint, ...] | None = None
        self._version = 0
        self._changed = asyncio.Event()  # replaced (after being set) on every change
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.last_error: BaseException | None = None

    # -- for subclasses ------------------------------------------------------------------
    @abstractmethod
    async def _run(self) -> None:
        """Produce endpoint sets with ``_publish`` until cancelled."""

    def _publish(self, endpoints: Sequence[Endpoint]) -> None:
        """Offer a new set; consumers wake only if it differs from the current one."""
        new = tuple(sorted(endpoints, key=lambda ep: ep.address))
        old = self._current
        if (
            old is not None
            and new == old
            and all(a.metadata == b.metadata for a, b in zip(new, old, strict=True))
        ):
            return
        self._current = new
        self._version += 1
        self._wake()

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    # -- for consumers -------------------------------------------------------------------
    @property
    def current(self) -> tuple[Endpoint, ...] | None:
        """The latest endpoint set, or ``None`` before the first resolution."""
        return self._current

    def start(self) -> None:
        """Start the background resolution (done by ``updates``/``first`` on demand)."""
        if self._closed:
            raise RuntimeError("resolver is closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._guarded_run())

    async def _guarded_run(self) -> None:
        try:
            await self._run()
        finally:
            self._wake()

    def refresh(self) -> None:  # noqa: B027 - resolvers that can re-resolve override it
        """Ask for a re-resolution now (e.g. after connection failures)."""

    async def updates(self) -> AsyncIterator[tuple[Endpoint, ...]]:
        """Every endpoint set: the current one first, then each change until closed."""
        self.start()
        seen = 0
        while True:
            if self._version == seen and not (self._closed or self._task_done()):
                await self._changed.wait()
                continue
            if self._version != seen:
                seen = self._version
                assert self._current is not None
                yield self._current
            elif self._closed or self._task_done():
                return

    def _task_done(self) -> bool:
        return self._task is not None and self._task.done()

    async def first(self, timeout: float | None = None) -> tuple[Endpoint, ...]:
        """The first endpoint set (waits for it; ``TimeoutError`` after ``timeout``)."""
        if self._current is not None:
            return self._current
        try:
            async with asyncio.timeout(timeout):
                async for endpoints in self.updates():
                    return endpoints
        except TimeoutError:
            detail = f": {self.last_error}" if self.last_error else ""
            raise TimeoutError(f"{self!r} resolved nothing in {timeout}s{detail}") from None
        raise RuntimeError(f"{self!r} stopped before resolving") from self.last_error

    async def aclose(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
            except Exception:
                pass
        self._wake()

    async def __aenter__(self) -> Resolver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class StaticResolver(Resolver):
    """A fixed list of endpoints (``http://host:port`` and ``static://h1:p1,h2:p2``)."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        super().__init__()
        if not endpoints:
            raise ValueError("a static target needs at least one address")
        self._publish(endpoints)

    async def _run(self) -> None:
        await asyncio.Event().wait()  # nothing changes; live until closed

    def __repr__(self) -> str:
        return f"StaticResolver({[ep.address for ep in self._current or ()]})"

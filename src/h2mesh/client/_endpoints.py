"""The endpoints a channel's calls may go to, and which of them are in rotation.

``Endpoints`` takes each endpoint set the resolver finds (a pool per endpoint, drained
pools for endpoints that left), keeps out of the balancer those that fail their health
checks or refuse connections (backing off 1 s, doubling to 30 s, as gRPC does with
subchannels in TRANSIENT_FAILURE), and picks the endpoint and pool of each attempt.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from .._errors import Code, RpcError, UnprocessedError
from ..balancing import Balancer, Endpoint
from ..discovery import Resolver
from ..transport import TransportConfig
from ._pool import EndpointPool

__all__ = ["Endpoints"]

# Backoff of an endpoint that refuses connections before calls try it again.
_DOWN_BACKOFF = 1.0
_DOWN_BACKOFF_MAX = 30.0


class Endpoints:
    """The resolved endpoints of ``target``, their pools, and the balancer over them."""

    def __init__(
        self,
        target: str,
        resolver: Resolver,
        balancer: Balancer,
        *,
        ssl_context: ssl.SSLContext | None,
        config: TransportConfig,
        connect_timeout: float,
        max_connections: int,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    ) -> None:
        self.target = target
        self.resolver = resolver
        self.balancer = balancer
        self._ssl = ssl_context
        self._config = config
        self.connect_timeout = connect_timeout
        self._max_connections = max_connections
        self.pools: dict[str, EndpointPool] = {}
        self.applied: tuple[Endpoint, ...] = ()
        self.unhealthy: set[str] = set()
        self.down: dict[str, asyncio.TimerHandle] = {}
        # Started with the first call: the resolver watch, then ``background`` jobs
        # (outlier detection's clock, active health checks).
        self._background = tuple(background)
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    # -- the endpoint set -------------------------------------------------------------
    def apply(self, endpoints: Sequence[Endpoint]) -> None:
        """Take a new endpoint set: balancer first, then pools (new ones, drained ones)."""
        endpoints = tuple(endpoints)
        if endpoints == self.applied:
            return  # the watcher's first set repeats the one resolved at start
        self.applied = endpoints
        self.update_balancer()
        wanted = {ep.address: ep for ep in endpoints}
        for address, ep in wanted.items():
            if address not in self.pools:
                self.pools[address] = EndpointPool(
                    ep.host,
                    ep.port,
                    ssl_context=self._ssl,
                    config=self._config,
                    connect_timeout=self.connect_timeout,
                    max_connections=self._max_connections,
                )
        for address in [a for a in self.pools if a not in wanted]:
            pool = self.pools.pop(address)
            # In-flight calls finish on the old connections; no new call picks them.
            asyncio.get_running_loop().create_task(pool.close(timeout=30.0))

    @property
    def ready(self) -> bool:
        """True if calls may pick an endpoint now, with no waiting (see ``start``)."""
        return (
            bool(self._tasks)
            and bool(self.pools)
            and not self.closed
            and self.resolver.current is not None
        )

    async def start(self, deadline: float | None = None) -> None:
        """Start watching the resolver and the background jobs, once; wait for the first
        endpoint set if there is none yet (until ``deadline``, an event-loop time, if that
        comes before the connect timeout: then DEADLINE_EXCEEDED)."""
        if self.closed:
            raise RpcError(Code.UNAVAILABLE, "channel is closed")
        loop = asyncio.get_running_loop()
        if not self._tasks:
            self._tasks.append(loop.create_task(self._watch()))
            self._tasks += [loop.create_task(job()) for job in self._background]
        if self.resolver.current is None or not self.pools:
            wait = self.connect_timeout
            left = wait if deadline is None else deadline - loop.time()
            try:
                endpoints = await self.resolver.first(min(wait, left))
            except (TimeoutError, RuntimeError) as exc:
                if left < wait and isinstance(exc, TimeoutError):
                    raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded") from None
                raise RpcError(Code.UNAVAILABLE, f"cannot resolve {self.target}: {exc}") from None
            if not self.pools:
                self.apply(endpoints)

    async def _watch(self) -> None:
        async for endpoints in self.resolver.updates():
            self.apply(endpoints)

    def update_balancer(self) -> None:
        """The balancer sees the resolved endpoints that passed their last health check
        and are not backing off after failed connection attempts."""
        out = self.unhealthy | self.down.keys() if self.down else self.unhealthy
        self.balancer.update(
            [ep for ep in self.applied if ep.address not in out] if out else self.applied
        )

    def set_unhealthy(self, addresses: set[str]) -> None:
        """The endpoints whose last health check did not answer SERVING."""
        if addresses != self.unhealthy:
            self.unhealthy = addresses
            self.update_balancer()

    # -- endpoints that refuse connections ----------------------------------------------
    def mark_down(self, address: str, failures: int) -> None:
        """Take an endpoint that refuses connections out of rotation for a backoff that
        doubles with ``failures`` in a row; after it, calls may try it again."""
        if address in self.down or address not in self.pools:
            return
        backoff = min(_DOWN_BACKOFF_MAX, _DOWN_BACKOFF * 2 ** (failures - 1))
        loop = asyncio.get_running_loop()
        self.down[address] = loop.call_later(backoff, self.readmit, address)
        self.update_balancer()

    def readmit(self, address: str) -> None:
        timer = self.down.pop(address, None)
        if timer is not None:
            timer.cancel()
            if not self.closed:
                self.update_balancer()

    def _only_hope(self) -> Endpoint | None:
        """With every endpoint backing off after failed connections, the one due back
        first: the call tries it now instead of failing, so that a server that came back
        is found by the next call, not when a backoff timer runs out."""
        if self.balancer.endpoints:
            return None  # some endpoint is in rotation (busy or ejected): not all are down
        down = [
            ep
            for ep in self.applied
            if ep.address in self.down and ep.address not in self.unhealthy
        ]
        if not down:
            return None
        return min(down, key=lambda ep: self.down[ep.address].when())

    # -- picking ----------------------------------------------------------------------
    def pick(self, key: bytes | None) -> tuple[Endpoint, EndpointPool]:
        """The endpoint and pool of the next attempt; ``RpcError(UNAVAILABLE)`` if none."""
        endpoint = self.balancer.pick(key)
        if endpoint is None and self.down:
            endpoint = self._only_hope()
        if endpoint is None:
            self.resolver.refresh()
            if self.applied and not self.balancer.endpoints:
                reason = (
                    f"all {len(self.applied)} endpoints are unreachable or failing health checks"
                )
            else:
                reason = self.balancer.unavailable_reason()
            raise RpcError(Code.UNAVAILABLE, f"{self.target}: {reason}")
        pool = self.pools.get(endpoint.address)
        if pool is None:  # the set changed under us; the balancer catches up next pick
            raise UnprocessedError(f"{endpoint.address} left {self.target}")
        return endpoint, pool

    def failed_to_reach(self, endpoint: Endpoint, pool: EndpointPool) -> None:
        """An attempt never reached ``endpoint``: look again, and back off if it refuses
        connections."""
        self.resolver.refresh()
        if pool.connect_failures:
            self.mark_down(endpoint.address, pool.connect_failures)

    def reached(self, endpoint: Endpoint) -> None:
        """``endpoint`` answered a call: if it was backing off, it is back in rotation."""
        if self.down and endpoint.address in self.down:
            self.readmit(endpoint.address)

    # -- lifecycle --------------------------------------------------------------------
    def forget(self) -> None:
        """Start afresh on a new event loop: the old loop's connections and timers died."""
        for pool in self.pools.values():
            pool.forget_connections()
        self.down.clear()
        self.unhealthy.clear()
        self._tasks = []
        self.update_balancer()

    async def close(self) -> None:
        """Stop the background jobs and the resolver; close the pools after their calls."""
        self.closed = True
        for task in self._tasks:
            task.cancel()
        for timer in self.down.values():
            timer.cancel()
        self.down.clear()
        await self.resolver.aclose()
        pools, self.pools = list(self.pools.values()), {}
        await asyncio.gather(*(pool.close() for pool in pools))

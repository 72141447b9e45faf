"""``dns://name:port``: A/AAAA records through the event loop's resolver, re-resolved
every ``interval`` seconds and on ``refresh()``."""

from __future__ import annotations

import asyncio
import logging
import socket

from .._endpoint import Endpoint
from ._resolver import Resolver, format_address

__all__ = ["DnsResolver"]

log = logging.getLogger("h2mesh.discovery")


class DnsResolver(Resolver):
    """Endpoints from the addresses ``host`` resolves to, all on ``port``."""

    def __init__(
        self, host: str, port: int, *, interval: float = 30.0, min_interval: float = 1.0
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.interval = interval
        # refresh() storms (every failing call asks) are folded to one lookup per min_interval.
        self.min_interval = min_interval
        self._kick = asyncio.Event()

    def refresh(self) -> None:
        self._kick.set()

    async def lookup(self) -> list[Endpoint]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        seen: dict[str, Endpoint] = {}
        for family, _, _, _, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = format_address(str(sockaddr[0]), self.port)
            seen.setdefault(address, Endpoint(address))
        return list(seen.values())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            self._kick.clear()
            started = loop.time()
            try:
                endpoints = await self.lookup()
            except OSError as exc:
                self.last_error = exc
                failures += 1
                log.warning("resolving %s failed: %s", self.host, exc)
                wait = min(self.min_interval * 2**failures, self.interval)
            else:
                failures = 0
                self.last_error = None
                if endpoints:
                    self._publish(endpoints)
                wait = self.interval
            try:
                async with asyncio.timeout(wait):
                    await self._kick.wait()
            except TimeoutError:
                continue
            spent = loop.time() - started
            if spent < self.min_interval:
                await asyncio.sleep(self.min_interval - spent)

    def __repr__(self) -> str:
        return f"DnsResolver({self.host}:{self.port})"

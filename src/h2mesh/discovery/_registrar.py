"""``Registrar``: announces this process's endpoints in a registry while it lives."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Registrar", "Registration"]

log = logging.getLogger("h2mesh.discovery")


@dataclass(slots=True)
class Registration:
    """One announced endpoint: service, address and what it says about itself."""

    service: str
    address: str
    ttl: float
    weight: int = 1
    metadata: Mapping[str, str] = field(default_factory=dict)


class Registrar(ABC):
    """Registers endpoints with a TTL and keeps them alive until deregistered or closed.

    ``register`` writes the entry and starts a heartbeat task that refreshes it every
    ``ttl / 3`` seconds; if the process dies, the entry expires after ``ttl``.
    ``deregister`` removes it at once; ``aclose`` deregisters everything.
    """

    def __init__(self) -> None:
        self._heartbeats: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._registrations: dict[tuple[str, str], Registration] = {}

    # -- backend operations ------------------------------------------------------------
    @abstractmethod
    async def _put(self, reg: Registration) -> None:
        """Write (or overwrite) the entry with a fresh TTL."""

    @abstractmethod
    async def _refresh(self, reg: Registration) -> None:
        """Extend the entry's TTL (re-creating it if it vanished)."""

    @abstractmethod
    async def _delete(self, reg: Registration) -> None:
        """Remove the entry."""

    async def _close_backend(self) -> None:  # noqa: B027 - optional hook
        """Release backend resources after every entry is deregistered."""

    # -- public ------------------------------------------------------------------------
    async def register(
        self,
        service: str,
        address: str,
        *,
        ttl: float = 10.0,
        weight: int = 1,
        metadata: Mapping[str, str] | None = None,
        heartbeat: bool = True,
    ) -> Registration:
        """Announce ``address`` for ``service``; keeps it alive unless ``heartbeat=False``."""
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        if weight < 1:
            raise ValueError("weight must be >= 1")
        reg = Registration(service, address, ttl, weight, dict(metadata or {}))
        key = (service, address)
        self._stop_heartbeat(key)
        await self._put(reg)
        self._registrations[key] = reg
        if heartbeat:
            self._heartbeats[key] = asyncio.get_running_loop().create_task(
                self._heartbeat_loop(reg), name=f"h2mesh-heartbeat-{service}-{address}"
            )
        return reg

    async def heartbeat(self, service: str, address: str) -> None:
        """Refresh one registration's TTL now."""
        reg = self._registrations.get((service, address))
        if reg is None:
            raise KeyError(f"{address} is not registered for {service}")
        await self._refresh(reg)

    async def deregister(self, service: str, address: str) -> None:
        key = (service, address)
        self._stop_heartbeat(key)
        reg = self._registrations.pop(key, None)
        if reg is not None:
            await self._delete(reg)

    def stop_heartbeats(self) -> None:
        """Stop refreshing without deregistering (entries then expire after their TTL)."""
        for key in list(self._heartbeats):
            self._stop_heartbeat(key)

    async def aclose(self) -> None:
        """Deregister everything and release the backend."""
        try:
            for service, address in list(self._registrations):
                try:
                    await self.deregister(service, address)
                except Exception:
                    log.warning("deregistering %s from %s failed", address, service, exc_info=True)
        finally:
            await self._close_backend()

    async def __aenter__(self) -> Registrar:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _stop_heartbeat(self, key: tuple[str, str]) -> None:
        task = self._heartbeats.pop(key, None)
        if task is not None:
            task.cancel()

    async def _heartbeat_loop(self, reg: Registration) -> None:
        period = reg.ttl / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self._refresh(reg)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Keep trying: the entry survives until its TTL runs out.
                log.warning("heartbeat for %s/%s failed", reg.service, reg.address, exc_info=True)

"""``ServerRegistration``: a server announcing its own address in a registry while it serves.

``Server(services, register="demo.v1.Greeter")`` registers ``host:port`` once the first
listener is bound and keeps the entry alive with TTL heartbeats. A graceful ``stop()``
deregisters first, keeps serving for ``propagation_delay`` seconds so that resolvers drop
the endpoint, and only then closes the listeners and sends GOAWAY; a crashed process stops
heartbeating and its entry expires after ``ttl``.

Registry URLs (``registry=``):

=============================  ===========================================================
``None`` / ``"registry://"``   the embedded SQLite registry (``$H2MESH_REGISTRY`` or the
                               per-user default)
``"registry:///path/to.db"``   the embedded registry in that file
``"etcd://host:port"``         an etcd v3 cluster member (JSON gateway)
a ``Registrar``                used as is; the server deregisters its entry but does not
                               close the registrar
=============================  ===========================================================
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

from ..discovery import Registrar, format_address, parse_address, registrar_for

__all__ = ["ServerRegistration"]

log = logging.getLogger("h2mesh.server")

_WILDCARDS = ("0.0.0.0", "::", "")


def _advertised(sockname: Any, address: str | None) -> str:
    """The ``host:port`` to announce for a listener bound to ``sockname``."""
    bound_host, bound_port = str(sockname[0]), int(sockname[1])
    if address:
        host, port = parse_address(address, bound_port)
        return format_address(host, port)
    # A wildcard bind is reachable on loopback from this machine; other machines need
    # an explicit register_address.
    if bound_host in _WILDCARDS:
        bound_host = "127.0.0.1"
    return format_address(bound_host, bound_port)


class ServerRegistration:
    """Registers one server under ``service`` from ``start`` until ``stop``."""

    def __init__(
        self,
        service: str,
        registry: Registrar | str | None = None,
        *,
        ttl: float = 10.0,
        address: str | None = None,
        weight: int = 1,
        metadata: Mapping[str, str] | None = None,
        propagation_delay: float = 0.5,
    ) -> None:
        if not service:
            raise ValueError("register= needs a service name")
        if ttl <= 0:
            raise ValueError("register_ttl must be > 0")
        if weight < 1:
            raise ValueError("weight must be >= 1")
        self.service = service
        self.ttl = ttl
        self.weight = weight
        self.requested_address = address
        self.metadata = {"pid": str(os.getpid()), **(metadata or {})}
        self.propagation_delay = propagation_delay
        self._owned = not isinstance(registry, Registrar)
        self.registrar = registry if isinstance(registry, Registrar) else registrar_for(registry)
        self.address: str | None = None  # set while registered

    async def start(self, sockname: Any) -> None:
        """Register the listener bound at ``sockname`` (once; later listeners are not)."""
        if self.address is not None:
            return
        address = _advertised(sockname, self.requested_address)
        await self.registrar.register(
            self.service, address, ttl=self.ttl, weight=self.weight, metadata=self.metadata
        )
        self.address = address
        log.info("registered %s as %s (ttl %gs)", address, self.service, self.ttl)

    async def stop(self) -> None:
        """Deregister, then wait ``propagation_delay`` so that clients stop picking us."""
        address, self.address = self.address, None
        if address is None:
            return
        try:
            await self.registrar.deregister(self.service, address)
            if self._owned:
                await self.registrar.aclose()
        except Exception:
            # The entry expires by itself after its TTL: shutting down matters more.
            log.warning("deregistering %s from %s failed", address, self.service, exc_info=True)
        else:
            log.info("deregistered %s from %s", address, self.service)
        if self.propagation_delay > 0:
            await asyncio.sleep(self.propagation_delay)

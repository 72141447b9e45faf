"""Active health checks: ``grpc.health.v1.Health/Check`` on every endpoint, every
``interval`` seconds; endpoints not SERVING take no calls until they are again.

The check speaks Connect JSON with untyped messages, so the server needs no protobuf.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .._errors import RpcError
from ..codec import JSON
from ..protocol import ConnectClient
from ..service import MethodDescriptor, MethodKind
from ._call import CallFlow, CallOptions
from ._endpoints import Endpoints
from ._pool import EndpointPool

__all__ = ["HealthChecker"]

_CHECK = CallOptions(
    MethodDescriptor(
        "grpc.health.v1.Health", "Check", "check", MethodKind.UNARY, dict[str, Any], dict[str, Any]
    )
)
_MAX_REPLY = 64 * 1024


class HealthChecker:
    """Checks the endpoints of ``endpoints`` for ``service`` ("" = the whole server)."""

    def __init__(
        self,
        endpoints: Endpoints,
        base_headers: list[tuple[bytes, bytes]],
        interval: float,
        service: str = "",
    ) -> None:
        self.endpoints = endpoints
        self.interval = interval
        self.service = service
        self._flow = CallFlow(ConnectClient(JSON), base_headers, _MAX_REPLY)

    async def run(self) -> None:
        """Check every endpoint, then again each ``interval``, until cancelled."""
        while True:
            pools = list(self.endpoints.pools.items())
            results = await asyncio.gather(*(self._probe(pool) for _, pool in pools))
            self.endpoints.set_unhealthy(
                {address for (address, _), ok in zip(pools, results, strict=True) if not ok}
            )
            await asyncio.sleep(self.interval)

    async def _probe(self, pool: EndpointPool) -> bool:
        deadline = asyncio.get_running_loop().time() + self.interval
        try:
            reply = await self._flow.unary(pool, _CHECK, {"service": self.service}, deadline)
        except RpcError:
            return False
        return isinstance(reply, dict) and reply.get("status") == "SERVING"

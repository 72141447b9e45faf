"""The gRPC health checking service, ``grpc.health.v1.Health`` (on by default).

Its messages are msgspec Structs whose schema is exactly ``grpc/health/v1/health.proto``
(``HealthCheckRequest.service = 1``; ``HealthCheckResponse.status = 1`` with the nested
enum ``ServingStatus``; ``HealthListResponse.statuses = 1``; Check, List and Watch), so
grpcio's health stub works over gRPC (with the ``protobuf`` package, like every
Python-first service) and the same service answers Connect JSON and MessagePack with no
extra package: ``{"status": "SERVING"}``, as protobuf JSON has it.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Iterable

import msgspec

from .._errors import Code, RpcError
from ..service import Service, rpc

__all__ = [
    "HealthCheckRequest",
    "HealthCheckResponse",
    "HealthListRequest",
    "HealthListResponse",
    "HealthService",
    "ServingStatus",
]


class HealthCheckRequest(msgspec.Struct, omit_defaults=True):
    service: str = ""


class HealthCheckResponse(msgspec.Struct):
    class ServingStatus(enum.Enum):
        # String values so that JSON reads as protobuf JSON does; the proto numbers are
        # the declaration order (0..3), as in health.proto.
        UNKNOWN = "UNKNOWN"
        SERVING = "SERVING"
        NOT_SERVING = "NOT_SERVING"
        SERVICE_UNKNOWN = "SERVICE_UNKNOWN"

    status: HealthCheckResponse.ServingStatus = ServingStatus.UNKNOWN


ServingStatus = HealthCheckResponse.ServingStatus


class HealthListRequest(msgspec.Struct):
    pass


class HealthListResponse(msgspec.Struct):
    statuses: dict[str, HealthCheckResponse] = {}


class HealthService(Service, name="grpc.health.v1.Health"):
    """Serving status by service name (``""`` = the whole server).

    ``set(name, status)`` may be called from any thread; ``Watch`` streams see each change.
    Once the server starts shutting down every status is ``NOT_SERVING``, later ``set``
    calls are ignored, and open ``Watch`` streams end after telling their watcher.
    """

    def __init__(self, services: Iterable[str] = ()) -> None:
        self._statuses: dict[str, ServingStatus] = {"": ServingStatus.SERVING}
        for name in services:
            self._statuses[name] = ServingStatus.SERVING
        self._waiters: set[asyncio.Future[None]] = set()
        self._terminal = False

    def set(self, service: str, status: ServingStatus | str) -> None:
        """Set the status of ``service`` (``""`` for the server as a whole)."""
        if isinstance(status, str):
            try:
                status = ServingStatus(status.upper())
            except ValueError:
                raise ValueError(f"unknown serving status {status!r}") from None
        if self._terminal or self._statuses.get(service) is status:
            return
        self._statuses[service] = status
        self._wake()

    def get(self, service: str = "") -> ServingStatus | None:
        """The status of ``service``, or None if it was never set."""
        return self._statuses.get(service)

    def clear(self, service: str) -> None:
        """Forget ``service``: ``Check`` answers ``not_found`` again."""
        if not self._terminal and self._statuses.pop(service, None) is not None:
            self._wake()

    def shutdown(self) -> None:
        """Mark everything ``NOT_SERVING`` for good (the server is going away)."""
        if self._terminal:
            return
        for name in self._statuses:
            self._statuses[name] = ServingStatus.NOT_SERVING
        self._terminal = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            fut.get_loop().call_soon_threadsafe(_resolve, fut)

    @rpc(name="Check", idempotent=True)
    async def check(self, req: HealthCheckRequest) -> HealthCheckResponse:
        status = self._statuses.get(req.service)
        if status is None:
            raise RpcError(Code.NOT_FOUND, f"unknown service {req.service!r}")
        return HealthCheckResponse(status=status)

    @rpc(name="List", idempotent=True)
    async def list(self, req: HealthListRequest) -> HealthListResponse:
        statuses = {name: HealthCheckResponse(status) for name, status in self._statuses.items()}
        return HealthListResponse(statuses)

    @rpc(name="Watch")
    async def watch(self, req: HealthCheckRequest) -> AsyncIterator[HealthCheckResponse]:
        loop = asyncio.get_running_loop()
        last: ServingStatus | None = None
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.add(fut)  # before reading: no change can slip in between
            status = self._statuses.get(req.service, ServingStatus.SERVICE_UNKNOWN)
            if status is not last:
                last = status
                yield HealthCheckResponse(status=status)
            if self._terminal:
                self._waiters.discard(fut)
                return
            try:
                await fut
            finally:
                self._waiters.discard(fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)

"""etcd v3 discovery through etcd's JSON gRPC-gateway (``/v3/...`` on the client port).

Layout: one key per endpoint, ``/h2mesh/services/<service>/<address>``, whose value is
``{"address", "weight", "metadata"}`` JSON, attached to a lease. A registrar grants a
lease of ``ceil(ttl)`` seconds per registration and keeps it alive every ``ttl / 3``;
when the process dies the lease lapses and etcd deletes the key. A resolver reads the
prefix once, then watches it from the next revision; on any watch failure it reads and
watches again.

The gateway speaks plain HTTP/1.1 + JSON (keys and values base64), so this needs no
client library and no grpcio/protobuf dependency.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import msgspec

from .._endpoint import Endpoint
from ._http import HttpError, post_json, stream_json
from ._registrar import Registrar, Registration
from ._resolver import Resolver

__all__ = ["ETCD_PREFIX", "EtcdClient", "EtcdRegistrar", "EtcdResolver", "etcd_key"]

T = TypeVar("T")

log = logging.getLogger("h2mesh.discovery")

#: Every registered endpoint lives under this key prefix.
ETCD_PREFIX = "/h2mesh/services/"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``."""
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"


def etcd_key(service: str, address: str = "") -> bytes:
    """The key of one endpoint of ``service``, or with no ``address`` the prefix of all."""
    return f"{ETCD_PREFIX}{service}/{address}".encode()


class EtcdClient:
    """The few etcd v3 calls discovery needs, over the JSON gateway of one member."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    async def call(self, path: str, body: dict[str, Any]) -> Any:
        return await post_json(self.host, self.port, path, body, self.timeout)

    async def grant(self, ttl: int) -> int:
        reply = await self.call("/v3/lease/grant", {"TTL": ttl})
        if reply.get("error"):
            raise HttpError(f"lease grant failed: {reply['error']}")
        return int(reply["ID"])

    async def keepalive(self, lease: int) -> int:
        """Renew a lease once; returns the new TTL (0: the lease no longer exists)."""
        reply = await self.call("/v3/lease/keepalive", {"ID": lease})
        result = reply.get("result", reply)
        return int(result.get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        await self.call("/v3/lease/revoke", {"ID": lease})

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> None:
        await self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value), "lease": lease})

    async def delete(self, key: bytes, *, prefix: bool = False) -> int:
        """Delete ``key`` (with ``prefix=True``, every key starting with it); returns how
        many keys went."""
        body = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(_prefix_end(key))
        reply = await self.call("/v3/kv/deleterange", body)
        return int(reply.get("deleted", 0))

    async def time_to_live(self, lease: int) -> int:
        """The seconds a lease has left (0 or less: it has lapsed)."""
        reply = await self.call("/v3/lease/timetolive", {"ID": lease})
        return int(reply.get("TTL", 0))

    async def get_prefix_leases(self, prefix: bytes) -> tuple[int, list[tuple[bytes, bytes, int]]]:
        """Every ``(key, value, lease)`` under ``prefix`` (lease 0: none) and the store
        revision they were read at."""
        reply = await self.call(
            "/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
        )
        revision = int(reply.get("header", {}).get("revision", 0))
        kvs = [
            (_unb64(kv["key"]), _unb64(kv.get("value", "")), int(kv.get("lease", 0)))
            for kv in reply.get("kvs", [])
        ]
        return revision, kvs

    async def get_prefix(self, prefix: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Every key under ``prefix`` and the store revision they were read at."""
        revision, kvs = await self.get_prefix_leases(prefix)
        return revision, [(key, value) for key, value, _ in kvs]

    async def watch(
        self, prefix: bytes, parse: Callable[[bytes, bytes], T | None]
    ) -> AsyncIterator[dict[bytes, T]]:
        """The entries under ``prefix`` (``parse(key, value)``, None to skip one), then
        again after every change (one dict, updated in place); raises :class:`HttpError`
        when etcd cancels the watch.

        One read, then a watch from the next revision, so no change between them is lost.
        """
        revision, kvs = await self.get_prefix(prefix)
        entries: dict[bytes, T] = {}
        for key, value in kvs:
            if (entry := parse(key, value)) is not None:
                entries[key] = entry
        yield entries
        async for doc in self.watch_prefix(prefix, revision + 1):
            result = doc.get("result", doc)
            if result.get("canceled") or doc.get("error"):
                reason = result.get("cancel_reason") or doc.get("error")
                raise HttpError(f"watch cancelled: {reason}")
            events = result.get("events") or ()
            for event in events:
                kv = event.get("kv", {})
                key = _unb64(kv.get("key", ""))
                if event.get("type") == "DELETE":
                    entries.pop(key, None)
                elif (entry := parse(key, _unb64(kv.get("value", "")))) is not None:
                    entries[key] = entry
            if events:
                yield entries

    def watch_prefix(self, prefix: bytes, start_revision: int) -> Any:
        """An async iterator of watch responses (``{"result": {...}}`` documents)."""
        body = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(_prefix_end(prefix)),
                "start_revision": start_revision,
            }
        }
        return stream_json(self.host, self.port, "/v3/watch", body, self.timeout)


def _endpoint(key: bytes, value: bytes) -> Endpoint | None:
    try:
        doc = msgspec.json.decode(value)
        metadata = doc.get("metadata") or {}
        return Endpoint(
            str(doc["address"]),
            int(doc.get("weight", 1)),
            {str(k): str(v) for k, v in metadata.items()},
        )
    except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError):
        log.warning("ignoring malformed etcd registry value %r", value[:200])
        return None


class EtcdResolver(Resolver):
    """``etcd://host:port/service``: the endpoints registered for ``service`` in etcd."""

    def __init__(self, host: str, port: int, service: str, *, retry_interval: float = 1.0):
        super().__init__()
        self.client = EtcdClient(host, port)
        self.service = service
        self.retry_interval = retry_interval

    async def _run(self) -> None:
        prefix = etcd_key(self.service)
        while True:
            try:
                await self._sync(prefix)
            except (HttpError, OSError, KeyError, ValueError, TimeoutError) as exc:
                self.last_error = exc
                log.warning("etcd watch of %s failed: %s", self.service, exc)
            await asyncio.sleep(self.retry_interval)

    async def _sync(self, prefix: bytes) -> None:
        async for entries in self.client.watch(prefix, _endpoint):
            self._publish(list(entries.values()))
            self.last_error = None

    def __repr__(self) -> str:
        return f"EtcdResolver({self.client.host}:{self.client.port}/{self.service})"


class EtcdRegistrar(Registrar):
    """Registers endpoints in etcd, each under its own lease kept alive by a heartbeat."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.client = EtcdClient(host, port)
        self._leases: dict[tuple[str, str], int] = {}

    @staticmethod
    def _key(reg: Registration) -> bytes:
        return etcd_key(reg.service, reg.address)

    async def _put(self, reg: Registration) -> None:
        lease = await self.client.grant(max(1, math.ceil(reg.ttl)))
        value = msgspec.json.encode(
            {"address": reg.address, "weight": reg.weight, "metadata": dict(reg.metadata)}
        )
        await self.client.put(self._key(reg), value, lease)
        old = self._leases.get((reg.service, reg.address))
        self._leases[(reg.service, reg.address)] = lease
        if old is not None:
            await self.client.revoke(old)

    async def _refresh(self, reg: Registration) -> None:
        lease = self._leases.get((reg.service, reg.address))
        if lease is None or await self.client.keepalive(lease) <= 0:
            # The lease lapsed (a long stall): register afresh.
            await self._put(reg)

    async def _delete(self, reg: Registration) -> None:
        lease = self._leases.pop((reg.service, reg.address), None)
        await self.client.delete(self._key(reg))
        if lease is not None:
            await self.client.revoke(lease)

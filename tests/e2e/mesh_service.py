"""The service the mesh tests run as replicas: says which replica answered, with knobs.

Each replica runs ``h2mesh serve tests.e2e.mesh_service:Mesh --register mesh.v1.Mesh``.
Knobs, from the environment at start and changeable at run time with ``Configure``:

- ``MESH_SLOW``: multiplies the ``work`` seconds each call sleeps (10 = ten times slower);
- ``MESH_FAIL_RATE``: the share of calls answered with ``unavailable`` (0.5 = half).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator

import msgspec

from h2mesh import Code, Context, RpcError, Service, rpc


class WorkRequest(msgspec.Struct):
    key: str = ""
    work: float = 0.0  # seconds of simulated work, times the replica's slow factor


class WorkReply(msgspec.Struct):
    replica: str
    key: str
    peer: str = ""  # the caller's host as the replica sees it (Context.peer)


class Knobs(msgspec.Struct):
    slow: float = 1.0
    fail_rate: float = 0.0


class Stats(msgspec.Struct):
    replica: str
    calls: int
    failed: int


class Empty(msgspec.Struct):
    pass


class Mesh(Service, name="mesh.v1.Mesh"):
    """Answers ``Work`` calls as one identifiable replica."""

    def __init__(self) -> None:
        self.replica = os.environ.get("MESH_REPLICA") or str(os.getpid())
        self.knobs = Knobs(
            slow=float(os.environ.get("MESH_SLOW", "1")),
            fail_rate=float(os.environ.get("MESH_FAIL_RATE", "0")),
        )
        self.calls = 0
        self.failed = 0

    @rpc(idempotent=True)
    async def work(self, req: WorkRequest, ctx: Context) -> WorkReply:
        self.calls += 1
        knobs = self.knobs
        if knobs.fail_rate and random.random() < knobs.fail_rate:
            self.failed += 1
            raise RpcError(Code.UNAVAILABLE, f"replica {self.replica} is failing on purpose")
        delay = req.work * knobs.slow
        if delay > 0:
            await asyncio.sleep(delay)
        ctx.response_headers["x-replica"] = self.replica
        return WorkReply(replica=self.replica, key=req.key, peer=str(ctx.peer[0]))

    @rpc
    async def count(self, req: WorkRequest) -> AsyncIterator[WorkReply]:
        """Three replies from this replica (a server stream)."""
        for i in range(3):
            yield WorkReply(replica=self.replica, key=f"{req.key}.{i}")

    @rpc
    async def configure(self, knobs: Knobs) -> Knobs:
        self.knobs = knobs
        return knobs

    @rpc(idempotent=True)
    async def stats(self, req: Empty) -> Stats:
        return Stats(replica=self.replica, calls=self.calls, failed=self.failed)

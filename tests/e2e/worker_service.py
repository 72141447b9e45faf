"""A service for the worker tests: each reply names the process that served it."""

from __future__ import annotations

import asyncio
import os

import msgspec

from h2mesh import Service, rpc


class PidRequest(msgspec.Struct):
    delay: float = 0.0


class PidReply(msgspec.Struct):
    pid: int


class Workers(Service, name="test.v1.Workers"):
    @rpc
    async def pid(self, req: PidRequest) -> PidReply:
        if req.delay:
            await asyncio.sleep(req.delay)
        return PidReply(pid=os.getpid())

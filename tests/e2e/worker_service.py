"""A service for the worker tests: each reply names the process that served it."""

from __future__ import annotations

import asyncio
import os

import msgspec

from h2mesh import Channel, Service, rpc


class PidRequest(msgspec.Struct):
    delay: float = 0.0


class PidReply(msgspec.Struct):
    pid: int


class RelayRequest(msgspec.Struct):
    target: str  # a server to ask for its Pid, through a channel with metrics on


class Workers(Service, name="test.v1.Workers"):
    @rpc
    async def pid(self, req: PidRequest) -> PidReply:
        if req.delay:
            await asyncio.sleep(req.delay)
        return PidReply(pid=os.getpid())

    @rpc
    async def relay(self, req: RelayRequest) -> PidReply:
        channel = _channels.get(req.target)
        if channel is None:
            channel = _channels[req.target] = Channel(req.target, metrics=True)
        return await channel.stub(Workers).pid(PidRequest(), timeout=10)


_channels: dict[str, Channel] = {}

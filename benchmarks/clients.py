"""The benchmark clients and workloads; one process runs every workload for one system.

``python -m benchmarks.clients SPEC_JSON`` where the spec names the client, the port, the
server's pid (for RSS) and the workloads with their counts. Each finished workload is
printed to stdout as one JSON line; progress goes to stderr.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import resource
import ssl
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

SERVICE = "bench.v1.Bench"
SMALL_NAME = "x" * 36  # a ~40-byte message on every wire format


@functools.cache
def _data(size: int) -> bytes:
    """The payload of a ``size``-byte call: made once, so that no client spends its time
    building 256 KiB of request per call (every system's client takes it the same way)."""
    return b"x" * size


@functools.cache
def _json_body(size: int) -> bytes:
    return json.dumps({"data": "x" * size}).encode()


class NotSupported(Exception):
    """The system has no way to run this workload."""


# -- one client per system ---------------------------------------------------------------------
class Client:
    """What a workload needs from a system's client. One instance = one connection."""

    async def open(self) -> None:
        """Open the connection (subclasses may connect lazily on the first call)."""

    async def close(self) -> None:
        raise NotImplementedError

    async def unary(self, size: int) -> None:
        """One Echo call with a small message (size 0) or ``size`` bytes of data."""
        raise NotImplementedError

    async def server_stream(self, count: int) -> int:
        raise NotImplementedError

    async def client_stream(self, count: int) -> None:
        raise NotImplementedError

    async def bidi(self, rounds: int) -> None:
        raise NotImplementedError


def _lockstep(
    rounds: int, make: Callable[[], Any]
) -> tuple[AsyncIterator[Any], Callable[[], None]]:
    """A request iterator that sends the next message only after ``ack()``.

    One future per round, not an ``asyncio.Queue``: the queue's Python methods cost the
    client about 12,000 instructions per round trip (callgrind), as much as some of the
    systems measured, and every system's client takes this same iterator."""
    loop = asyncio.get_running_loop()
    acked = 0  # acks not yet waited for
    waiter: asyncio.Future[None] | None = None

    async def requests() -> AsyncIterator[Any]:
        nonlocal acked, waiter
        for _ in range(rounds):
            yield make()
            if not acked:
                waiter = loop.create_future()
                await waiter
                waiter = None
            acked -= 1

    def ack() -> None:
        nonlocal acked
        acked += 1
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    return requests(), ack


async def _n_times(count: int, message: Any) -> AsyncIterator[Any]:
    for _ in range(count):
        yield message


class H2meshClient(Client):
    """``h2mesh.Channel``; codec ``proto`` calls the service typed with the generated ``Msg``.

    ``balanced``: each call is balanced over the endpoint set (of one endpoint) and has a
    5 s deadline, as calls to a discovered service do (otherwise one fixed endpoint, no
    deadline: the channel's shortest path)."""

    def __init__(
        self, port: int, codec: str, protocol: str = "connect", *, balanced: bool = False
    ) -> None:
        from h2mesh import Channel, Service

        service: type[Service]
        if codec == "proto":
            from .proto_service import Msg, ProtoBench

            service, self.msg = ProtoBench, Msg
        else:
            from .servers import Bench, Msg

            service, self.msg = Bench, Msg
        self.channel = Channel(
            f"{'static' if balanced else 'http'}://127.0.0.1:{port}",
            protocol=protocol,
            codec=codec,
            max_message_size=8 << 20,
            # (A concurrency cap is a per-endpoint policy: the balancer is asked per call.)
            max_concurrency=1 << 20 if balanced else None,
            timeout=5.0 if balanced else None,
        )
        self.stub: Any = self.channel.stub(service)
        self.small = self.msg(name=SMALL_NAME)

    async def open(self) -> None:
        await self.stub.echo(self.small)

    async def close(self) -> None:
        await self.channel.close()

    async def unary(self, size: int) -> None:
        req = self.msg(data=_data(size)) if size else self.small
        await self.stub.echo(req)

    async def server_stream(self, count: int) -> int:
        n = 0
        async for _ in self.stub.stream(self.msg(name="s", count=count)):
            n += 1
        return n

    async def client_stream(self, count: int) -> None:
        reply = await self.stub.collect(_n_times(count, self.small))
        assert reply.count == count, reply

    async def bidi(self, rounds: int) -> None:
        reqs, ack = _lockstep(rounds, lambda: self.small)
        async for _ in self.stub.ping_pong(reqs):
            ack()


class GrpcioClient(Client):
    def __init__(self, port: int) -> None:
        import grpc

        from . import _proto

        pb = self.pb = _proto.load()
        self.channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.use_local_subchannel_pool", 1),  # one connection per client
                ("grpc.max_receive_message_length", 8 << 20),
                ("grpc.max_send_message_length", 8 << 20),
            ],
        )
        codec = {
            "request_serializer": pb.Msg.SerializeToString,
            "response_deserializer": pb.Msg.FromString,
        }
        self.echo = self.channel.unary_unary(f"/{SERVICE}/Echo", **codec)
        self.stream = self.channel.unary_stream(f"/{SERVICE}/Stream", **codec)
        self.collect = self.channel.stream_unary(f"/{SERVICE}/Collect", **codec)
        self.ping_pong = self.channel.stream_stream(f"/{SERVICE}/PingPong", **codec)
        self.small = pb.Msg(name=SMALL_NAME)

    async def open(self) -> None:
        await self.echo(self.small)

    async def close(self) -> None:
        await self.channel.close()

    async def unary(self, size: int) -> None:
        await self.echo(self.pb.Msg(data=_data(size)) if size else self.small)

    async def server_stream(self, count: int) -> int:
        n = 0
        async for _ in self.stream(self.pb.Msg(name="s", count=count)):
            n += 1
        return n

    async def client_stream(self, count: int) -> None:
        reply = await self.collect(_n_times(count, self.small))
        assert reply.count == count, reply

    async def bidi(self, rounds: int) -> None:
        reqs, ack = _lockstep(rounds, lambda: self.small)
        async for _ in self.ping_pong(reqs):
            ack()


class GrpclibClient(Client):
    def __init__(self, port: int) -> None:
        from grpclib.client import (
            Channel,
            StreamStreamMethod,
            StreamUnaryMethod,
            UnaryStreamMethod,
            UnaryUnaryMethod,
        )

        from . import _proto

        pb = self.pb = _proto.load()
        self.channel = Channel("127.0.0.1", port)
        self.echo = UnaryUnaryMethod(self.channel, f"/{SERVICE}/Echo", pb.Msg, pb.Msg)
        self.stream = UnaryStreamMethod(self.channel, f"/{SERVICE}/Stream", pb.Msg, pb.Msg)
        self.collect = StreamUnaryMethod(self.channel, f"/{SERVICE}/Collect", pb.Msg, pb.Msg)
        self.ping_pong = StreamStreamMethod(self.channel, f"/{SERVICE}/PingPong", pb.Msg, pb.Msg)
        self.small = pb.Msg(name=SMALL_NAME)

    async def open(self) -> None:
        await self.echo(self.small)

    async def close(self) -> None:
        self.channel.close()

    async def unary(self, size: int) -> None:
        await self.echo(self.pb.Msg(data=_data(size)) if size else self.small)

    async def server_stream(self, count: int) -> int:
        n = 0
        async with self.stream.open() as stream:
            await stream.send_message(self.pb.Msg(name="s", count=count), end=True)
            async for _ in stream:
                n += 1
        return n

    async def client_stream(self, count: int) -> None:
        async with self.collect.open() as stream:
            for _ in range(count):
                await stream.send_message(self.small)
            await stream.end()
            reply = await stream.recv_message()
        assert reply is not None and reply.count == count, reply

    async def bidi(self, rounds: int) -> None:
        async with self.ping_pong.open() as stream:
            for _ in range(rounds):
                await stream.send_message(self.small)
                await stream.recv_message()
            await stream.end()
            async for _ in stream:
                pass


class ConnectClient(Client):
    """connect-python's client on a pyqwest HTTP/2 (prior knowledge) transport."""

    def __init__(self, port: int) -> None:
        from connectrpc.client import ConnectClient as Connect
        from connectrpc.method import IdempotencyLevel, MethodInfo
        from pyqwest import Client as HTTPClient
        from pyqwest import HTTPTransport, HTTPVersion

        from . import _proto

        pb = self.pb = _proto.load()
        self.info = {
            name: MethodInfo(
                name=name,
                service_name=SERVICE,
                input=pb.Msg,
                output=pb.Msg,
                idempotency_level=IdempotencyLevel.UNKNOWN,
            )
            for name in ("Echo", "Stream", "Collect", "PingPong")
        }
        self.transport = HTTPTransport(http_version=HTTPVersion.HTTP2)
        self.client = Connect(
            f"http://127.0.0.1:{port}",
            http_client=HTTPClient(self.transport),
            send_compression=None,
            accept_compression=(),
            read_max_bytes=8 << 20,
        )
        self.small = pb.Msg(name=SMALL_NAME)

    async def open(self) -> None:
        await self.unary(0)

    async def close(self) -> None:
        await self.client.close()
        closer = getattr(self.transport, "aclose", None) or getattr(self.transport, "close", None)
        if closer is not None:
            result = closer()
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                await result

    async def unary(self, size: int) -> None:
        req = self.pb.Msg(data=_data(size)) if size else self.small
        await self.client.execute_unary(request=req, method=self.info["Echo"])

    async def server_stream(self, count: int) -> int:
        n = 0
        req = self.pb.Msg(name="s", count=count)
        async for _ in self.client.execute_server_stream(request=req, method=self.info["Stream"]):
            n += 1
        return n

    async def client_stream(self, count: int) -> None:
        reply = await self.client.execute_client_stream(
            request=_n_times(count, self.small), method=self.info["Collect"]
        )
        assert reply.count == count, reply

    async def bidi(self, rounds: int) -> None:
        reqs, ack = _lockstep(rounds, lambda: self.small)
        async for _ in self.client.execute_bidi_stream(request=reqs, method=self.info["PingPong"]):
            ack()


_HTTPX_SSL: ssl.SSLContext | None = None


class FastapiClient(Client):
    """httpx over HTTP/2 (prior knowledge) to FastAPI: JSON bodies, NDJSON streams."""

    def __init__(self, port: int) -> None:
        import httpx

        global _HTTPX_SSL
        if _HTTPX_SSL is None:  # cleartext only, but httpx builds a context per client
            _HTTPX_SSL = ssl.create_default_context()
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            http1=False,
            http2=True,
            timeout=60.0,
            verify=_HTTPX_SSL,
        )
        self.headers = {"content-type": "application/json"}
        self.small = json.dumps({"name": SMALL_NAME}).encode()

    async def open(self) -> None:
        await self.unary(0)

    async def close(self) -> None:
        await self.client.aclose()

    async def unary(self, size: int) -> None:
        body = _json_body(size) if size else self.small
        resp = await self.client.post(f"/{SERVICE}/Echo", content=body, headers=self.headers)
        resp.raise_for_status()
        resp.json()

    async def server_stream(self, count: int) -> int:
        n = 0
        body = json.dumps({"name": "s", "count": count}).encode()
        async with self.client.stream(
            "POST", f"/{SERVICE}/Stream", content=body, headers=self.headers
        ) as resp:
            resp.raise_for_status()
            async for line in resp.aiter_lines():
                if line:
                    json.loads(line)
                    n += 1
        return n

    async def client_stream(self, count: int) -> None:
        line = self.small + b"\n"
        resp = await self.client.post(f"/{SERVICE}/Collect", content=_n_times(count, line))
        resp.raise_for_status()
        assert resp.json()["count"] == count, resp.text

    async def bidi(self, rounds: int) -> None:
        raise NotSupported("httpx sends the whole request body before reading the response")


class _BareProtocol(asyncio.Protocol):
    """ngh2 driven from uvloop's callbacks: one future per stream, one write per loop turn."""

    def __init__(self) -> None:
        import ngh2

        self.ngh2 = ngh2
        self.engine = ngh2.Connection(ngh2.Role.CLIENT)
        # stream -> [future, body bytes so far, resolve on each DATA frame]
        self.waiting: dict[int, list[Any]] = {}
        self.ended: set[int] = set()
        self.transport: asyncio.Transport | None = None
        self.flush_pending = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        setting = self.ngh2.Setting  # (h2mesh's default windows, as the bare server's)
        self.engine.initiate_connection({setting.INITIAL_WINDOW_SIZE: 1 << 20})
        self.engine.set_local_window_size(16 << 20)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for fut, _, _ in self.waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))

    def flush(self) -> None:
        self.flush_pending = False
        engine = self.engine
        while engine.want_write and self.transport is not None:
            out = engine.data_to_send(65_536)  # (as h2mesh: bigger buffers fault their pages)
            if not out:
                break
            self.transport.write(out)

    def schedule_flush(self) -> None:
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self.flush)

    def data_received(self, data: bytes) -> None:
        ngh2, engine, waiting = self.ngh2, self.engine, self.waiting
        engine.receive_data(data)
        for ev in engine.events():
            kind = type(ev)
            if kind is ngh2.DataReceived:
                sid = ev.stream_id
                entry = waiting.get(sid)
                if entry is not None:
                    entry[1] += len(ev.data)
                    if ev.end_stream or entry[2]:  # the whole body, or (bidi) each frame
                        del waiting[sid]
                        entry[0].set_result(entry[1])
            elif kind is ngh2.StreamClosed:
                entry = waiting.pop(ev.stream_id, None)
                if entry is not None:
                    entry[0].set_exception(ConnectionError(f"stream closed: {ev.error_code}"))
        self.flush()

    def response(self, sid: int, each_frame: bool = False) -> asyncio.Future[int]:
        """The size of stream ``sid``'s response body (``each_frame``: of its next DATA)."""
        fut: asyncio.Future[int] = self.loop.create_future()
        self.waiting[sid] = [fut, 0, each_frame]
        self.schedule_flush()
        return fut


class BareClient(Client):
    """The Python ceiling of a client: ngh2 + uvloop with no framework, against the bare
    server (``benchmarks.bare_ngh2``), which echoes each request's body (a unary call: one
    response DATA awaited) and, on the bidi path, each DATA frame as it arrives."""

    HEAD = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1"),
        (b":path", f"/{SERVICE}/Echo".encode()),
        (b"content-type", b"application/json"),
    ]
    BIDI_HEAD = [*HEAD[:3], (b":path", f"/{SERVICE}/PingPong".encode()), HEAD[4]]
    SMALL = json.dumps({"name": SMALL_NAME}).encode()

    def __init__(self, port: int) -> None:
        self.port = port
        self.proto: _BareProtocol | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        _, self.proto = await loop.create_connection(_BareProtocol, "127.0.0.1", self.port)
        await self.unary(0)

    async def close(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()

    async def unary(self, size: int) -> None:
        if size:
            raise NotSupported("the ceiling's client makes small unary calls and bidi only")
        proto = self.proto
        assert proto is not None
        sid = proto.engine.send_request(self.HEAD)
        proto.engine.send_data(sid, self.SMALL, end_stream=True)
        got = await proto.response(sid)
        assert got == len(self.SMALL), got

    async def server_stream(self, count: int) -> int:
        raise NotSupported("the bare server only echoes")

    async def client_stream(self, count: int) -> None:
        raise NotSupported("the bare server only echoes")

    async def bidi(self, rounds: int) -> None:
        proto = self.proto
        assert proto is not None
        engine, body = proto.engine, self.SMALL
        sid = engine.send_request(self.BIDI_HEAD, end_stream=False)
        for _ in range(rounds):
            engine.send_data(sid, body)
            await proto.response(sid, each_frame=True)
        engine.end_stream(sid)
        proto.schedule_flush()


def make_client(kind: str, port: int) -> Client:
    if kind == "h2mesh-msgpack":
        return H2meshClient(port, "msgpack")
    if kind == "h2mesh-json":
        return H2meshClient(port, "json")
    if kind == "h2mesh-grpc-msgpack":
        return H2meshClient(port, "msgpack", protocol="grpc")
    if kind == "h2mesh-grpc-proto":
        return H2meshClient(port, "proto", protocol="grpc")
    if kind == "grpcio":
        return GrpcioClient(port)
    if kind == "grpclib":
        return GrpclibClient(port)
    if kind == "connectrpc":
        return ConnectClient(port)
    if kind == "fastapi":
        return FastapiClient(port)
    if kind == "bare-ngh2":
        return BareClient(port)
    raise ValueError(f"unknown client {kind!r}")


# -- server memory -------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(p) for p in f.read().split())
    except OSError:
        pass
    return kids


def _tree(pid: int) -> Iterator[int]:
    """A process and all its descendants (those still there)."""
    todo = [pid]
    while todo:
        p = todo.pop()
        yield p
        todo.extend(_children(p))


def tree_rss_kib(pid: int) -> int:
    """VmRSS of a process and all its descendants, in KiB."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def tree_minor_faults(pid: int) -> int:
    """Minor page faults so far of a process and all its descendants (``/proc/PID/stat``)."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                # Fields after the command name (which may hold spaces): minflt is the 10th.
                total += int(f.read().rpartition(")")[2].split()[7])
        except (OSError, IndexError, ValueError):
            continue
    return total


# -- workloads -----------------------------------------------------------------------------------
async def _calls_in_flight(client: Client, calls: int, in_flight: int, size: int) -> list[float]:
    """Make ``calls`` Echo calls, ``in_flight`` at a time; return each call's latency (s)."""
    latencies: list[float] = []
    remaining = calls
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = clock()
            await client.unary(size)
            latencies.append(clock() - t0)

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return latencies


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def w_unary(client: Client, p: dict[str, Any], ctx: dict[str, Any]) -> dict[str, float]:
    t0 = time.perf_counter()
    lat = await _calls_in_flight(client, p["calls"], p["in_flight"], 0)
    elapsed = time.perf_counter() - t0
    lat.sort()
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": _percentile(lat, 0.50) * 1e3,
        "p99_ms": _percentile(lat, 0.99) * 1e3,
    }


async def w_payload(client: Client, p: dict[str, Any], ctx: dict[str, Any]) -> dict[str, float]:
    faults = tree_minor_faults(ctx["server_pid"])
    t0 = time.perf_counter()
    lat = await _calls_in_flight(client, p["calls"], p["in_flight"], p["size"])
    elapsed = time.perf_counter() - t0
    faults = tree_minor_faults(ctx["server_pid"]) - faults
    # Payload bytes carried per second, both directions (the request is echoed back), and
    # the server's page faults per call (fresh pages for each large buffer cost kernel time).
    return {
        "mb_per_s": 2 * p["size"] * len(lat) / elapsed / 1e6,
        "rps": len(lat) / elapsed,
        "server_faults_per_call": faults / len(lat),
    }


async def w_server_stream(
    client: Client, p: dict[str, Any], ctx: dict[str, Any]
) -> dict[str, float]:
    t0 = time.perf_counter()
    got = await asyncio.gather(*(client.server_stream(p["messages"]) for _ in range(p["streams"])))
    elapsed = time.perf_counter() - t0
    assert all(n == p["messages"] for n in got), got
    return {"msgs_per_s": sum(got) / elapsed}


async def w_client_stream(
    client: Client, p: dict[str, Any], ctx: dict[str, Any]
) -> dict[str, float]:
    t0 = time.perf_counter()
    await client.client_stream(p["messages"])
    return {"msgs_per_s": p["messages"] / (time.perf_counter() - t0)}


async def w_bidi(client: Client, p: dict[str, Any], ctx: dict[str, Any]) -> dict[str, float]:
    t0 = time.perf_counter()
    await client.bidi(p["rounds"])
    return {"round_trips_per_s": p["rounds"] / (time.perf_counter() - t0)}


async def w_many_conns(client: Client, p: dict[str, Any], ctx: dict[str, Any]) -> dict[str, float]:
    """``connections`` clients, each its own connection: RSS idle-open, then calls on all."""
    server_pid, kind, port = ctx["server_pid"], ctx["client"], ctx["port"]
    rss_before = tree_rss_kib(server_pid)
    clients = [make_client(kind, port) for _ in range(p["connections"])]
    opening = asyncio.Semaphore(64)  # stay under the listen backlog

    async def open_one(c: Client) -> None:
        async with opening:
            await c.open()

    try:
        await asyncio.gather(*(open_one(c) for c in clients))
        await asyncio.sleep(0.5)  # let the server settle with every connection idle-open
        rss_open = tree_rss_kib(server_pid)
        t0 = time.perf_counter()

        async def calls(c: Client) -> None:
            for _ in range(p["calls_per_connection"]):
                await c.unary(0)

        await asyncio.gather(*(calls(c) for c in clients))
        elapsed = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    total = p["connections"] * p["calls_per_connection"]
    return {
        "rps": total / elapsed,
        "server_rss_before_mib": rss_before / 1024,
        "server_rss_open_mib": rss_open / 1024,
        "rss_per_conn_kib": (rss_open - rss_before) / p["connections"],
    }


WORKLOADS: dict[
    str, Callable[[Client, dict[str, Any], dict[str, Any]], Awaitable[dict[str, float]]]
] = {
    "unary": w_unary,
    "server_stream": w_server_stream,
    "client_stream": w_client_stream,
    "bidi": w_bidi,
    "payload_1k": w_payload,
    "payload_256k": w_payload,
    "many_conns": w_many_conns,
}


def _shrink(params: dict[str, Any]) -> dict[str, Any]:
    """Warm-up counts: a tenth of a repetition's (at least 1)."""
    keep = {"in_flight", "size", "streams", "connections"}
    return {
        k: v if k in keep or not isinstance(v, int) else max(1, v // 10) for k, v in params.items()
    }


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run_spec(spec: dict[str, Any]) -> None:
    name = spec["system"]
    client = make_client(spec["client"], spec["port"])
    await client.open()
    try:
        for wl in spec["workloads"]:
            func = WORKLOADS[wl["name"]]
            params, limit = wl["params"], wl["time_limit"]
            result: dict[str, Any] = {"workload": wl["name"], "params": params}
            started = time.monotonic()
            try:
                if wl["name"] == "many_conns":
                    # One round: opening thousands of connections is its own warm-up.
                    n = params["connections"]
                    _progress(f"  {name:>19} {wl['name']:<14} {n} connections")
                    reps = [await asyncio.wait_for(func(client, params, spec), limit)]
                else:
                    _progress(f"  {name:>19} {wl['name']:<14} warm-up")
                    await asyncio.wait_for(func(client, _shrink(params), spec), limit)
                    reps = []
                    for i in range(spec["repetitions"]):
                        _progress(
                            f"  {name:>19} {wl['name']:<14} rep {i + 1}/{spec['repetitions']}"
                        )
                        left = limit - (time.monotonic() - started)
                        reps.append(
                            await asyncio.wait_for(func(client, params, spec), max(left, 1.0))
                        )
                result.update(status="ok", reps=reps)
            except NotSupported as exc:
                result.update(status=f"n/a: {exc}")
            except TimeoutError:
                result.update(status=f"error: over the {limit:.0f} s time limit")
            except Exception as exc:  # a failing peer is a result, not a crash of the run
                result.update(status=f"error: {type(exc).__name__}: {exc}"[:300])
            print(json.dumps(result), flush=True)
    finally:
        await client.close()


def _summary(reps: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        key: {
            "median": statistics.median(r[key] for r in reps),
            "min": min(r[key] for r in reps),
            "max": max(r[key] for r in reps),
        }
        for key in reps[0]
    }


summarize = _summary


def main() -> None:
    spec = json.loads(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if spec["client"] == "grpcio":
        asyncio.run(run_spec(spec))  # grpc.aio on plain asyncio
    else:
        import uvloop

        uvloop.run(run_spec(spec))


if __name__ == "__main__":
    main()

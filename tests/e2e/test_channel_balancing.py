"""The balancing Channel over several in-process servers on real sockets."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import pytest

from h2mesh import Channel, Code, Context, RpcError, Server, Service, rpc
from h2mesh.balancing import FailurePercentageEjection, OutlierDetection
from h2mesh.resilience import HedgingPolicy, RetryPolicy

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class Ping(msgspec.Struct):
    n: int = 0


class Pong(msgspec.Struct):
    replica: str


class Replica(Service, name="test.v1.Replica"):
    """Answers with its name; can be made slow or failing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.delay = 0.0
        self.fail = False
        self.calls = 0
        self.in_flight = 0

    @rpc(idempotent=True)
    async def who(self, req: Ping, ctx: Context) -> Pong:
        self.calls += 1
        self.in_flight += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail:
                raise RpcError(Code.UNAVAILABLE, f"{self.name} is failing")
            return Pong(replica=self.name)
        finally:
            self.in_flight -= 1

    @rpc
    async def once(self, req: Ping, ctx: Context) -> Pong:
        """Not idempotent: never retried."""
        self.calls += 1
        if self.fail:
            raise RpcError(Code.UNAVAILABLE, f"{self.name} is failing")
        return Pong(replica=self.name)


async def _fleet(n: int) -> tuple[list[Replica], list[Server], str]:
    replicas = [Replica(f"r{i}") for i in range(n)]
    servers = []
    for replica in replicas:
        server = Server([replica])
        await server.start()
        servers.append(server)
    target = "static://" + ",".join(f"127.0.0.1:{s.port}" for s in servers)
    return replicas, servers, target


async def _stop(servers: list[Server]) -> None:
    await asyncio.gather(*(s.stop(0.5) for s in servers))


def test_round_robin_spreads_calls_evenly(run: Run) -> None:
    async def main() -> None:
        _replicas, servers, target = await _fleet(3)
        try:
            async with Channel(target, policy="round_robin") as ch:
                stub = ch.stub(Replica)
                seen = collections.Counter([(await stub.who(Ping())).replica for _ in range(90)])
            assert seen == {"r0": 30, "r1": 30, "r2": 30}
        finally:
            await _stop(servers)

    run(main())


def test_a_dead_endpoint_costs_no_call(run: Run) -> None:
    """Connection refused never reached a server: the call goes elsewhere, transparently."""

    async def main() -> None:
        _replicas, servers, target = await _fleet(3)
        await servers[1].stop(0.1)  # listening socket gone: connections are refused
        try:
            async with Channel(target, policy="round_robin") as ch:
                stub = ch.stub(Replica)
                names = [(await stub.once(Ping())).replica for _ in range(30)]
            assert "r1" not in names and len(names) == 30
        finally:
            await _stop([servers[0], servers[2]])

    run(main())


def test_an_endpoint_that_accepts_but_never_answers_costs_no_call(run: Run) -> None:
    """A listening socket nobody serves (the process hangs, or is being killed) still
    completes TCP handshakes into its backlog. Calls must not be sent down such a
    connection: it is a failed connection attempt, and the calls go to the others."""

    async def main() -> None:
        _replicas, servers, target = await _fleet(2)
        hole = socket.create_server(("127.0.0.1", 0), backlog=64)  # never accept()ed
        target += f",127.0.0.1:{hole.getsockname()[1]}"
        try:
            async with Channel(target, policy="round_robin", connect_timeout=0.5) as ch:
                stub = ch.stub(Replica)
                names = await asyncio.gather(*(stub.once(Ping(), timeout=4.0) for _ in range(30)))
            assert sorted({pong.replica for pong in names}) == ["r0", "r1"]
        finally:
            hole.close()
            await _stop(servers)

    run(main())


def test_retry_policy_retries_idempotent_methods_only(run: Run) -> None:
    async def main() -> None:
        replicas, servers, target = await _fleet(2)
        replicas[0].fail = True
        retry = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
        try:
            async with Channel(target, policy="round_robin", retry=retry) as ch:
                stub = ch.stub(Replica)
                replies = [(await stub.who(Ping(), timeout=2.0)).replica for _ in range(10)]
                assert replies == ["r1"] * 10
                failures = 0
                for _ in range(10):
                    try:
                        await stub.once(Ping())
                    except RpcError as exc:
                        assert exc.code is Code.UNAVAILABLE
                        failures += 1
                assert failures == 5  # round robin: every other call hits r0, never retried
        finally:
            await _stop(servers)

    run(main())


def test_hedging_takes_the_fast_replica(run: Run) -> None:
    async def main() -> None:
        replicas, servers, target = await _fleet(2)
        replicas[0].delay = 1.0
        hedging = HedgingPolicy(max_attempts=2, hedging_delay=0.05)
        try:
            async with Channel(target, policy="round_robin", hedging=hedging) as ch:
                stub = ch.stub(Replica)
                started = time.monotonic()
                replies = [(await stub.who(Ping(), timeout=3.0)).replica for _ in range(4)]
                elapsed = time.monotonic() - started
            assert replies == ["r1"] * 4
            assert elapsed < 1.0  # never waited for the slow replica
            await asyncio.sleep(0.05)
            assert replicas[0].in_flight == 0  # the losers were cancelled on the server too
        finally:
            await _stop(servers)

    run(main())


def test_concurrency_limit_fails_fast(run: Run) -> None:
    async def main() -> None:
        replicas, servers, target = await _fleet(1)
        replicas[0].delay = 0.3
        try:
            async with Channel(target, max_concurrency=2) as ch:
                stub = ch.stub(Replica)
                calls = [asyncio.ensure_future(stub.who(Ping())) for _ in range(2)]
                await asyncio.sleep(0.05)
                started = time.monotonic()
                with pytest.raises(RpcError) as excinfo:
                    await stub.who(Ping())
                assert time.monotonic() - started < 0.1
                assert excinfo.value.code is Code.UNAVAILABLE
                assert "concurrency limit" in excinfo.value.message
                assert [r.replica for r in await asyncio.gather(*calls)] == ["r0", "r0"]
        finally:
            await _stop(servers)

    run(main())


def test_ring_hash_keeps_a_key_on_one_replica(run: Run) -> None:
    async def main() -> None:
        _replicas, servers, target = await _fleet(4)
        try:
            async with Channel(target, policy="ring_hash") as ch:
                stub = ch.stub(Replica)
                for user in ("alice", "bob", "carol", "dave", "erin"):
                    owners = {(await stub.who(Ping(), key=user)).replica for _ in range(5)}
                    assert len(owners) == 1
        finally:
            await _stop(servers)

    run(main())


def test_failing_replica_is_ejected(run: Run) -> None:
    async def main() -> None:
        replicas, servers, target = await _fleet(3)
        replicas[2].fail = True
        detection = OutlierDetection(
            interval=0.1,
            base_ejection_time=5.0,
            max_ejection_percent=50,
            failure_percentage=FailurePercentageEjection(
                threshold=50, minimum_hosts=3, request_volume=5
            ),
        )
        try:
            async with Channel(target, outlier_detection=detection) as ch:
                stub = ch.stub(Replica)
                for _ in range(30):
                    with contextlib.suppress(RpcError):
                        await stub.once(Ping())
                await asyncio.sleep(0.25)  # an interval passes: r2 is judged
                before = replicas[2].calls
                names = [(await stub.once(Ping())).replica for _ in range(20)]
                assert "r2" not in names
                assert replicas[2].calls == before
        finally:
            await _stop(servers)

    run(main())


def test_active_health_checks_route_around_not_serving(run: Run) -> None:
    async def main() -> None:
        _replicas, servers, target = await _fleet(3)
        try:
            async with Channel(target, health_check_interval=0.1) as ch:
                stub = ch.stub(Replica)
                assert {(await stub.once(Ping())).replica for _ in range(9)} == {"r0", "r1", "r2"}
                servers[1].health.set("", "NOT_SERVING")
                await asyncio.sleep(0.35)
                names = {(await stub.once(Ping())).replica for _ in range(12)}
                assert names == {"r0", "r2"}
                servers[1].health.set("", "SERVING")
                await asyncio.sleep(0.35)
                names = {(await stub.once(Ping())).replica for _ in range(12)}
                assert names == {"r0", "r1", "r2"}
        finally:
            await _stop(servers)

    run(main())

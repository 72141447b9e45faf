"""The balancing client over real replica processes found in the embedded registry.

Every replica is ``h2mesh serve tests.e2e.mesh_service:Mesh --register mesh.v1.Mesh`` and
answers with its identity, so the tests see where each call went. Scenarios: a replica
crashing during 10,000 retried calls, a slow replica under ``least_request``, ring-hash
key movement, outlier ejection and readmission, graceful shutdown under load.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from h2mesh import Channel, Code, ResponseMetadata, RpcError
from h2mesh.balancing import FailurePercentageEjection, OutlierDetection
from h2mesh.resilience import RetryPolicy

from .mesh_service import Knobs, Mesh, WorkReply, WorkRequest
from .replica import Replica, start_replicas

Run = Callable[[Coroutine[Any, Any, Any]], Any]

TARGET = "registry://mesh.v1.Mesh"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "registry.db"
    monkeypatch.setenv("H2MESH_REGISTRY", str(path))
    return path


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(calls: int, concurrency: int, call: Callable[[int], Awaitable[None]]) -> None:
    """Make ``calls`` calls from ``concurrency`` workers; ``call(i)`` does the i-th."""
    numbers = iter(range(calls))

    async def worker() -> None:
        for i in numbers:
            await call(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def configure(replica: Replica, **knobs: float) -> None:
    async with Channel(replica.url) as ch:
        await ch.stub(Mesh).configure(Knobs(**knobs), timeout=5)


# -- (1) a crash during 10,000 idempotent calls ---------------------------------------------
def test_crash_during_10000_retried_calls_loses_nothing(
    run: Run, registry: Path, tmp_path: Path, replicas: list[Replica]
) -> None:
    replicas += start_replicas(3, tmp_path, registry, ttl=1.5)
    victim = replicas[0]
    served: Counter[str] = Counter()
    late: Counter[str] = Counter()  # calls started well after the kill
    failures: list[RpcError] = []

    async def main() -> None:
        retry = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
        async with Channel(TARGET, retry=retry, timeout=5.0) as ch:
            stub = ch.stub(Mesh)

            async def call(i: int) -> None:
                if i == 2000:
                    victim.kill()  # SIGKILL: no deregistration, no GOAWAY
                try:
                    reply = await stub.work(WorkRequest(key=str(i)))
                except RpcError as exc:
                    failures.append(exc)
                    return
                served[reply.replica] += 1
                if i >= 3000:
                    late[reply.replica] += 1

            await drive(10_000, 64, call)

    run(main())
    assert failures == [], f"{len(failures)} failed calls, first: {failures[0]!r}"
    assert sum(served.values()) == 10_000
    assert set(served) == {str(r.pid) for r in replicas}, served
    assert set(late) == {str(r.pid) for r in replicas[1:]}, late
    assert victim.wait() != 0


# -- (1b) a crash under a default Channel: only the calls in flight may fail ---------------
@pytest.mark.parametrize(
    ("key_size", "calls", "kill_at"),
    [(0, 3000, 1000), (200_000, 600, 200)],
    ids=["small-calls", "mid-write"],
)
def test_calls_started_after_a_replica_died_all_succeed(
    run: Run,
    registry: Path,
    tmp_path: Path,
    replicas: list[Replica],
    key_size: int,
    calls: int,
    kill_at: int,
) -> None:
    """SIGKILL one of 3 replicas under 16 concurrent callers on a default ``Channel`` (no
    retry policy). The calls in flight on it may fail; every call started once it is
    dead and the client has seen it (the first failure came back) must succeed, on the
    others. ``mid-write``: 200 KB requests and replies, so that its connections are
    busy writing when it dies."""
    replicas += start_replicas(3, tmp_path, registry, ttl=1.5)
    victim = replicas[0]
    key = "k" * key_size
    outcomes: list[tuple[float, str | None, RpcError | None]] = []  # start, replica, error
    seen: dict[str, float] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        died = asyncio.Event()

        def reap() -> None:  # the kernel has closed the victim's sockets once it is reaped
            victim.wait()
            loop.call_soon_threadsafe(died.set)

        async def watch() -> None:
            await died.wait()
            seen["dead"] = time.monotonic()

        async with Channel(TARGET, timeout=5.0) as ch:
            stub = ch.stub(Mesh)
            watcher = asyncio.ensure_future(watch())

            async def call(i: int) -> None:
                if i == kill_at:
                    victim.kill()
                    threading.Thread(target=reap, daemon=True).start()
                # time.monotonic(), not loop.time(): uvloop's clock moves once per loop
                # iteration (in milliseconds), so a call sent in the same iteration just
                # before the news arrived would look as if it started after it.
                started = time.monotonic()
                try:
                    reply = await stub.work(WorkRequest(key=key))
                except RpcError as exc:
                    seen.setdefault("first failure back", time.monotonic())
                    outcomes.append((started, None, exc))
                    return
                outcomes.append((started, reply.replica, None))

            await drive(calls, 16, call)
            await asyncio.wait_for(watcher, 10.0)

    run(main())
    known = max(seen.values())  # dead, and the client has had the news
    failed_before = [o for o in outcomes if o[2] is not None and o[0] < known]
    after = [o for o in outcomes if o[0] >= known]
    failed_after = [o for o in after if o[2] is not None]
    assert not failed_after, (
        f"{len(failed_after)} calls started after the death failed (and "
        f"{len(failed_before)} before it), first: {failed_after[0][2]!r}"
    )
    assert len(after) >= calls // 3, len(after)
    assert str(victim.pid) not in {replica for _, replica, _ in after}
    assert {replica for _, replica, _ in after} == {str(r.pid) for r in replicas[1:]}


# -- (2) least_request steers around a slow replica -----------------------------------------
def test_least_request_avoids_a_ten_times_slower_replica(
    run: Run, registry: Path, tmp_path: Path, replicas: list[Replica]
) -> None:
    replicas += start_replicas(3, tmp_path, registry)
    slow = replicas[0]
    work = 0.004

    async def phase(stub: Any, calls: int) -> tuple[Counter[str], list[float]]:
        where: Counter[str] = Counter()
        latencies: list[float] = []
        loop = asyncio.get_running_loop()

        async def call(i: int) -> None:
            t = loop.time()
            reply: WorkReply = await stub.work(WorkRequest(work=work), timeout=5)
            latencies.append(loop.time() - t)
            where[reply.replica] += 1

        await drive(calls, 6, call)
        return where, latencies

    async def main() -> tuple[Any, ...]:
        async with Channel(TARGET, policy="least_request") as ch:
            stub = ch.stub(Mesh)
            await phase(stub, 300)  # warm up: connections, EWMA
            healthy, healthy_latencies = await phase(stub, 1500)
            await configure(slow, slow=10.0)
            await phase(stub, 300)  # the client learns of the slowness from slow replies
            degraded, degraded_latencies = await phase(stub, 1500)
            return healthy, healthy_latencies, degraded, degraded_latencies

    healthy, healthy_latencies, degraded, degraded_latencies = run(main())
    assert len(healthy) == 3, healthy
    share = degraded[str(slow.pid)] / 1500
    p99_healthy = percentile(healthy_latencies, 0.99)
    p99_degraded = percentile(degraded_latencies, 0.99)
    detail = (
        f"slow replica got {share:.1%} of calls; p99 {p99_healthy * 1000:.1f} ms healthy, "
        f"{p99_degraded * 1000:.1f} ms with one slow replica; {degraded}"
    )
    # Latencies are reported, not asserted: on a shared machine they measure the load.
    assert share < 0.10, detail


# -- (3) ring_hash moves only the keys of a removed replica ----------------------------------
def test_ring_hash_moves_only_the_keys_of_a_removed_replica(
    run: Run, registry: Path, tmp_path: Path, replicas: list[Replica]
) -> None:
    replicas += start_replicas(5, tmp_path, registry)
    leaving = replicas[2]
    keys = [f"user-{i}" for i in range(400)]

    async def placement(stub: Any) -> dict[str, str]:
        out: dict[str, str] = {}

        async def call(i: int) -> None:
            key = keys[i]
            reply: WorkReply = await stub.work(WorkRequest(key=key), key=key, timeout=5)
            out[key] = reply.replica

        await drive(len(keys), 16, call)
        return out

    async def main() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        async with Channel(TARGET, policy="ring_hash") as ch:
            stub = ch.stub(Mesh)
            md = ResponseMetadata()
            reply = await stub.work(WorkRequest(key="k"), key="k", metadata=md, timeout=5)
            assert md.headers["x-replica"] == reply.replica
            before = await placement(stub)
            again = await placement(stub)
            leaving.terminate()  # deregisters, then drains
            await asyncio.to_thread(leaving.wait)
            after = await placement(stub)
            return before, again, after

    before, again, after = run(main())
    assert again == before, "the same key went to different replicas"
    assert len(set(before.values())) == 5
    gone = str(leaving.pid)
    assert gone not in after.values()
    moved = [k for k in keys if after[k] != before[k]]
    stayed_put = [k for k in moved if before[k] != gone]
    assert stayed_put == [], f"{len(stayed_put)} keys of remaining replicas moved"
    assert len(moved) <= 0.30 * len(keys), f"{len(moved)} of {len(keys)} keys moved"


# -- (4) outlier detection ejects a failing replica and readmits it -------------------------
def test_failing_replica_is_ejected_then_readmitted(
    run: Run, registry: Path, tmp_path: Path, replicas: list[Replica]
) -> None:
    replicas += start_replicas(3, tmp_path, registry, env=[{"MESH_FAIL_RATE": "0.5"}, {}, {}])
    bad = str(replicas[0].pid)
    outliers = OutlierDetection(
        interval=0.1,
        base_ejection_time=3.0,
        max_ejection_time=3.0,
        max_ejection_percent=50,
        failure_percentage=FailurePercentageEjection(
            threshold=25, minimum_hosts=3, request_volume=10
        ),
    )
    # (phase, replica that answered or "error:<message>"); the phase is "ejected" for a
    # call that started and ended while the failing replica was ejected.
    log: list[tuple[str, str]] = []
    phase = "failing"

    async def main() -> None:
        nonlocal phase
        async with Channel(TARGET, outlier_detection=outliers) as ch:
            stub = ch.stub(Mesh)
            stats = ch.balancer.stats
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()

            def ejected() -> bool:
                return stats[replicas[0].address].ejected

            async def worker() -> None:
                while not stop.is_set():
                    during = phase
                    if during == "failing" and ejected():
                        during = "ejected"
                    try:
                        reply = await stub.work(WorkRequest(work=0.001), timeout=5)
                        who = reply.replica
                    except RpcError as exc:
                        assert exc.code is Code.UNAVAILABLE, exc
                        who = f"error:{exc.message}"
                    if during == "ejected" and not ejected():
                        during = "failing"  # the ejection ended during the call
                    log.append((during, who))

            async def until(condition: Callable[[], bool], what: str) -> None:
                deadline = loop.time() + 10.0
                while not condition():
                    assert loop.time() < deadline, what
                    await asyncio.sleep(0.01)

            workers = [loop.create_task(worker()) for _ in range(8)]
            try:
                await until(ejected, "the failing replica was not ejected")
                await until(
                    lambda: sum(p == "ejected" for p, _ in log) >= 50 or not ejected(),
                    "no calls during the ejection",
                )
                await configure(replicas[0], fail_rate=0.0)
                phase = "healed"
                # Back in rotation once the ejection time is over.
                await until(
                    lambda: any(p == "healed" and who == bad for p, who in log),
                    "the healed replica was not readmitted",
                )
            finally:
                stop.set()
                await asyncio.gather(*workers)

    run(main())
    errors = [who for p, who in log if who.startswith("error:")]
    assert errors, "the failing replica never failed a call"
    assert all(bad in who for who in errors), "a healthy one failed"
    while_ejected = [who for p, who in log if p == "ejected"]
    assert len(while_ejected) >= 50, "the ejection ended before 50 calls were made"
    assert bad not in while_ejected and not any(
        who.startswith("error:") for who in while_ejected
    ), f"not ejected: {Counter(while_ejected)}"
    assert not any(who.startswith("error:") for p, who in log if p == "healed")


# -- (6) graceful shutdown under load ------------------------------------------------------
def test_graceful_shutdown_under_load_loses_no_calls(
    run: Run, registry: Path, tmp_path: Path, replicas: list[Replica]
) -> None:
    replicas += start_replicas(3, tmp_path, registry)
    leaving = replicas[1]
    served: Counter[str] = Counter()
    failures: list[RpcError] = []

    async def main() -> None:
        # No retry policy: nothing may fail, not even a call cut off by the shutdown.
        async with Channel(TARGET, policy="round_robin", timeout=10.0) as ch:
            stub = ch.stub(Mesh)

            async def call(i: int) -> None:
                if i == 600:
                    leaving.terminate()
                try:
                    reply = await stub.work(WorkRequest(work=0.02))
                except RpcError as exc:
                    failures.append(exc)
                    return
                served[reply.replica] += 1

            await drive(3000, 48, call)

    run(main())
    assert failures == [], f"{len(failures)} failed calls, first: {failures[0]!r}"
    assert sum(served.values()) == 3000
    assert leaving.wait() == 0, leaving.output()
    assert served[str(leaving.pid)] > 100

"""The metrics beyond call counts, on real sockets: message sizes, streams, bytes and calls
in flight on the server; call durations, per-endpoint picks, ejections, retries and hedges
on the client; request and response bytes in the access log, for curl over HTTP/1.1 and
HTTP/2.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from h2mesh import Channel, ClientMetrics, Server
from h2mesh.balancing import FailurePercentageEjection, OutlierDetection
from h2mesh.observability import AccessLog, CallStats, ServerObserver
from h2mesh.resilience import HedgingPolicy, RetryPolicy
from h2mesh.server._admin import start_local_admin

from .test_channel_balancing import Ping, Replica, _fleet, _stop
from .worker_service import PidReply, PidRequest, Workers

Run = Callable[[Coroutine[Any, Any, Any]], Any]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

PID = (("rpc_method", "Pid"), ("rpc_service", "test.v1.Workers"))


def parse(text: str) -> Samples:
    """Exposition text -> {(sample name, sorted labels): value}, by prometheus-client's
    own parser."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def pick(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    assert found, (name, labels, sorted({n for n, _ in samples}))
    return sum(found)


async def scrape(port: int) -> Samples:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    return parse(await asyncio.to_thread(get))


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)


# -- server ------------------------------------------------------------------------------
def test_server_counts_sizes_streams_bytes_and_calls_in_flight(run: Run) -> None:
    async def main() -> None:
        server = Server([Workers()])
        await server.start()
        admin = await start_local_admin(server, "127.0.0.1", 0)
        request = msgspec.json.encode(PidRequest())
        try:
            async with Channel(f"http://127.0.0.1:{server.port}", codec="json") as ch:
                stub = ch.stub(Workers)
                for _ in range(5):
                    await stub.pid(PidRequest())
                reply = len(msgspec.json.encode(PidReply(pid=(await stub.pid(PidRequest())).pid)))
                slow = [asyncio.ensure_future(stub.pid(PidRequest(delay=5.0))) for _ in range(3)]
                slow_request = len(msgspec.json.encode(PidRequest(delay=5.0)))

                async def three_in_flight() -> bool:
                    m = await scrape(admin.port)
                    return pick(m, "rpc_server_active_calls", rpc_method="Pid") == 3

                await until(three_in_flight, 5, "3 calls in flight")
                m = await scrape(admin.port)
                assert pick(m, "rpc_server_active_calls", rpc_method="Relay") == 0
                assert pick(m, "h2mesh_server_streams_active") == 3
                assert pick(m, "h2mesh_server_connections_open") == 1
                ok = {"rpc_response_status_code": "OK", **dict(PID)}
                assert pick(m, "rpc_server_request_size_bytes_count", **ok) == 6
                # JSON bodies on the wire: their sizes exactly, in the right buckets.
                assert pick(m, "rpc_server_request_size_bytes_sum", **ok) == 6 * len(request)
                assert pick(m, "rpc_server_response_size_bytes_sum", **ok) == 6 * reply
                assert pick(m, "rpc_server_request_size_bytes_bucket", le="64.0", **ok) == 6
                assert pick(m, "rpc_server_request_size_bytes_bucket", le="+Inf", **ok) == 6
                assert pick(m, "h2mesh_server_streams_total") == 6
                received = pick(m, "h2mesh_server_received_bytes_total")
                assert received > 6 * len(request) + 3 * slow_request
                assert pick(m, "h2mesh_server_sent_bytes_total") > 6 * reply
                for task in slow:
                    task.cancel()
                await asyncio.gather(*slow, return_exceptions=True)

                async def none_in_flight() -> bool:
                    m = await scrape(admin.port)
                    return pick(m, "rpc_server_active_calls", rpc_method="Pid") == 0

                await until(none_in_flight, 5, "the cancelled calls to end")
            m = await scrape(admin.port)
            assert pick(m, "h2mesh_server_connections_open") == 0
            # The connection's bytes are kept once it has closed.
            assert pick(m, "h2mesh_server_received_bytes_total") >= received
            cancelled = pick(
                m,
                "rpc_server_call_duration_seconds_count",
                rpc_response_status_code="CANCELED",
                **dict(PID),
            )
            assert cancelled == 3
        finally:
            await admin.close()
            await server.stop(1.0)

    run(main())


# -- client ------------------------------------------------------------------------------
def test_client_counts_calls_picks_retries_and_ejections(run: Run) -> None:
    async def main() -> None:
        replicas, servers, target = await _fleet(3)
        replicas[2].fail = True
        metrics = ClientMetrics()
        detection = OutlierDetection(
            interval=0.1,
            base_ejection_time=30.0,
            max_ejection_percent=50,
            failure_percentage=FailurePercentageEjection(
                threshold=50, minimum_hosts=3, request_volume=3
            ),
        )
        retry = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.002)
        try:
            async with Channel(
                target, metrics=metrics, retry=retry, outlier_detection=detection
            ) as ch:
                stub = ch.stub(Replica)
                for _ in range(30):
                    assert (await stub.who(Ping())).replica in ("r0", "r1")
                m = parse(_text(metrics))
                failed = replicas[2].calls
                assert failed > 0
                assert pick(m, "rpc_client_call_duration_seconds_count", rpc_method="Who") == 30
                # Each attempt that r2 failed was retried on another replica.
                assert pick(m, "h2mesh_client_retries_total", rpc_method="Who") == failed
                for replica, server in zip(replicas, servers, strict=True):
                    endpoint = f"127.0.0.1:{server.port}"
                    picks = pick(m, "h2mesh_client_endpoint_picks_total", endpoint=endpoint)
                    assert picks == replica.calls, (replica.name, picks, replica.calls)

                async def ejected() -> bool:
                    m = parse(_text(metrics))
                    r2 = f"127.0.0.1:{servers[2].port}"
                    return pick(m, "h2mesh_client_endpoint_ejected", endpoint=r2) == 1

                await until(ejected, 5, "r2 to be ejected")
                m = parse(_text(metrics))
                assert pick(m, "h2mesh_client_endpoint_ejections_total", target=target) == 1
                assert pick(m, "h2mesh_client_endpoint_ejected", target=target) == 1
        finally:
            await _stop(servers)

    run(main())


def test_client_counts_hedges(run: Run) -> None:
    async def main() -> None:
        replicas, servers, target = await _fleet(2)
        for replica in replicas:
            replica.delay = 0.5
        metrics = ClientMetrics()
        hedging = HedgingPolicy(max_attempts=2, hedging_delay=0.01)
        try:
            async with Channel(target, metrics=metrics, hedging=hedging) as ch:
                stub = ch.stub(Replica)
                await asyncio.gather(*(stub.who(Ping()) for _ in range(4)))
                m = parse(_text(metrics))
                assert pick(m, "h2mesh_client_hedges_total", rpc_method="Who") == 4
                assert pick(m, "rpc_client_call_duration_seconds_count", rpc_method="Who") == 4
                # The later copy of each call went out too (and was cancelled).
                assert pick(m, "h2mesh_client_endpoint_picks_total", target=target) == 8
        finally:
            await _stop(servers)

    run(main())


def _text(metrics: ClientMetrics) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    metrics.register(registry)
    return generate_latest(registry).decode()


# -- access log --------------------------------------------------------------------------
def test_access_log_has_body_bytes_for_curl_over_http1_and_http2(
    run: Run, tmp_path: Path, curl: str
) -> None:
    curl_bin = curl
    path = tmp_path / "access.log"
    body = b'{"delay": 0.0}'

    async def main() -> list[int]:
        server = Server([Workers()])
        access = AccessLog(str(path))
        server.observer = ServerObserver(CallStats(), access)
        await server.start()
        sizes = []
        try:
            for flag in ("--http1.1", "--http2-prior-knowledge"):
                out = tmp_path / f"reply{flag}"
                done = await asyncio.to_thread(
                    subprocess.run,
                    [
                        curl_bin,
                        "-sS",
                        flag,
                        "-o",
                        str(out),
                        "-H",
                        "content-type: application/json",
                        "--data-binary",
                        body,
                        f"http://127.0.0.1:{server.port}/test.v1.Workers/Pid",
                    ],
                    capture_output=True,
                    timeout=10,
                )
                assert done.returncode == 0, done.stderr
                sizes.append(len(out.read_bytes()))
        finally:
            await server.stop(1.0)
            access.close()
        return sizes

    sizes = run(main())
    lines = path.read_text().splitlines()
    assert len(lines) == 2, lines
    for line, http, size in zip(lines, ("HTTP/1.1", "HTTP/2"), sizes, strict=True):
        fields = line.split()
        assert fields[2] == http and fields[4] == "/test.v1.Workers/Pid", line
        assert fields[5] == "OK" and fields[6].endswith("ms"), line
        assert fields[7:] == [str(len(body)), str(size)], line

"""The admin listener of a supervised server, read by real tools: a Prometheus server
scrapes ``/metrics`` and its query API returns the calls this test made; headless Chromium
renders ``/status`` and shows them. Plus ``/healthz``, ``/readyz`` and the access log.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry, start_http_server

from h2mesh import Channel, ClientMetrics, Code, MethodDescriptor, MethodKind, RpcError

from ..conftest import require_binary
from .test_workers import Supervised, pids_of_new_connections, start
from .worker_service import PidReply, PidRequest, RelayRequest, Workers

CALLS = 37
RELAYS = 12


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Supervised]:
    sup = start(tmp_path, "--workers", "2", "--admin-port", "0")
    try:
        yield sup
    finally:
        sup.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_calls(url: str, client: ClientMetrics | None = None) -> set[int]:
    """``CALLS`` successful calls over fresh connections, and one to a method that does
    not exist (from a channel recording into ``client``); the pids that served them."""
    missing = MethodDescriptor(
        "test.v1.Workers", "Missing", "missing", MethodKind.UNARY, PidRequest, PidRequest
    )

    async def main() -> set[int]:
        served = await pids_of_new_connections(url, CALLS)
        assert sum(served.values()) == CALLS
        async with Channel(url, metrics=client or False) as ch:
            with pytest.raises(RpcError) as info:
                await ch.unary(missing, PidRequest(), timeout=5)
            assert info.value.code is Code.UNIMPLEMENTED
        return set(served)

    return asyncio.run(main())


def make_relays(url: str) -> None:
    """``RELAYS`` calls, each on a fresh connection (so both workers get some), that a
    worker passes on to the server itself through a channel with metrics on."""

    async def main() -> None:
        channels = [Channel(url) for _ in range(RELAYS)]
        try:
            await asyncio.gather(
                *(ch.stub(Workers).relay(RelayRequest(target=url), timeout=10) for ch in channels)
            )
        finally:
            await asyncio.gather(*(ch.close() for ch in channels))

    asyncio.run(main())


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def test_prometheus_scrapes_the_call_count(server: Supervised, tmp_path: Path) -> None:
    prometheus = require_binary("prometheus")
    # A process with only a channel exposes its client metrics with prometheus-client.
    client = ClientMetrics()
    registry = CollectorRegistry()
    client.register(registry)
    exporter, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    pids = make_calls(server.url, client)
    make_relays(server.url)
    admin = urllib.parse.urlsplit(server.admin).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: h2mesh\n"
        f"    static_configs:\n      - targets: ['{admin}']\n"
        "  - job_name: client\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{exporter.server_port}']\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    query = (
        'sum(rpc_server_call_duration_seconds_count{rpc_service="test.v1.Workers",'
        'rpc_method="Pid",rpc_response_status_code="OK",rpc_system="connect_rpc"})'
    )
    api = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    seen: list[str] = []

    def counted() -> bool:
        try:
            status, body = get(api)
        except OSError:
            return False  # not listening yet
        result = json.loads(body)["data"]["result"] if status == 200 else []
        if result:
            seen.append(result[0]["value"][1])
        # The worker's channels called Pid once per relay too.
        return bool(result) and result[0]["value"][1] == str(CALLS + RELAYS)

    try:
        wait_for(counted, 30, f"Prometheus to report {CALLS + RELAYS} calls")
        # The unknown method is counted under OpenTelemetry's _OTHER name.
        other = 'sum(rpc_server_call_duration_seconds_count{rpc_method="_OTHER"})'
        status, body = get(
            f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": other})
        )
        assert status == 200 and json.loads(body)["data"]["result"][0]["value"][1] == "1", body
        status, body = get(f"http://127.0.0.1:{port}/api/v1/query?query=h2mesh_workers")
        assert status == 200 and json.loads(body)["data"]["result"][0]["value"][1] == "2", body
        pid = 'rpc_service="test.v1.Workers",rpc_method="Pid",rpc_response_status_code="OK"'
        # Sizes: the request bodies are all the same; the response names a pid.
        request = len(msgspec.msgpack.encode(PidRequest()))
        assert scalar(port, f"sum(rpc_server_request_size_bytes_count{{{pid}}})") >= CALLS
        responses = {len(msgspec.msgpack.encode(PidReply(pid=p))) for p in pids}
        mean = scalar(
            port,
            f'sum(rpc_server_response_size_bytes_sum{{{pid},job="h2mesh"}}) / '
            f'sum(rpc_server_response_size_bytes_count{{{pid},job="h2mesh"}})',
        )
        assert min(responses) <= mean <= max(responses), (mean, responses)
        mean = scalar(
            port,
            f'sum(rpc_server_request_size_bytes_sum{{{pid},job="h2mesh"}}) / '
            f'sum(rpc_server_request_size_bytes_count{{{pid},job="h2mesh"}})',
        )
        assert mean == request
        # Every call and relay is one stream; the workers' sockets carried at least that.
        streams = scalar(port, 'sum(h2mesh_server_streams_total{job="h2mesh"})')
        assert streams == CALLS + 1 + 2 * RELAYS
        assert scalar(port, "sum(h2mesh_server_received_bytes_total)") > CALLS * request
        assert scalar(port, "sum(h2mesh_server_sent_bytes_total)") > CALLS * min(responses)
        # The channels inside the workers, merged over both: one call per relay.
        relayed = f'sum(rpc_client_call_duration_seconds_count{{{pid},job="h2mesh"}})'
        assert scalar(port, relayed) == RELAYS
        picks = 'sum(h2mesh_client_endpoint_picks_total{job="h2mesh"})'
        assert scalar(port, picks) == RELAYS
        # The process with only a channel: its one call, to a method nobody serves.
        missing = (
            'rpc_client_call_duration_seconds_count{job="client",rpc_method="Missing",'
            'rpc_response_status_code="UNIMPLEMENTED",rpc_system="connect_rpc"}'
        )
        wait_for(lambda: values(port, missing) == [1.0], 15, "Prometheus to scrape the client")
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        exporter.shutdown()
        thread.join(5)


def values(port: int, query: str) -> list[float]:
    """The values Prometheus' query API returns for ``query``."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, body = get(url)
    assert status == 200, body
    return [float(r["value"][1]) for r in json.loads(body)["data"]["result"]]


def scalar(port: int, query: str) -> float:
    """The single value Prometheus' query API returns for ``query``."""
    found = values(port, query)
    assert len(found) == 1, (query, found)
    return found[0]


def test_status_page_in_headless_chromium(server: Supervised, tmp_path: Path) -> None:
    chromium = require_binary("chromium")
    make_calls(server.url)
    make_relays(server.url)
    # Worker statistics reach the supervisor once a second: wait for the page to count.
    wait_for(
        lambda: f"<td class='n'>{CALLS + RELAYS}</td>" in get(server.admin + "/status")[1],
        10,
        "the status page to count the calls",
    )
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = server.admin + "/status"
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=60
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    row = re.search(
        r"<tr><td>test\.v1\.Workers</td><td>Pid</td><td class=\"n\">(\d+)</td>"
        r"<td class=\"n\">(\d+)</td><td class=\"n\">([\d.]+ ms)</td><td class=\"n\">([\d.]+ ms)",
        dom.stdout,
    )
    assert row, dom.stdout[-3000:]
    assert row[1] == str(CALLS + RELAYS) and row[2] == "0"
    assert re.search(r"<h1>h2mesh [\d.]+</h1>", dom.stdout)
    assert dom.stdout.count("<td>serving</td>") == 2  # the workers table
    # The workers' channels (the relays), merged: every relay picked the one endpoint.
    endpoint = server.url.removeprefix("http://")
    assert (
        f'<tr><td>{server.url}</td><td>{endpoint}</td><td class="n">{RELAYS}</td>'
        '<td class="n">0</td><td class="n">0</td><td>in rotation</td></tr>'
    ) in dom.stdout, dom.stdout[-3000:]
    shot = tmp_path / "status.png"
    png = subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1100,900", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert png.returncode == 0, png.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_health_and_readiness(server: Supervised) -> None:
    assert get(server.admin + "/healthz") == (200, "ok\n")
    assert get(server.admin + "/readyz") == (200, "ready\n")
    assert get(server.admin + "/nope")[0] == 404
    request = urllib.request.Request(server.admin + "/metrics", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 405
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0


def test_access_log_json(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    sup = start(tmp_path, "--workers", "2", "--access-log", str(path), "--log-format", "json")
    try:
        pids = asyncio.run(pids_of_new_connections(sup.url, 10))
        sup.proc.send_signal(signal.SIGTERM)
        assert sup.proc.wait(15) == 0
    finally:
        sup.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 10
    assert {line["path"] for line in lines} == {"/test.v1.Workers/Pid"}
    assert {line["code"] for line in lines} == {"OK"}
    assert {line["protocol"] for line in lines} == {"connect"}
    assert all(line["peer"].startswith("127.0.0.1:") and line["duration_ms"] > 0 for line in lines)
    # Body bytes: the MessagePack request and the reply naming the pid.
    assert {line["request_bytes"] for line in lines} == {len(msgspec.msgpack.encode(PidRequest()))}
    sizes = {len(msgspec.msgpack.encode(PidReply(pid=pid))) for pid in pids}
    assert {line["response_bytes"] for line in lines} == sizes

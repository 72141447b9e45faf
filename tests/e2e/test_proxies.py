"""Real nginx and HAProxy, configured by ``h2mesh lb-config``, in front of real replicas.

Three ``h2mesh serve tests.e2e.mesh_service:Mesh --register mesh.v1.Mesh`` processes
register in the embedded registry; ``h2mesh lb-config KIND registry://mesh.v1.Mesh --watch
--reload CMD`` writes the proxy's config and keeps it current; the proxy runs that file
as it is, unprivileged, from the test's folder. Callers: grpcio and grpc-js (unary and server
stream), curl (Connect JSON over HTTP/1.1 and HTTP/2), the h2mesh Channel (Connect and gRPC).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from h2mesh import Channel, RpcError
from h2mesh._errors import UnprocessedError
from h2mesh.schema import message_codec

from ..conftest import require_binary
from .mesh_service import Mesh, WorkReply, WorkRequest
from .replica import REPO, Replica, start_replicas, wait_until

H2MESH = Path(sys.executable).parent / "h2mesh"
NODE_DIR = REPO / "tests" / "interop" / "node"
NAME = "mesh.v1.Mesh"
WORK = f"/{NAME}/Work"
# The replicas believe the proxy (on loopback) about who the client is.
TRUST = ("--forwarded-allow-ips", "127.0.0.1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Edge:
    """A proxy process, the ``lb-config --watch`` process that feeds it, and the replicas."""

    def __init__(self, kind: str, folder: Path, registry: Path) -> None:
        self.kind = kind
        self.folder = folder
        self.registry = registry
        self.config = folder / ("nginx.conf" if kind == "nginx" else "haproxy.cfg")
        self.listen = f"127.0.0.1:{free_port()}"
        # nginx 1.22 takes HTTP/1.1 on a port of its own; HAProxy serves both on one.
        self.listen_http1 = f"127.0.0.1:{free_port()}" if kind == "nginx" else self.listen
        self.proxy_log = folder / f"{kind}.log"
        self.watch_log = folder / "lb-config.log"
        self.replicas: list[Replica] = []
        self.proxy: subprocess.Popen[bytes] | None = None
        self.watcher: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    def reload_command(self) -> str:
        if self.kind == "nginx":
            return f"nginx -p {self.folder} -c {self.config} -s reload"
        return f"kill -USR2 $(cat {self.folder / 'haproxy.pid'})"

    def start(self) -> None:
        self.replicas += start_replicas(3, self.folder, self.registry, ttl=2.0, extra=TRUST)
        env = {**os.environ, "H2MESH_REGISTRY": str(self.registry)}
        command = [
            str(H2MESH), "lb-config", self.kind, f"registry://{NAME}",
            "--listen", self.listen,
            "--service", "tests.e2e.mesh_service:Mesh",
            "--check-interval", "0.5",
            "-o", str(self.config),
            "--watch", "--reload", self.reload_command(),
        ]  # fmt: skip
        if self.kind == "nginx":
            command += ["--listen-http1", self.listen_http1]
        with self.watch_log.open("wb") as log:
            self.watcher = subprocess.Popen(command, cwd=REPO, env=env, stderr=log)
        wait_until(self.config.exists, 15, "lb-config wrote the config")
        wait_until(lambda: self.replicas_in_config() == 3, 15, "all 3 replicas in the config")
        if self.kind == "nginx":
            proxy = [require_binary("nginx"), "-p", str(self.folder), "-c", str(self.config)]
            proxy += ["-g", "daemon off;"]
        else:
            proxy = [require_binary("haproxy"), "-W", "-f", str(self.config)]
            proxy += ["-p", str(self.folder / "haproxy.pid")]
        with self.proxy_log.open("wb") as log:
            self.proxy = subprocess.Popen(proxy, cwd=self.folder, stdout=log, stderr=log)
        wait_until(self._answers, 15, f"{self.kind} answered through {self.listen}", 0.1)

    def replicas_in_config(self) -> int:
        text = self.config.read_text() if self.config.exists() else ""
        return sum(r.address in text for r in self.replicas if r.proc.poll() is None)

    def _answers(self) -> bool:
        assert self.proxy is not None
        if self.proxy.poll() is not None:
            pytest.fail(f"{self.kind} exited: {self.proxy_log.read_text()}")
        try:
            status, _ = curl_connect(self.listen_http1, "--http1.1")
        except (subprocess.CalledProcessError, ValueError):
            return False
        return status == 200

    def log(self) -> str:
        error_log = self.folder / "error.log"
        extra = error_log.read_text(errors="replace") if error_log.exists() else ""
        return self.proxy_log.read_text(errors="replace") + extra

    def stop(self) -> None:
        for proc in (self.watcher, self.proxy):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for replica in self.replicas:
            replica.stop()


def curl_connect(listen: str, http: str, key: str = "curl", *extra: str) -> tuple[int, Any]:
    out = subprocess.run(
        [
            require_binary("curl"), "-sS", http, "--max-time", "5", *extra,
            "-H", "content-type: application/json", "-d", json.dumps({"key": key}),
            "-w", "\n%{http_code}", f"http://{listen}{WORK}",
        ],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body) if body else None


@pytest.fixture(params=["nginx", "haproxy"])
def edge(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Edge]:
    edge = Edge(str(request.param), tmp_path, tmp_path / "registry.db")
    try:
        edge.start()
        yield edge
    finally:
        edge.stop()


def _grpcio_methods(channel: grpc.Channel) -> tuple[Any, Any]:
    # The Python-first Mesh service speaks protobuf; these are its messages' codecs.
    encode, _ = message_codec(WorkRequest)
    _, decode = message_codec(WorkReply)
    unary = channel.unary_unary(WORK, request_serializer=encode, response_deserializer=decode)
    stream = channel.unary_stream(
        f"/{NAME}/Count", request_serializer=encode, response_deserializer=decode
    )
    return unary, stream


def test_every_client_through_the_proxy(edge: Edge) -> None:
    pids = {str(r.pid) for r in edge.replicas}
    with grpc.insecure_channel(edge.listen) as channel:
        unary, stream = _grpcio_methods(channel)
        seen = Counter(unary(WorkRequest(key=str(i)), timeout=5).replica for i in range(30))
        assert set(seen) == pids, f"grpcio calls did not reach every replica: {seen}"
        replies = list(stream(WorkRequest(key="s"), timeout=5))
        assert [r.key for r in replies] == ["s.0", "s.1", "s.2"]
        assert len({r.replica for r in replies}) == 1

    for listen, http in (
        (edge.listen_http1, "--http1.1"),
        (edge.listen, "--http2-prior-knowledge"),
    ):
        status, body = curl_connect(listen, http, "c", "-H", "X-Forwarded-For: 203.0.113.7")
        assert status == 200 and body["key"] == "c" and body["replica"] in pids, (http, body)
        # The proxy appended the address it saw (loopback, trusted): the replica's
        # Context.peer is the address the client's own proxy put before it.
        assert body["peer"] == "203.0.113.7", body

    async def through_channel() -> None:
        for protocol, codec in (("connect", "json"), ("grpc", "proto")):
            async with Channel(edge.url, protocol=protocol, codec=codec) as ch:
                mesh = ch.stub(Mesh)
                got = {
                    (await mesh.work(WorkRequest(key="h"), timeout=5)).replica for _ in range(12)
                }
                assert got == pids, protocol
                keys = [r.key async for r in mesh.count(WorkRequest(key="n"), timeout=5)]
                assert keys == ["n.0", "n.1", "n.2"], protocol

    asyncio.run(through_channel())


class Caller:
    """Calls ``Work`` through the proxy from a thread until stopped; counts every outcome."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.served: Counter[str] = Counter()
        #: (start, end, what) of each failed call, in time.monotonic() seconds
        self.failures: list[tuple[float, float, str]] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    def __enter__(self) -> Caller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    async def _main(self) -> None:
        async with Channel(self.url, codec="json") as ch:
            mesh = ch.stub(Mesh)

            async def worker(n: int) -> None:
                i = 0
                while not self._stop.is_set():
                    i += 1
                    start = time.monotonic()
                    try:
                        reply = await self._call(mesh, WorkRequest(key=f"{n}.{i}"))
                    except RpcError as exc:
                        self.failures.append((start, time.monotonic(), f"{exc.code.name}: {exc}"))
                    else:
                        self.served[reply.replica] += 1
                    await asyncio.sleep(0.005)  # pacing, so that the load stays modest

            await asyncio.gather(*(worker(n) for n in range(3)))

    async def _call(self, mesh: Any, req: WorkRequest) -> Any:
        # A call refused unprocessed (GOAWAY from a proxy worker that is reloading) is safe
        # to send again: the Channel does that 3 times at once, which a reconnect that lands
        # on the exiting worker again can exhaust. Resend those (counted), nothing else.
        for _ in range(5):
            try:
                return await mesh.work(req, timeout=5)
            except UnprocessedError:
                self.refused += 1
                await asyncio.sleep(0.01)
        return await mesh.work(req, timeout=5)


def test_replica_killed_then_one_added_without_failed_calls(edge: Edge, tmp_path: Path) -> None:
    victim = edge.replicas[0]
    with Caller(edge.url) as caller:
        wait_until(lambda: len(caller.served) == 3, 10, "calls reached all 3 replicas")
        victim.kill()  # SIGKILL: no deregistration, no GOAWAY
        victim.wait()
        died = time.monotonic()
        if edge.kind == "haproxy":
            # HAProxy's active HTTP/2 health check takes it out.
            down = f"r_{victim.address.replace('.', '_').replace(':', '_')} is DOWN"
            wait_until(lambda: down in edge.log(), 10, "HAProxy marked the killed replica DOWN")
        # The registry entry lapses (TTL 2 s): lb-config rewrites the file and reloads.
        wait_until(lambda: victim.address not in edge.config.read_text(), 15, "victim dropped")
        before = caller.served.copy()
        wait_until(
            lambda: sum(caller.served.values()) > sum(before.values()) + 50, 10, "calls go on"
        )
        assert caller.served[str(victim.pid)] == before[str(victim.pid)]

        newcomer = start_replicas(1, tmp_path, edge.registry, ttl=2.0, extra=TRUST)[0]
        edge.replicas.append(newcomer)
        wait_until(lambda: newcomer.address in edge.config.read_text(), 15, "newcomer added")
        wait_until(lambda: caller.served[str(newcomer.pid)] >= 20, 15, "the new replica gets calls")
    failures = caller.failures
    if edge.kind == "nginx":
        # nginx streams request bodies to gRPC upstreams unbuffered, so it cannot resend a
        # call that was already on its way to the replica that died (it answers 502).
        # Those, and only those, may fail: at most one per caller worker.
        failures = [f for f in failures if f[0] > died + 0.25 or "502" not in f[2]]
        assert len(caller.failures) - len(failures) <= 3
    assert failures == [], f"{len(failures)} failed calls: {failures[:5]}\n{edge.log()[-3000:]}"

    assert "reload command exited" not in edge.watch_log.read_text()


def test_haproxy_takes_the_timeout_from_the_callers_deadline(tmp_path: Path) -> None:
    """--timeout 0.3 s, a call that takes 0.8 s: cut off without a deadline, served with
    one (grpc-timeout or connect-timeout-ms lifts HAProxy's server timeout)."""
    (replica,) = start_replicas(1, tmp_path, tmp_path / "registry.db", ttl=5.0)
    listen = f"127.0.0.1:{free_port()}"
    config = tmp_path / "haproxy.cfg"
    try:
        done = subprocess.run(
            [str(H2MESH), "lb-config", "haproxy", f"static://{replica.address}",
             "--listen", listen, "--timeout", "0.3", "--health-service", NAME, "-o", str(config)],
            cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        log = (tmp_path / "haproxy.log").open("wb")
        proxy = subprocess.Popen(
            [require_binary("haproxy"), "-f", str(config)], stdout=log, stderr=log
        )
        try:
            body = json.dumps({"key": "slow", "work": 0.8})

            def post(*headers: str) -> int:
                args = [require_binary("curl"), "-sS", "-o", "/dev/null", "-w", "%{http_code}"]
                args += ["-H", "content-type: application/json", "-d", body]
                for header in headers:
                    args += ["-H", header]
                out = subprocess.run(
                    [*args, f"http://{listen}{WORK}"], capture_output=True, text=True, timeout=10
                )
                return int(out.stdout or 0)

            wait_until(lambda: post("connect-timeout-ms: 5000") == 200, 15, "HAProxy serves")
            assert post() == 504  # HAProxy's own gateway timeout after 0.3 s
            assert post("connect-timeout-ms: 5000") == 200
            assert post("grpc-timeout: 5S") == 200
            assert post("grpc-timeout: 4000m") == 200
        finally:
            proxy.terminate()
            proxy.wait(10)
            log.close()
    finally:
        replica.stop()

"""``h2mesh serve --workers N`` as real processes: a supervisor and its forked workers.

Every reply of ``tests.e2e.worker_service:Workers`` carries the pid of the worker that
served it, so the tests see where connections went. Scenarios: 200 connections spread
over two workers (shared socket and SO_REUSEPORT); SIGKILL of a worker; SIGHUP under
load; SIGTERM with calls in flight; a crash loop; ``--max-requests``; a Unix socket and
an inherited fd.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from h2mesh import Channel, MethodDescriptor, MethodKind, RpcError
from h2mesh.discovery import Registry

from .worker_service import PidRequest, Workers

REPO = Path(__file__).resolve().parents[2]
H2MESH = Path(sys.executable).parent / "h2mesh"
STARTUP_TIMEOUT = 20.0
READY = "h2mesh serving on "


class Supervised:
    """A running ``h2mesh serve --workers N``."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log
        self.url = ""
        self.admin = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        """The pids of the workers alive right now (children of the supervisor)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(p) for p in path.read_text().split()}

    def wait_log(self, pattern: str, timeout: float = 15.0, after: int = 0) -> re.Match[str]:
        """Wait until the log (from character ``after`` on) matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output()[after:])
            if found:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"{pattern!r} not logged within {timeout}s:\n{self.output()}")
            if self.proc.poll() is not None:
                pytest.fail(f"the supervisor exited ({self.proc.returncode}):\n{self.output()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            for pid in self.worker_pids():
                kill(pid)
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start(
    tmp: Path, *args: str, target: str = "tests.e2e.worker_service:Workers", **popen: object
) -> Supervised:
    assert H2MESH.exists(), f"the h2mesh script is missing: pip install -e {REPO}"
    log = tmp / f"supervisor-{time.monotonic_ns()}.log"
    listen = [] if any(a in ("--uds", "--fd") for a in args) else ["--port", "0"]
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(H2MESH), "serve", target, *listen, "--grace", "5", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            bufsize=0,  # unbuffered: select() sees every line not yet read
            **popen,  # type: ignore[call-overload]
        )
    sup = Supervised(proc, log)
    assert proc.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))
        line = proc.stdout.readline().decode() if ready else ""
        if line.startswith("h2mesh admin on "):
            sup.admin = line.split()[-1]
            continue
        if not line.startswith(READY):
            sup.stop()
            pytest.fail(f"server did not start: {line!r}\n{sup.output()}")
        sup.url = line.removeprefix(READY).strip()
        return sup


@pytest.fixture
def servers() -> Iterator[list[Supervised]]:
    started: list[Supervised] = []
    yield started
    for sup in started:
        sup.stop()


async def pids_of_new_connections(url: str, count: int) -> Counter[int]:
    """Open ``count`` connections at once, one call on each: pid -> connections."""
    channels = [Channel(url) for _ in range(count)]
    try:
        replies = await asyncio.gather(
            *(ch.stub(Workers).pid(PidRequest(), timeout=10) for ch in channels)
        )
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))
    return Counter(r.pid for r in replies)


class Load:
    """Calls without pause from a few channels until stopped; counts what failed."""

    def __init__(self, url: str, channels: int = 4) -> None:
        self.url = url
        self.channels = channels
        self.ok = 0
        self.failures: list[BaseException] = []
        self.pids: Counter[int] = Counter()
        self._stop = asyncio.Event()

    async def _one(self) -> None:
        async with Channel(self.url, timeout=10.0) as ch:
            stub = ch.stub(Workers)
            while not self._stop.is_set():
                try:
                    reply = await stub.pid(PidRequest(delay=0.002))
                except RpcError as exc:
                    self.failures.append(exc)
                else:
                    self.ok += 1
                    self.pids[reply.pid] += 1

    async def run_while(self, action: Callable[[], None], until: Callable[[], bool]) -> None:
        tasks = [asyncio.ensure_future(self._one()) for _ in range(self.channels)]
        try:
            await wait_async(lambda: self.ok >= 50, 10.0)
            action()
            await wait_async(until, 30.0)
            floor = self.ok + 50
            await wait_async(lambda: self.ok >= floor, 10.0)
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)


def metric(admin: str, name: str) -> float:
    """The value of a metric on the admin listener's /metrics, summed over its labels."""
    with urllib.request.urlopen(admin + "/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert found, text
    return sum(float(value) for value in found)


async def wait_async(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.01)


# -- spreading connections -------------------------------------------------------------------
def test_two_workers_share_200_connections(tmp_path: Path, servers: list[Supervised]) -> None:
    # One shared accept queue: whichever worker wakes first takes what is queued, so the
    # split of a burst varies (50-85% for the busier one, measured on an idle machine;
    # docs/deployment.md). Both workers serve, over at most three bursts of 200.
    servers.append(sup := start(tmp_path, "--workers", "2"))
    workers = sup.worker_pids()
    assert len(workers) == 2
    served: Counter[int] = Counter()
    for _ in range(3):
        served += asyncio.run(pids_of_new_connections(sup.url, 200))
        if set(served) == workers:
            break
    assert set(served) == workers, served


def test_reuse_port_spreads_200_connections_evenly(
    tmp_path: Path, servers: list[Supervised]
) -> None:
    # SO_REUSEPORT: the kernel hashes each connection to one worker's socket.
    servers.append(sup := start(tmp_path, "--workers", "2", "--reuse-port"))
    workers = sup.worker_pids()
    served = asyncio.run(pids_of_new_connections(sup.url, 200))
    assert set(served) == workers, served
    assert min(served.values()) >= 60, served  # binomial(200, 1/2): 60 is 5.6 sigma off


# -- a worker killed ----------------------------------------------------------------------------
def test_killed_worker_is_replaced_and_calls_keep_succeeding(
    tmp_path: Path, servers: list[Supervised]
) -> None:
    servers.append(sup := start(tmp_path, "--workers", "2"))
    before = sup.worker_pids()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    sup.wait_log(rf"worker {victim} died \(killed by SIGKILL\); starting a new one")
    deadline = time.monotonic() + 15
    while len(sup.worker_pids() - {victim}) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    now = sup.worker_pids()
    assert victim not in now and len(now) == 2, now
    (replacement,) = now - before

    async def calls() -> Counter[int]:
        seen: Counter[int] = Counter()
        for _ in range(10):  # new connections until the new worker has served some
            seen += await pids_of_new_connections(sup.url, 20)
            if replacement in seen:
                break
        return seen

    seen = asyncio.run(calls())  # every call succeeded, or gather raised
    assert replacement in seen and victim not in seen, seen


def test_crash_loop_stops_the_supervisor_with_an_error(
    tmp_path: Path, servers: list[Supervised]
) -> None:
    servers.append(sup := start(tmp_path, "--workers", "2"))
    # Kill workers as fast as they come back: the supervisor gives up after 5 deaths.
    killed: set[int] = set()
    deadline = time.monotonic() + 30
    while sup.proc.poll() is None and time.monotonic() < deadline:
        try:
            pids = sup.worker_pids()
        except FileNotFoundError:
            break
        for pid in pids - killed:
            kill(pid)
            killed.add(pid)
        time.sleep(0.01)
    assert sup.proc.wait(20) == 1
    assert re.search(
        r"error: workers died 5 times within 60 s \(the last, pid \d+, killed by SIGKILL\)",
        sup.output(),
    ), sup.output()


# -- SIGHUP: every worker replaced, no call fails ---------------------------------------------
def test_sighup_under_load_replaces_every_worker_without_failed_calls(
    tmp_path: Path, servers: list[Supervised]
) -> None:
    servers.append(sup := start(tmp_path, "--workers", "2"))
    old = sup.worker_pids()
    mark = len(sup.output())
    load = Load(sup.url)

    def reloaded() -> bool:
        return bool(re.search(r"reloaded: workers", sup.output()[mark:]))

    asyncio.run(load.run_while(lambda: sup.proc.send_signal(signal.SIGHUP), reloaded))
    assert load.failures == [], load.failures[:3]
    new = sup.worker_pids()
    assert len(new) == 2 and not new & old, (old, new)
    for pid in old:
        sup.wait_log(rf"worker {pid} exited \(exit code 0\)", after=mark)
    fresh = asyncio.run(pids_of_new_connections(sup.url, 40))
    assert set(fresh) <= new, fresh


# -- SIGTERM: drain, exit 0 ----------------------------------------------------------------------
def test_sigterm_drains_calls_in_flight_and_everything_exits_0(
    tmp_path: Path, servers: list[Supervised]
) -> None:
    servers.append(sup := start(tmp_path, "--workers", "2", "--admin-port", "0"))
    workers = sup.worker_pids()

    async def main() -> list[int]:
        channels = [Channel(sup.url) for _ in range(20)]
        try:
            calls = [
                asyncio.ensure_future(ch.stub(Workers).pid(PidRequest(delay=1.0), timeout=10))
                for ch in channels
            ]
            # Every call is in a handler (they sleep 1 s) when the signal comes.
            await wait_async(lambda: metric(sup.admin, "rpc_server_active_calls") == 20, 5.0)
            sup.proc.send_signal(signal.SIGTERM)
            replies = await asyncio.gather(*calls)
        finally:
            await asyncio.gather(*(ch.close() for ch in channels))
        return [r.pid for r in replies]

    served = asyncio.run(main())
    assert len(served) == 20 and set(served) <= workers
    assert sup.proc.wait(15) == 0, sup.output()
    for pid in workers:
        assert f"worker {pid} exited (exit code 0)" in sup.output()


def test_register_is_done_once_by_the_supervisor(tmp_path: Path, servers: list[Supervised]) -> None:
    db = tmp_path / "registry.db"
    env = {**os.environ, "H2MESH_REGISTRY": str(db)}
    servers.append(
        sup := start(tmp_path, "--workers", "2", "--register", "test.v1.Workers", env=env)
    )
    registry = Registry(db)
    try:
        endpoints, _ = registry.lookup("test.v1.Workers")
        assert [e.address for e in endpoints] == [sup.url.removeprefix("http://")]
        assert endpoints[0].metadata["pid"] == str(sup.proc.pid)
        sup.proc.send_signal(signal.SIGTERM)
        assert sup.proc.wait(15) == 0
        assert registry.lookup("test.v1.Workers")[0] == []
    finally:
        registry.close()


# -- recycling ----------------------------------------------------------------------------------
def test_max_requests_recycles_workers(tmp_path: Path, servers: list[Supervised]) -> None:
    servers.append(sup := start(tmp_path, "--workers", "1", "--max-requests", "30"))
    (first,) = sup.worker_pids()

    async def calls() -> Counter[int]:
        seen: Counter[int] = Counter()
        deadline = time.monotonic() + 15
        async with Channel(sup.url, timeout=10) as ch:
            # The old worker serves on until its replacement listens, then drains.
            while len(seen) < 2 and time.monotonic() < deadline:
                seen[(await ch.stub(Workers).pid(PidRequest(delay=0.005))).pid] += 1
        return seen

    seen = asyncio.run(calls())
    assert seen[first] >= 30 and len(seen) >= 2, seen
    sup.wait_log(rf"worker {first} served its max_requests; replacing it")
    sup.wait_log(rf"worker {first} exited \(exit code 0\)")


# -- other listeners -----------------------------------------------------------------------------
def test_unix_socket_listener(tmp_path: Path, servers: list[Supervised], curl: str) -> None:
    path = tmp_path / "h2mesh.sock"
    servers.append(sup := start(tmp_path, "--uds", str(path), "--workers", "2"))
    assert sup.url == f"unix:{path}"
    out = subprocess.run(
        [
            curl,
            "-s",
            "--unix-socket",
            str(path),
            "--http2-prior-knowledge",
            "-H",
            "content-type: application/json",
            "-d",
            "{}",
            "http://localhost/test.v1.Workers/Pid",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 0, out.stderr
    assert int(re.fullmatch(r'\{"pid":(\d+)\}', out.stdout)[1]) in sup.worker_pids()  # type: ignore[index]
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(15) == 0
    assert not path.exists()


def test_inherited_fd_listener(tmp_path: Path, servers: list[Supervised]) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    servers.append(sup := start(tmp_path, "--fd", str(fd), pass_fds=(fd,)))
    listener.close()  # the server holds it now
    assert sup.url == f"http://127.0.0.1:{port}"
    served = asyncio.run(pids_of_new_connections(sup.url, 5))
    assert sum(served.values()) == 5


# -- development reload ---------------------------------------------------------------------------
RELOADABLE = """
import msgspec
from h2mesh import Service, rpc


class Version(msgspec.Struct):
    text: str = ""


class Reloadable(Service, name="test.v1.Reloadable"):
    @rpc
    async def version(self, req: Version) -> Version:
        return Version(text={text!r})
"""


def test_reload_serves_changed_code(tmp_path: Path, servers: list[Supervised]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    source = project / "reloadable.py"
    source.write_text(RELOADABLE.format(text="one"))
    log = tmp_path / "reload.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(H2MESH), "serve", "reloadable:Reloadable", "--port", "0", "--reload"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=err,
            bufsize=0,
        )
    sup = Supervised(proc, log)
    servers.append(sup)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
    line = proc.stdout.readline().decode() if ready else ""
    assert line.startswith(READY), f"{line!r}\n{sup.output()}"
    sup.url = line.removeprefix(READY).strip()

    async def version() -> str:
        descriptor = MethodDescriptor(
            "test.v1.Reloadable", "Version", "version", MethodKind.UNARY, dict, dict
        )
        async with Channel(sup.url, codec="json") as ch:
            reply = await ch.unary(descriptor, {}, timeout=5)
        return str(reply["text"])

    assert asyncio.run(version()) == "one"
    (first,) = sup.worker_pids()
    mark = len(sup.output())
    # The watcher starts with the supervisor, but says nothing once it listens: write
    # until a change is seen.
    deadline = time.monotonic() + 15
    for n in range(1000):
        source.write_text(RELOADABLE.format(text="two") + f"# edit {n}\n")
        if "reloading" in sup.output()[mark:] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    sup.wait_log(r"changed: reloadable\.py; reloading", after=mark)
    sup.wait_log(rf"worker {first} exited \(exit code 0\)", after=mark)
    assert asyncio.run(version()) == "two"

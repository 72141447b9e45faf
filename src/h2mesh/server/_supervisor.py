"""Worker processes under a supervisor: every core serving one set of listeners.

The supervisor binds the listeners, forks ``workers`` processes that inherit them and
serve, and from then on only supervises:

- a worker that dies is replaced after a backoff (0.1 s, doubling up to 5 s), and logged;
  ``crash_limit`` deaths within ``crash_window`` seconds stop the supervisor with an error;
- SIGTERM/SIGINT deregisters the server, then sends SIGTERM to every worker, which stops
  accepting, sends GOAWAY and drains its calls for ``grace`` seconds; exit status 0;
- SIGHUP replaces the workers one at a time: a new worker is started, and the old one is
  told to drain only once the new one listens, so no call fails (new code and certificate
  files are loaded by the new workers);
- ``max_requests`` (plus a random 0..``max_requests_jitter``) recycles a worker the same
  way after that many requests, so slow leaks cannot grow without bound;
- registration (``register=``) is done here, once for the whole server, not per worker.

Workers share each listening socket (the kernel keeps one accept queue, so a draining
worker never strands a connection that it had not accepted yet); ``reuse_port=True``
gives each worker its own ``SO_REUSEPORT`` socket instead. docs/deployment.md has the
measurement behind the default.

A worker reports to the supervisor over a pipe: ``R`` once it listens, ``M`` when it
has served ``max_requests``. With metrics on, each worker writes its statistics to a
private directory every second; the admin listener, in the supervisor, merges them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..observability import AccessLog, CallStats, Sample, Series, Snapshot
from ..observability._observer import observer_of
from ..observability._stats import (
    merge_samples,
    merge_series,
    process_snapshot,
    read_snapshot,
    write_snapshot,
)
from ._metrics import attach_stats
from ._sockets import bind_tcp

if TYPE_CHECKING:
    from ._admin import AdminListener
    from ._registration import ServerRegistration
    from ._server import Server

__all__ = ["Supervisor", "SupervisorError", "WorkerInfo", "worker_count"]

log = logging.getLogger("h2mesh.supervisor")

TLSFactory = Callable[[], "ssl.SSLContext | tuple[str, str] | None"]

_READY = b"R"
_RECYCLE = b"M"
STATS_INTERVAL = 1.0  # seconds between a worker's statistics snapshots


class SupervisorError(RuntimeError):
    """The workers could not be kept running (a crash loop, or none ever started)."""


def worker_count(value: str | int) -> int:
    """``"auto"`` (the CPUs this process may use) or a positive number of workers."""
    if value == "auto":
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1
    n = int(value)
    if n < 1:
        raise ValueError(f"workers must be >= 1 or 'auto', got {value!r}")
    return n


def describe_exit(code: int) -> str:
    """``exit code 1`` or ``killed by SIGKILL`` for a ``waitstatus_to_exitcode`` value."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class WorkerInfo:
    """One worker as the status page shows it."""

    __slots__ = ("exited", "fd", "pid", "ready", "started", "stopping")

    def __init__(self, pid: int, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.pid = pid
        self.fd = fd
        self.started = time.time()
        self.ready: asyncio.Future[bool] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()
        self.stopping = False  # told to drain; its exit is expected

    @property
    def state(self) -> str:
        if self.stopping:
            return "draining"
        return "serving" if self.ready.done() and self.ready.result() else "starting"


class Supervisor:
    """Runs ``workers`` processes serving ``sockets``; see the module docstring."""

    def __init__(
        self,
        server: Server,
        sockets: Sequence[socket.socket],
        *,
        load: Callable[[], Server] | None = None,
        workers: int = 1,
        tls: TLSFactory = lambda: None,
        grace: float = 10.0,
        max_requests: int = 0,
        max_requests_jitter: int = 0,
        registration: ServerRegistration | None = None,
        admin: tuple[str, int] | None = None,
        metrics: bool | None = None,
        access_log: tuple[str | None, str] | None = None,
        ready: Callable[[Supervisor], None] | None = None,
        reuse_port: bool = False,
        reload_paths: Sequence[str] = (),
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        crash_limit: int = 5,
        crash_window: float = 60.0,
        ready_timeout: float = 60.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if max_requests < 0 or max_requests_jitter < 0:
            raise ValueError("max_requests and max_requests_jitter must be >= 0")
        self.server = server
        self.sockets = list(sockets)
        self._load = load or (lambda: server)
        self.workers = workers
        self._tls = tls
        self.grace = grace
        self.max_requests = max_requests
        self.max_requests_jitter = max_requests_jitter
        self.registration = registration
        self.admin_address = admin
        self.metrics = admin is not None if metrics is None else metrics
        self.access_log = access_log
        self._ready_cb = ready
        self.reuse_port = reuse_port
        self.reload_paths = list(reload_paths)
        self._loop_factory = loop_factory
        self.crash_limit = crash_limit
        self.crash_window = crash_window
        self.ready_timeout = ready_timeout
        self.started = time.time()
        self.restarts = 0
        self.error: str | None = None
        self._workers: dict[int, WorkerInfo] = {}
        self._failures: collections.deque[float] = collections.deque()
        self._retired: list[Series] = []
        self._retired_counters: dict[str, float] = {}
        self._retired_samples: list[Sample] = []
        self._stats_dir: str | None = None
        self._admin: AdminListener | None = None
        self._stopping: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._shutting_down = False
        self._reloading = False
        self._reload_again = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- what the admin listener shows ----------------------------------------------------
    def worker_infos(self) -> list[WorkerInfo]:
        return sorted(self._workers.values(), key=lambda w: w.started)

    def snapshots(self) -> list[Snapshot]:
        """The latest statistics of every live worker."""
        if self._stats_dir is None:
            return []
        out = []
        for pid in list(self._workers):
            snap = read_snapshot(os.path.join(self._stats_dir, f"{pid}.stats"))
            if snap is not None:
                out.append(snap)
        return out

    def retired(self) -> list[Series]:
        """What workers that have exited had counted (so counters never go back)."""
        return self._retired

    def retired_samples(self) -> list[Sample]:
        """The labelled counters of workers that have exited."""
        return self._retired_samples

    def extra(self) -> dict[str, float]:
        live = sum(1 for w in self._workers.values() if w.state == "serving")
        return {**self._retired_counters, "workers": float(live), "restarts": float(self.restarts)}

    def is_ready(self) -> bool:
        serving = sum(1 for w in self._workers.values() if w.state == "serving")
        return not self._shutting_down and serving >= self.workers

    # -- running ------------------------------------------------------------------------
    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns 0, or 1 after a crash loop (see ``error``)."""
        loop = self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        handlers: list[signal.Signals] = []
        for sig, callback in (
            (signal.SIGTERM, self._stopping.set),
            (signal.SIGINT, self._stopping.set),
            (signal.SIGHUP, self.reload),
            (signal.SIGCHLD, self._reap),
        ):
            loop.add_signal_handler(sig, callback)
            handlers.append(sig)
        try:
            if self.metrics:
                self._stats_dir = tempfile.mkdtemp(prefix="h2mesh-stats-")
            if self.admin_address is not None:
                from ._admin import AdminListener

                self._admin = AdminListener(self)
                await self._admin.start(*self.admin_address)
            for _ in range(self.workers):
                self._spawn()
            if await self._wait_all_ready():
                if self.registration is not None:
                    names = [s.getsockname() for s in self.sockets]
                    tcp = [n for n in names if isinstance(n, tuple)]
                    if tcp:
                        await self.registration.start(tcp[0])
                log.info(
                    "supervisor %d: %d workers serving (%s)",
                    os.getpid(),
                    self.workers,
                    ", ".join(str(w.pid) for w in self.worker_infos()),
                )
                if self._ready_cb is not None:
                    self._ready_cb(self)
                if self.reload_paths:
                    self._start(self._watch_sources())
                await self._stopping.wait()
        finally:
            await self._shutdown()
            for sig in handlers:
                loop.remove_signal_handler(sig)
        if self.error is not None:
            log.error("%s", self.error)
            return 1
        return 0

    def stop(self) -> None:
        """Ask ``run()`` to drain the workers and return."""
        if self._stopping is not None:
            self._stopping.set()

    def _start(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fatal(self, message: str) -> None:
        if self.error is None:
            self.error = message
        assert self._stopping is not None
        self._stopping.set()

    def _notify(self) -> None:
        assert self._changed is not None
        self._changed.set()

    async def _wait_all_ready(self) -> bool:
        assert self._stopping is not None and self._changed is not None
        while not self._stopping.is_set():
            if sum(1 for w in self._workers.values() if w.state == "serving") >= self.workers:
                return True
            self._changed.clear()
            await self._changed.wait()
        return False

    # -- workers ------------------------------------------------------------------------
    def _live(self) -> int:
        return sum(1 for w in self._workers.values() if not w.stopping)

    def _spawn(self) -> WorkerInfo:
        loop = self._loop
        assert loop is not None
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_fd)
                code = self._worker_main(write_fd)
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        worker = WorkerInfo(pid, read_fd, loop)
        self._workers[pid] = worker
        loop.add_reader(read_fd, self._on_message, worker)
        log.info("worker %d started", pid)
        return worker

    def _on_message(self, worker: WorkerInfo) -> None:
        try:
            data = os.read(worker.fd, 64)
        except OSError:
            data = b""
        if not data:
            assert self._loop is not None
            self._loop.remove_reader(worker.fd)
            return
        if _READY in data and not worker.ready.done():
            worker.ready.set_result(True)
            self._notify()
        if _RECYCLE in data and not worker.stopping and not self._shutting_down:
            log.info("worker %d served its max_requests; replacing it", worker.pid)
            self._start(self._replace(worker))

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            self._forget(worker, code)
            if worker.stopping or self._shutting_down:
                level = logging.INFO if code == 0 else logging.WARNING
                log.log(level, "worker %d exited (%s)", pid, describe_exit(code))
                continue
            self.restarts += 1
            now = time.monotonic()
            self._failures.append(now)
            while self._failures and self._failures[0] < now - self.crash_window:
                self._failures.popleft()
            if len(self._failures) >= self.crash_limit:
                self._fatal(
                    f"workers died {len(self._failures)} times within {self.crash_window:g} s "
                    f"(the last, pid {pid}, {describe_exit(code)}): stopping"
                )
                return
            delay = min(0.1 * 2 ** (len(self._failures) - 1), 5.0)
            log.warning(
                "worker %d died (%s); starting a new one in %.1f s", pid, describe_exit(code), delay
            )
            assert self._loop is not None
            self._loop.call_later(delay, self._refill)

    def _forget(self, worker: WorkerInfo, code: int) -> None:
        assert self._loop is not None
        self._loop.remove_reader(worker.fd)
        with contextlib.suppress(OSError):
            os.close(worker.fd)
        if not worker.ready.done():
            worker.ready.set_result(False)
        worker.exited.set_result(code)
        if self._stats_dir is not None:
            path = os.path.join(self._stats_dir, f"{worker.pid}.stats")
            snap = read_snapshot(path)
            if snap is not None:
                self._retired = merge_series([self._retired, snap.series])
                for name, value in snap.counters.items():
                    self._retired_counters[name] = self._retired_counters.get(name, 0.0) + value
                counters = [s for s in snap.samples if s.name.endswith("_total")]
                self._retired_samples = merge_samples([self._retired_samples, counters])
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._notify()

    def _refill(self) -> None:
        if not self._shutting_down and self._live() < self.workers:
            self._spawn()

    async def _wait_ready(self, worker: WorkerInfo) -> bool:
        try:
            return await asyncio.wait_for(asyncio.shield(worker.ready), self.ready_timeout)
        except TimeoutError:
            return False

    def _retire(self, worker: WorkerInfo) -> None:
        worker.stopping = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)
        self._notify()

    async def _replace(self, old: WorkerInfo) -> bool:
        """Start a worker, and drain ``old`` once the new one serves."""
        new = self._spawn()
        if not await self._wait_ready(new):
            if new.pid in self._workers:
                log.error("worker %d did not start within %g s", new.pid, self.ready_timeout)
                self._retire(new)
            return False
        if old.pid in self._workers and not old.stopping:
            self._retire(old)
        return True

    def reload(self) -> None:
        """Replace every worker, one at a time (SIGHUP)."""
        if self._shutting_down:
            return
        if self._reloading:
            self._reload_again = True
            return
        self._start(self._reload())

    async def _reload(self) -> None:
        self._reloading = True
        try:
            while True:
                self._reload_again = False
                old = [w for w in self.worker_infos() if not w.stopping]
                log.info("reloading: replacing %d workers one at a time", len(old))
                for worker in old:
                    if self._shutting_down:
                        return
                    if worker.pid not in self._workers or worker.stopping:
                        continue
                    if not await self._replace(worker):
                        log.error("reload stopped: a new worker failed; the old ones keep serving")
                        return
                serving = [str(w.pid) for w in self.worker_infos() if not w.stopping]
                log.info("reloaded: workers %s", ", ".join(serving))
                if not self._reload_again:
                    return
        finally:
            self._reloading = False

    async def _watch_sources(self) -> None:
        try:
            from watchfiles import PythonFilter, awatch
        except ImportError:
            self._fatal("--reload needs watchfiles: pip install 'h2mesh[reload]'")
            return
        assert self._stopping is not None
        async for changes in awatch(
            *self.reload_paths, watch_filter=PythonFilter(), stop_event=self._stopping
        ):
            names = sorted({path.removeprefix(os.getcwd() + os.sep) for _, path in changes})
            log.info("changed: %s; reloading", ", ".join(names[:5]))
            self.reload()

    async def _shutdown(self) -> None:
        self._shutting_down = True
        for task in list(self._tasks):
            task.cancel()
        if self._admin is not None:
            self._admin.draining = True
        if self.registration is not None:
            await self.registration.stop()
        workers = list(self._workers.values())
        for worker in workers:
            self._retire(worker)
        pending = [w.exited for w in workers if not w.exited.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.grace + 5.0)
        for worker in workers:
            if not worker.exited.done():
                log.warning("worker %d did not drain in time; killing it", worker.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
        pending = [w.exited for w in workers if not w.exited.done()]
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        if self._admin is not None:
            await self._admin.close()
        if self._stats_dir is not None:
            shutil.rmtree(self._stats_dir, ignore_errors=True)

    # -- inside a worker -------------------------------------------------------------------
    def _worker_main(self, pipe: int) -> int:
        # The supervisor's signal handling and loop are not ours: start afresh.
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload is the supervisor's job
        for other in self._workers.values():
            with contextlib.suppress(OSError):
                os.close(other.fd)
        if self._admin is not None:
            self._admin.close_in_child()
        self._workers = {}
        server = self._load()
        server.registration = None  # the supervisor registers the server once
        sockets = self._worker_sockets()
        stats = CallStats() if self._stats_dir is not None else None
        access = AccessLog(*self.access_log) if self.access_log is not None else None
        on_request = self._request_counter(pipe) if self.max_requests else None
        observer = observer_of(server)
        observer.stats, observer.access, observer.on_request = stats, access, on_request
        if observer.active:
            server.observer = observer
        if stats is not None:
            attach_stats(server, stats)

        def ready(_: Server) -> None:
            os.write(pipe, _READY)

        parent = os.getppid()

        async def main() -> None:
            flusher = None
            if stats is not None:
                flusher = asyncio.ensure_future(self._flush_stats(stats))
            orphaned = asyncio.ensure_future(_watch_parent(parent, server))
            try:
                await server.serve(sockets=sockets, tls=self._tls(), grace=self.grace, ready=ready)
            finally:
                orphaned.cancel()
                if flusher is not None:
                    flusher.cancel()
                if stats is not None:
                    self._write_stats(stats)

        factory = self._loop_factory
        if factory is None:
            from .._loop import new_event_loop

            factory = new_event_loop
        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(main())
        finally:
            if access is not None:
                access.close()
        return 0

    def _worker_sockets(self) -> list[socket.socket]:
        if not self.reuse_port:
            return self.sockets
        out = []
        for sock in self.sockets:
            name = sock.getsockname()
            if isinstance(name, tuple):
                out.append(bind_tcp(str(name[0]), int(name[1]), reuse_port=True))
                sock.close()
            else:
                out.append(sock)
        return out

    def _request_counter(self, pipe: int) -> Callable[[], None]:
        limit = self.max_requests + random.randint(0, self.max_requests_jitter)
        count = 0

        def on_request() -> None:
            nonlocal count
            count += 1
            if count == limit:
                with contextlib.suppress(OSError):
                    os.write(pipe, _RECYCLE)

        return on_request

    async def _flush_stats(self, stats: CallStats) -> None:
        while True:
            self._write_stats(stats)
            await asyncio.sleep(STATS_INTERVAL)

    def _write_stats(self, stats: CallStats) -> None:
        assert self._stats_dir is not None
        with contextlib.suppress(OSError):
            write_snapshot(self._stats_dir, process_snapshot(stats, os.getpid(), self.started))


async def _watch_parent(parent: int, server: Server) -> None:
    """Drain and exit if the supervisor dies (its workers are then re-parented)."""
    # Nothing signals a parent's death portably; checking once a second is what
    # gunicorn's workers do too.
    while os.getppid() == parent:  # noqa: ASYNC110
        await asyncio.sleep(1.0)
    log.warning("the supervisor %d is gone; worker %d stops", parent, os.getpid())
    server.request_stop()

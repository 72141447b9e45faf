"""Replica processes for the registry and mesh tests: ``h2mesh serve ... --register NAME``.

``start_replicas`` launches several at once (they import in parallel) and waits for each
one's ready line; every replica registers itself in the embedded registry file given as
``H2MESH_REGISTRY``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
H2MESH = Path(sys.executable).parent / "h2mesh"
STARTUP_TIMEOUT = 15.0
READY = "h2mesh serving on "


class Replica:
    """One running ``h2mesh serve`` process."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log
        self.url = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        """``host:port`` as registered."""
        return self.url.removeprefix("http://")

    def terminate(self) -> None:
        """SIGTERM: graceful stop (deregister, GOAWAY, drain)."""
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a crash; the registry entry lapses after its TTL."""
        self.proc.kill()

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_replicas(
    count: int,
    tmp: Path,
    registry: Path,
    *,
    target: str = "tests.e2e.mesh_service:Mesh",
    register: str = "mesh.v1.Mesh",
    ttl: float = 10.0,
    grace: float = 5.0,
    env: Mapping[str, str] | Sequence[Mapping[str, str]] = {},
    extra: Sequence[str] = (),
) -> list[Replica]:
    """Start ``count`` replicas, each registered as ``register``; ``env`` is shared or one
    mapping per replica. Replicas alternate between the uvloop and asyncio loops."""
    assert H2MESH.exists(), f"the h2mesh script is missing: pip install -e {REPO}"
    envs = [env] * count if isinstance(env, Mapping) else list(env)
    assert len(envs) == count
    replicas = []
    for i, extra_env in enumerate(envs):
        log = tmp / f"replica-{i}-{time.monotonic_ns()}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [
                    str(H2MESH),
                    "serve",
                    target,
                    "--port",
                    "0",
                    "--register",
                    register,
                    "--register-ttl",
                    str(ttl),
                    "--grace",
                    str(grace),
                    "--loop",
                    ("uvloop", "asyncio")[i % 2],
                    "--log-level",
                    "warning",
                    *extra,
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ, "H2MESH_REGISTRY": str(registry), **extra_env},
            )
        replicas.append(Replica(proc, log))
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        for replica in replicas:
            assert replica.proc.stdout is not None
            ready, _, _ = select.select(
                [replica.proc.stdout], [], [], max(deadline - time.monotonic(), 0)
            )
            line = replica.proc.stdout.readline().decode() if ready else ""
            if not line.startswith(READY):
                raise AssertionError(f"replica did not start: {line!r}\n{replica.output()}")
            replica.url = line.removeprefix(READY).strip()
    except BaseException:
        for replica in replicas:
            replica.stop()
        raise
    return replicas


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> float:
    """Poll ``predicate`` until true; returns the seconds it took, fails after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - start

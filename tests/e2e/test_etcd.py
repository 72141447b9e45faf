"""Discovery against a real etcd (Debian's etcd-server) on 127.0.0.1 with run-time ports."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from h2mesh.discovery import EtcdClient, EtcdRegistrar, EtcdResolver, resolve

from ..conftest import require_binary

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A single-member etcd; yields its client port."""
    binary = require_binary("etcd")
    data = tmp_path_factory.mktemp("etcd")
    client, peer = free_port(), free_port()
    log = (Path(data) / "etcd.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            "--name=h2mesh-test",
            f"--data-dir={data / 'data'}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=h2mesh-test=http://127.0.0.1:{peer}",
            "--log-level=error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                asyncio.run(EtcdClient("127.0.0.1", client, timeout=1).get_prefix(b"/"))
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"etcd did not start: {(Path(data) / 'etcd.log').read_text()}")
                time.sleep(0.1)
        yield client
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def wait_for(resolver: EtcdResolver, expected: list[str], within: float) -> None:
    start = time.monotonic()
    while [ep.address for ep in resolver.current or ()] != expected:
        if time.monotonic() - start > within:
            got = [ep.address for ep in resolver.current or ()]
            raise AssertionError(f"expected {expected}, have {got} (error: {resolver.last_error})")
        await asyncio.sleep(0.02)


def test_register_watch_deregister_and_lease_expiry(run: Run, etcd: int, loop_kind: str) -> None:
    service = f"demo-{loop_kind}"

    async def main() -> None:
        resolver = resolve(f"etcd://127.0.0.1:{etcd}/{service}")
        assert isinstance(resolver, EtcdResolver)
        async with EtcdRegistrar("127.0.0.1", etcd) as registrar, resolver:
            assert await resolver.first(5.0) == ()
            await registrar.register(
                service, "127.0.0.1:7001", ttl=10, weight=3, metadata={"z": "a"}
            )
            await registrar.register(service, "127.0.0.1:7002", ttl=10)
            await wait_for(resolver, ["127.0.0.1:7001", "127.0.0.1:7002"], 3.0)
            first = resolver.current
            assert (
                first is not None and first[0].weight == 3 and dict(first[0].metadata) == {"z": "a"}
            )

            await registrar.deregister(service, "127.0.0.1:7001")
            await wait_for(resolver, ["127.0.0.1:7002"], 3.0)

            # A process that crashes: its keepalives stop and the 2 s lease runs out.
            crashed = EtcdRegistrar("127.0.0.1", etcd)
            await crashed.register(service, "127.0.0.1:7003", ttl=2)
            await wait_for(resolver, ["127.0.0.1:7002", "127.0.0.1:7003"], 3.0)
            crashed.stop_heartbeats()
            started = time.monotonic()
            await wait_for(resolver, ["127.0.0.1:7002"], 6.0)
            assert time.monotonic() - started > 0.5  # gone by expiry, not at once

            # A live registration with the same short lease stays thanks to its keepalive.
            await registrar.register(service, "127.0.0.1:7004", ttl=2)
            await asyncio.sleep(3.0)
            assert [ep.address for ep in resolver.current or ()] == [
                "127.0.0.1:7002",
                "127.0.0.1:7004",
            ]
        _, kvs = await EtcdClient("127.0.0.1", etcd).get_prefix(
            f"/h2mesh/services/{service}/".encode()
        )
        assert kvs == []

    run(main())

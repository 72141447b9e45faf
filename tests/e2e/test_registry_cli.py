"""Servers registering themselves, and ``h2mesh registry list|watch|remove``, as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from examples.greeter import Greeter

from h2mesh import Server
from h2mesh.discovery import Registry, RegistryRegistrar

from .replica import H2MESH, REPO, Replica, start_replicas, wait_until
from .test_etcd import etcd  # noqa: F401 - the module-scoped etcd fixture

Run = Callable[[Coroutine[Any, Any, Any]], Any]

SERVICE = "demo.v1.Greeter"
GREETER = "examples.greeter:Greeter"


@pytest.fixture
def registry_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "registry.db"
    monkeypatch.setenv("H2MESH_REGISTRY", str(path))
    return path


def h2mesh(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(H2MESH), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def listed(registry: str | None = None) -> dict[str, list[dict[str, Any]]]:
    extra = ("--registry", registry) if registry else ()
    out = h2mesh("registry", "list", "--json", *extra)
    assert out.returncode == 0, out.stderr
    doc: dict[str, list[dict[str, Any]]] = json.loads(out.stdout)
    return doc


def live(path: Path, service: str = SERVICE) -> set[str]:
    reg = Registry(path)
    try:
        return {ep.address for ep in reg.lookup(service)[0]}
    finally:
        reg.close()


class Watch:
    """A running ``h2mesh registry watch``, ready once it has read the first snapshot."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(H2MESH), "registry", "watch", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        ready, _, _ = select.select([self.proc.stderr], [], [], 10.0)
        line = self.proc.stderr.readline() if ready else ""
        if not line.startswith("watching "):
            self.proc.kill()
            pytest.fail(f"registry watch did not start: {line!r}")

    def lines(self, timeout: float = 10.0) -> list[str]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        return out.splitlines()


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop()


# -- Server(register=...) in process ------------------------------------------------------
def test_server_registers_and_deregisters_before_closing(run: Run, registry_path: Path) -> None:
    async def main() -> None:
        server = Server([Greeter()], register=SERVICE, register_ttl=5.0)
        await server.start("0.0.0.0", 0)
        port = server.port
        address = f"127.0.0.1:{port}"  # a wildcard bind is announced on loopback
        reg = Registry(registry_path)
        endpoints, _ = reg.lookup(SERVICE)
        assert [ep.address for ep in endpoints] == [address]
        assert endpoints[0].metadata["pid"] == str(os.getpid())

        stopping = asyncio.create_task(server.stop(grace=1.0))
        t0 = time.monotonic()
        while reg.lookup(SERVICE)[0]:
            assert time.monotonic() - t0 < 1.0, "not deregistered at once"
            await asyncio.sleep(0.01)
        # Deregistered first: the listener still accepts while clients catch up.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await stopping
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        reg.close()

    run(main())


def test_server_register_address_and_own_registrar(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "own.db"

    async def main() -> None:
        registrar = RegistryRegistrar(path)
        server = Server(
            [Greeter()],
            register=SERVICE,
            registry=registrar,
            register_address="10.9.8.7",  # announced, never dialled
        )
        await server.start("127.0.0.1", 0)
        assert live(path) == {f"10.9.8.7:{server.port}"}
        await server.stop(grace=0.5)
        assert live(path) == set()
        # A registrar the caller passed in stays usable.
        await registrar.register("other", "127.0.0.1:1", ttl=5.0)
        assert live(path, "other") == {"127.0.0.1:1"}
        await registrar.aclose()

        server = Server(
            [Greeter()], register=SERVICE, registry=f"registry://{path}", register_address="h:81"
        )
        await server.start("127.0.0.1", 0)
        assert live(path) == {"h:81"}
        await server.stop(grace=0.5)
        assert live(path) == set()

    run(main())


def test_bad_registration_options() -> None:
    for kwargs in (
        {"registry": "ftp://x"},
        {"registry": "etcd://h:1/extra"},
        {"registry": "registry://relative.db"},
        {"register_ttl": 0.0},
    ):
        with pytest.raises(ValueError):
            Server([Greeter()], register=SERVICE, **kwargs)
    out = h2mesh("serve", GREETER, "--port", "0", "--register", "x", "--registry", "ftp://x")
    assert out.returncode == 2 and "unsupported registry" in out.stderr
    out = h2mesh("registry", "list", "--registry", "nope")
    assert out.returncode == 2 and "unsupported registry" in out.stderr


# -- real replicas and the CLI ------------------------------------------------------------
def test_list_watch_sigterm_sigkill(
    registry_path: Path, tmp_path: Path, replicas: list[Replica]
) -> None:
    ttl = 1.5
    replicas += start_replicas(
        3, tmp_path, registry_path, target=GREETER, register=SERVICE, ttl=ttl
    )
    doc = listed()
    assert list(doc) == [SERVICE]
    assert {e["address"] for e in doc[SERVICE]} == {r.address for r in replicas}
    assert {e["metadata"]["pid"] for e in doc[SERVICE]} == {str(r.pid) for r in replicas}
    assert all(e["weight"] == 1 and 0 < e["expires_in"] <= ttl for e in doc[SERVICE])

    table = h2mesh("registry", "list").stdout.splitlines()
    assert table[0].split() == ["SERVICE", "ADDRESS", "WEIGHT", "EXPIRES", "IN", "METADATA"]
    assert sorted(line.split()[1] for line in table[1:]) == sorted(r.address for r in replicas)

    watch = Watch("--count", "3", "--timeout", "15")
    graceful, crashed, _ = replicas

    # SIGTERM: deregistered at once, before the server drains.
    graceful.terminate()
    took = wait_until(
        lambda: graceful.address not in live(registry_path), 1.0, "SIGTERMed replica listed"
    )
    assert graceful.wait() == 0
    assert took < 1.0

    # SIGKILL: nothing deregisters; the entry lapses after its TTL.
    crashed.kill()
    crashed.wait()
    killed_at = time.monotonic()
    assert crashed.address in live(registry_path)
    wait_until(lambda: crashed.address not in live(registry_path), ttl + 1.0, "killed replica")
    assert time.monotonic() - killed_at > ttl / 3  # it expired; nobody removed it

    [newcomer] = start_replicas(1, tmp_path, registry_path, target=GREETER, register=SERVICE)
    replicas.append(newcomer)
    assert sorted(watch.lines()) == sorted(
        [
            f"- {SERVICE} {graceful.address} (removed)",
            f"- {SERVICE} {crashed.address} (expired)",
            f"+ {SERVICE} {newcomer.address} weight=1 pid={newcomer.pid}",
        ]
    )
    assert {e["address"] for e in listed()[SERVICE]} == {replicas[2].address, newcomer.address}


def test_watch_stops_on_timeout_and_sigterm(registry_path: Path) -> None:
    t0 = time.monotonic()
    assert Watch("--timeout", "0.3").lines() == []
    assert time.monotonic() - t0 < 5
    watch = Watch()
    watch.proc.terminate()
    assert watch.lines() == []


def test_remove(registry_path: Path, tmp_path: Path, replicas: list[Replica]) -> None:
    reg = Registry(registry_path)
    reg.put("demo.v1.Stale", "127.0.0.1:1", ttl=60.0)
    reg.put("demo.v1.Stale", "127.0.0.1:2", ttl=60.0)
    reg.put("demo.v1.Gone", "127.0.0.1:3", ttl=60.0)
    out = h2mesh("registry", "remove", "demo.v1.Stale", "127.0.0.1:1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "removed 1 endpoint of demo.v1.Stale\n"
    assert live(registry_path, "demo.v1.Stale") == {"127.0.0.1:2"}
    out = h2mesh("registry", "remove", "demo.v1.Stale", "127.0.0.1:1")
    assert out.returncode == 1 and "not registered" in out.stderr
    out = h2mesh("registry", "remove", "demo.v1.Gone")
    assert out.returncode == 0 and out.stdout == "removed 1 endpoint of demo.v1.Gone\n"
    assert set(listed()) == {"demo.v1.Stale"}
    reg.close()

    # A live server's entry comes back at its next heartbeat (every ttl / 3).
    replicas += start_replicas(
        1, tmp_path, registry_path, target=GREETER, register=SERVICE, ttl=1.5
    )
    [replica] = replicas
    out = h2mesh("registry", "remove", SERVICE)
    # What was removed is what the command says; the entry itself may already be back,
    # since a heartbeat can land between the removal and any look at the registry.
    assert out.returncode == 0 and out.stdout == f"removed 1 endpoint of {SERVICE}\n"
    wait_until(lambda: replica.address in live(registry_path), 2.0, "re-registration")


# -- etcd ---------------------------------------------------------------------------------
def test_etcd_registry(etcd: int, tmp_path: Path, replicas: list[Replica]) -> None:  # noqa: F811
    url = f"etcd://127.0.0.1:{etcd}"
    registry = tmp_path / "unused.db"
    replicas += start_replicas(
        2,
        tmp_path,
        registry,
        target=GREETER,
        register="demo.v1.EtcdGreeter",
        ttl=5.0,
        extra=("--registry", url),
    )
    doc = listed(url)
    entries = doc["demo.v1.EtcdGreeter"]
    assert {e["address"] for e in entries} == {r.address for r in replicas}
    assert all(0 < e["expires_in"] <= 5 for e in entries)
    assert "demo.v1.EtcdGreeter" not in listed()  # nothing went to the embedded registry

    watch = Watch("--registry", url, "--count", "2", "--timeout", "10")
    first, second = replicas
    first.terminate()
    assert first.wait() == 0
    out = h2mesh("registry", "remove", "--registry", url, "demo.v1.EtcdGreeter", second.address)
    assert out.returncode == 0, out.stderr
    assert watch.lines() == [
        f"- demo.v1.EtcdGreeter {first.address} (removed)",
        f"- demo.v1.EtcdGreeter {second.address} (removed)",
    ]
    assert "demo.v1.EtcdGreeter" not in listed(url)

    out = h2mesh("registry", "list", "--registry", "etcd://127.0.0.1:1")
    assert out.returncode == 1 and "not reachable" in out.stderr

"""Resolvers and the embedded registry (a real SQLite file in a tmp dir)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from h2mesh.balancing import Endpoint
from h2mesh.discovery import (
    DnsResolver,
    EtcdResolver,
    Registry,
    RegistryRegistrar,
    RegistryResolver,
    StaticResolver,
    default_registry_path,
    parse_address,
    resolve,
)

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture
def registry_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "registry.db"
    monkeypatch.setenv("H2MESH_REGISTRY", str(path))
    return path


def addresses(endpoints: tuple[Endpoint, ...] | None) -> list[str]:
    return [ep.address for ep in endpoints or ()]


def test_parse_address() -> None:
    assert parse_address("a:1") == ("a", 1)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert parse_address("name", 50) == ("name", 50)
    for bad in ("a:b", "a:0", ":80", "a:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_resolve_picks_resolver_by_scheme(registry_path: Path) -> None:
    r = resolve("http://127.0.0.1:8080")
    assert isinstance(r, StaticResolver) and addresses(r.current) == ["127.0.0.1:8080"]
    assert addresses(resolve("https://example.test").current) == ["example.test:443"]
    static = resolve("static://b:2,a:1,[::1]:3")
    assert addresses(static.current) == ["[::1]:3", "a:1", "b:2"]
    dns = resolve("dns://localhost:81")
    assert isinstance(dns, DnsResolver) and (dns.host, dns.port) == ("localhost", 81)
    assert isinstance(resolve("dns:///localhost:81"), DnsResolver)
    reg = resolve("registry://demo.v1.Greeter")
    assert isinstance(reg, RegistryResolver) and reg.service == "demo.v1.Greeter"
    etcd = resolve("etcd://127.0.0.1:2379/demo")
    assert isinstance(etcd, EtcdResolver) and etcd.service == "demo"
    for bad in ("ftp://x", "nope", "static://", "registry://", "etcd://h:1/", "dns://h"):
        with pytest.raises(ValueError):
            resolve(bad)


def test_default_registry_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("H2MESH_REGISTRY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_registry_path() == tmp_path / "h2mesh" / "registry.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_registry_path() == Path.home() / ".local/share/h2mesh/registry.db"
    monkeypatch.setenv("H2MESH_REGISTRY", str(tmp_path / "x.db"))
    assert default_registry_path() == tmp_path / "x.db"


def test_static_resolver_updates_yield_once_and_end_on_close(run: Run) -> None:
    async def main() -> None:
        resolver = resolve("static://a:1,b:2")
        assert addresses(await resolver.first(1.0)) == ["a:1", "b:2"]
        seen: list[list[str]] = []

        async def consume() -> None:
            seen.extend([addresses(eps) async for eps in resolver.updates()])

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        await resolver.aclose()
        await asyncio.wait_for(task, 1.0)
        assert seen == [["a:1", "b:2"]]

    run(main())


def test_dns_resolver_resolves_localhost_and_refreshes(run: Run) -> None:
    async def main() -> None:
        async with DnsResolver("localhost", 8080, interval=60, min_interval=0.01) as resolver:
            first = await resolver.first(5.0)
            assert first and {ep.port for ep in first} == {8080}
            assert {ep.host for ep in first} <= {"127.0.0.1", "::1"}
            resolver.refresh()
            await asyncio.sleep(0.05)
            assert resolver.current == first

    run(main())


def test_dns_failure_is_reported_on_timeout(run: Run) -> None:
    async def main() -> None:
        async with DnsResolver("no-such-host.invalid", 80, min_interval=0.01) as resolver:
            with pytest.raises(TimeoutError, match="resolved nothing"):
                await resolver.first(0.5)
            assert resolver.last_error is not None

    run(main())


def test_registry_rows_expire_and_prune(registry_path: Path) -> None:
    now = [1_000_000.0]
    reg = Registry(clock=lambda: now[0])  # an injected clock: no waiting, no racing
    assert reg.path == registry_path
    reg.put("svc", "127.0.0.1:1", ttl=60, weight=3, metadata={"zone": "a"})
    reg.put("svc", "127.0.0.1:2", ttl=10)
    assert len(reg.lookup("svc")[0]) == 2
    now[0] += 10  # the second row's ttl is over
    endpoints, expiry = reg.lookup("svc")
    assert [(ep.address, ep.weight, dict(ep.metadata)) for ep in endpoints] == [
        ("127.0.0.1:1", 3, {"zone": "a"})
    ]
    assert expiry == 1_000_060.0
    assert reg.prune() == 1
    assert list(reg.services()) == ["svc"]
    assert not reg.touch("svc", "127.0.0.1:2", 10)
    reg.close()
    mode = Registry(registry_path)._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_registry_watch_sees_register_deregister_and_expiry(run: Run, registry_path: Path) -> None:
    async def wait_for(resolver: RegistryResolver, expected: list[str], within: float) -> float:
        start = time.monotonic()
        while addresses(resolver.current) != expected:
            assert time.monotonic() - start < within, (addresses(resolver.current), expected)
            await asyncio.sleep(0.02)
        return time.monotonic() - start

    async def main() -> None:
        async with RegistryRegistrar() as registrar, resolve("registry://svc") as resolver:
            assert isinstance(resolver, RegistryResolver)
            assert await resolver.first(2.0) == ()
            await registrar.register("svc", "127.0.0.1:1001", ttl=30, weight=2)
            await registrar.register("svc", "127.0.0.1:1002", ttl=30)
            await registrar.register("other", "127.0.0.1:9", ttl=30)
            assert await wait_for(resolver, ["127.0.0.1:1001", "127.0.0.1:1002"], 1.0) < 1.0
            assert resolver.current is not None and resolver.current[0].weight == 2
            await registrar.deregister("svc", "127.0.0.1:1001")
            await wait_for(resolver, ["127.0.0.1:1002"], 1.0)

            # A crashed process: its row stops being refreshed and lapses after the TTL.
            crashed = RegistryRegistrar()
            await crashed.register("svc", "127.0.0.1:1003", ttl=0.6)
            await wait_for(resolver, ["127.0.0.1:1002", "127.0.0.1:1003"], 1.0)
            crashed.stop_heartbeats()
            await wait_for(resolver, ["127.0.0.1:1002"], 1.5)
            await crashed._close_backend()

            # A live one with a short TTL survives thanks to its heartbeat.
            await registrar.register("svc", "127.0.0.1:1004", ttl=0.3)
            await asyncio.sleep(0.8)
            assert addresses(resolver.current) == ["127.0.0.1:1002", "127.0.0.1:1004"]
        # Closing the registrar deregistered everything.
        assert Registry(registry_path).services() == {}

    run(main())


def test_registry_manual_heartbeat_recreates_pruned_row(run: Run, registry_path: Path) -> None:
    async def main() -> None:
        async with RegistryRegistrar(registry_path) as registrar:
            await registrar.register("svc", "127.0.0.1:7", ttl=0.05, heartbeat=False)
            await asyncio.sleep(0.1)
            Registry(registry_path).prune()
            await registrar.heartbeat("svc", "127.0.0.1:7")
            assert [ep.address for ep in Registry(registry_path).lookup("svc")[0]] == [
                "127.0.0.1:7"
            ]
            with pytest.raises(KeyError):
                await registrar.heartbeat("svc", "127.0.0.1:8")

    run(main())

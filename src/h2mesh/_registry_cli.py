"""``h2mesh registry list|watch|remove``: look into the registry servers announce themselves in.

The registry is ``--registry URL`` (``registry://``, ``registry:///FILE``, ``etcd://host:port``),
by default the embedded SQLite registry at ``$H2MESH_REGISTRY``. ``watch`` prints one line per
change::

    + demo.v1.Greeter 127.0.0.1:40123 weight=1 pid=4242     (registered)
    ~ demo.v1.Greeter 127.0.0.1:40123 weight=2 pid=4242     (weight or metadata changed)
    - demo.v1.Greeter 127.0.0.1:40123 (removed)             (deregistered or deleted)
    - demo.v1.Greeter 127.0.0.1:40123 (expired)             (its TTL ran out)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ._cli_util import FAILED, UsageError
from ._loop import new_event_loop
from .discovery import ETCD_PREFIX, EtcdClient, HttpError, Registry, etcd_key, parse_registry_url

__all__ = ["add_registry_parser"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One registered endpoint as the tools show it."""

    service: str
    address: str
    weight: int = 1
    metadata: dict[str, str] = field(default_factory=dict)
    expires_at: float | None = None  # wall clock; None when the backend does not say

    @property
    def key(self) -> tuple[str, str]:
        return self.service, self.address

    def describe(self) -> str:
        meta = " ".join(f"{k}={v}" for k, v in sorted(self.metadata.items()))
        return f"{self.service} {self.address} weight={self.weight}" + (f" {meta}" if meta else "")


# -- backends -----------------------------------------------------------------------------
class _SqliteBackend:
    def __init__(self, path: str | None, poll_interval: float = 0.1) -> None:
        self.registry = Registry(path)
        self.poll_interval = poll_interval

    def __str__(self) -> str:
        return f"registry {self.registry.path}"

    async def entries(self) -> list[Entry]:
        rows = await asyncio.to_thread(self.registry.entries)
        return [
            Entry(service, ep.address, ep.weight, dict(ep.metadata), expires)
            for service, ep, expires in rows
        ]

    async def remove(self, service: str, address: str | None) -> int:
        doomed = [e for e in await self.entries() if e.service == service]
        if address is not None:
            doomed = [e for e in doomed if e.address == address]
        for entry in doomed:
            await asyncio.to_thread(self.registry.delete, entry.service, entry.address)
        return len(doomed)

    async def changes(self) -> AsyncIterator[list[Entry]]:
        """The current entries, then again whenever they may have changed."""
        version: int | None = None
        next_expiry = None
        while True:
            current = self.registry.data_version()
            if current != version or (next_expiry is not None and time.time() >= next_expiry):
                version = current
                entries = await self.entries()
                next_expiry = min((e.expires_at or 0.0 for e in entries), default=None)
                yield entries
            await asyncio.sleep(self.poll_interval)

    def close(self) -> None:
        self.registry.close()


class _EtcdBackend:
    def __init__(self, host: str, port: int) -> None:
        self.client = EtcdClient(host, port)

    def __str__(self) -> str:
        return f"etcd {self.client.host}:{self.client.port}"

    @staticmethod
    def _entry(key: bytes, value: bytes, expires_at: float | None = None) -> Entry | None:
        service, _, address = key.decode(errors="replace").removeprefix(ETCD_PREFIX).rpartition("/")
        try:
            doc = msgspec.json.decode(value)
            meta = doc.get("metadata") or {}
            return Entry(
                service,
                str(doc.get("address", address)),
                int(doc.get("weight", 1)),
                {str(k): str(v) for k, v in meta.items()},
                expires_at,
            )
        except (msgspec.DecodeError, AttributeError, TypeError, ValueError):
            return None

    async def entries(self) -> list[Entry]:
        _, kvs = await self.client.get_prefix_leases(ETCD_PREFIX.encode())
        ttls: dict[int, float] = {}
        for lease in {lease for _, _, lease in kvs if lease}:
            ttls[lease] = time.time() + await self.client.time_to_live(lease)
        out = [self._entry(key, value, ttls.get(lease)) for key, value, lease in kvs]
        return sorted((e for e in out if e is not None), key=lambda e: e.key)

    async def remove(self, service: str, address: str | None) -> int:
        if address is None:
            return await self.client.delete(etcd_key(service), prefix=True)
        return await self.client.delete(etcd_key(service, address))

    async def changes(self) -> AsyncIterator[list[Entry]]:
        async for current in self.client.watch(ETCD_PREFIX.encode(), self._entry):
            yield sorted(current.values(), key=lambda e: e.key)

    def close(self) -> None:
        pass


_Backend = _SqliteBackend | _EtcdBackend


def _backend(url: str | None) -> _Backend:
    try:
        kind, where, port = parse_registry_url(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if kind == "etcd":
        assert where is not None
        return _EtcdBackend(where, port)
    return _SqliteBackend(where)


# -- commands -----------------------------------------------------------------------------
def _expires(entry: Entry, now: float) -> str:
    return "-" if entry.expires_at is None else f"{max(entry.expires_at - now, 0.0):.1f}s"


async def _list(args: argparse.Namespace, backend: _Backend) -> int:
    entries = [e for e in await backend.entries() if args.service in (None, e.service)]
    now = time.time()
    if args.json:
        doc: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            doc.setdefault(e.service, []).append(
                {
                    "address": e.address,
                    "weight": e.weight,
                    "metadata": e.metadata,
                    "expires_in": None if e.expires_at is None else round(e.expires_at - now, 3),
                }
            )
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
        return 0
    if not entries:
        print(f"no live endpoints in {backend}", file=sys.stderr)
        return 0
    rows = [("SERVICE", "ADDRESS", "WEIGHT", "EXPIRES IN", "METADATA")]
    for e in entries:
        meta = ",".join(f"{k}={v}" for k, v in sorted(e.metadata.items())) or "-"
        rows.append((e.service, e.address, str(e.weight), _expires(e, now), meta))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]))
    return 0


def _diff(old: dict[tuple[str, str], Entry], new: dict[tuple[str, str], Entry]) -> list[str]:
    now = time.time()
    lines = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before is None and after is not None:
            lines.append(f"+ {after.describe()}")
        elif after is None and before is not None:
            expired = before.expires_at is not None and before.expires_at <= now
            lines.append(f"- {key[0]} {key[1]} ({'expired' if expired else 'removed'})")
        elif (
            before is not None
            and after is not None
            and (before.weight, before.metadata) != (after.weight, after.metadata)
        ):
            lines.append(f"~ {after.describe()}")
    return lines


async def _watch(args: argparse.Namespace, backend: _Backend) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    printed = 0

    async def follow() -> None:
        nonlocal printed
        seen: dict[tuple[str, str], Entry] | None = None
        async for entries in backend.changes():
            current = {e.key: e for e in entries if args.service in (None, e.service)}
            if seen is None:
                print(f"watching {backend}: {len(current)} endpoints", file=sys.stderr, flush=True)
            else:
                for line in _diff(seen, current):
                    print(line, flush=True)
                    printed += 1
                    if args.count is not None and printed >= args.count:
                        return
            seen = current

    task = loop.create_task(follow())
    stopper = loop.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, timeout=args.timeout, return_when="FIRST_COMPLETED")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for t in (task, stopper):
            t.cancel()
        for t in (task, stopper):
            with contextlib.suppress(asyncio.CancelledError):
                await t
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    return 0


async def _remove(args: argparse.Namespace, backend: _Backend) -> int:
    removed = await backend.remove(args.service, args.address)
    what = args.address or "every endpoint"
    if removed == 0:
        print(f"error: {what} of {args.service} is not registered in {backend}", file=sys.stderr)
        return FAILED
    print(f"removed {removed} endpoint{'s' if removed != 1 else ''} of {args.service}")
    return 0


def _run(command: Callable[[argparse.Namespace, _Backend], Any]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        backend = _backend(args.registry)
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                result: int = runner.run(command(args, backend))
                return result
        except (HttpError, OSError, TimeoutError) as exc:
            print(f"error: {backend} is not reachable: {exc}", file=sys.stderr)
            return FAILED
        finally:
            backend.close()

    return run


def add_registry_parser(sub: Any) -> None:
    """Add ``registry list|watch|remove`` to the ``h2mesh`` subcommands ``sub``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--registry",
        metavar="URL",
        help="registry://, registry:///FILE or etcd://HOST:PORT "
        "(default: the embedded registry at $H2MESH_REGISTRY)",
    )
    registry = sub.add_parser(
        "registry",
        help="list, watch or remove registered endpoints",
        description="Inspect the registry that servers started with --register announce "
        "themselves in.",
    )
    actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION")

    ls = actions.add_parser("list", parents=[common], help="live services and endpoints")
    ls.add_argument("service", nargs="?", help="only this service")
    ls.add_argument("--json", action="store_true", help="one JSON object {service: [...]}")
    ls.set_defaults(func=_run(_list))

    watch = actions.add_parser(
        "watch", parents=[common], help="print changes as they happen (until SIGINT/SIGTERM)"
    )
    watch.add_argument("service", nargs="?", help="only this service")
    watch.add_argument("--count", type=int, metavar="N", help="stop after N changes")
    watch.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after SECONDS")
    watch.set_defaults(func=_run(_watch))

    rm = actions.add_parser(
        "remove",
        parents=[common],
        help="delete an endpoint, or every endpoint of a service",
        description="Delete entries (e.g. of a crashed process, before their TTL runs out). "
        "A live server using the embedded registry re-registers at its next heartbeat.",
    )
    rm.add_argument("service", metavar="SERVICE")
    rm.add_argument("address", metavar="ADDRESS", nargs="?", help="host:port (default: all)")
    rm.set_defaults(func=_run(_remove))

"""The embedded registry: one SQLite file (WAL mode) shared by the processes of a machine.

Table ``endpoints(service, address, weight, metadata, expires_at)``; ``expires_at`` is
wall-clock time (``time.time()``) because the processes sharing the file share no other
clock. Registrars insert with a TTL and heartbeat; readers ignore expired rows, and
writers prune them. Watchers poll ``PRAGMA data_version`` (a counter SQLite bumps when
another connection commits: one shared-memory read, no disk I/O) every ``poll_interval``
and re-read only when it moved or when a row they hold has expired.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._endpoint import Endpoint
from ._registrar import Registrar, Registration
from ._resolver import Resolver

__all__ = ["Registry", "RegistryRegistrar", "RegistryResolver", "default_registry_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    service    TEXT NOT NULL,
    address    TEXT NOT NULL,
    weight     INTEGER NOT NULL DEFAULT 1,
    metadata   TEXT NOT NULL DEFAULT '{}',
    expires_at REAL NOT NULL,
    PRIMARY KEY (service, address)
) WITHOUT ROWID
"""


def default_registry_path() -> Path:
    """``$H2MESH_REGISTRY``, else ``$XDG_DATA_HOME/h2mesh/registry.db``
    (``~/.local/share/h2mesh/registry.db`` when XDG_DATA_HOME is unset)."""
    explicit = os.environ.get("H2MESH_REGISTRY")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "h2mesh" / "registry.db"


class Registry:
    """A connection to the registry file; every method is short and synchronous.

    Safe to call from worker threads (one lock around the connection); async code calls
    the writes through ``asyncio.to_thread`` since they may wait on another writer.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path) if path is not None else default_registry_path()
        # Wall-clock seconds: the processes sharing the file share no other clock.
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        with self._lock:
            _enable_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the file."""
        with self._lock:
            row = self._db.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def put(
        self,
        service: str,
        address: str,
        ttl: float,
        weight: int = 1,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        now = self._clock()
        with self._lock:
            self._db.execute("DELETE FROM endpoints WHERE expires_at <= ?", (now,))
            self._db.execute(
                "INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?, ?, ?)",
                (service, address, weight, json.dumps(dict(metadata or {})), now + ttl),
            )

    def touch(self, service: str, address: str, ttl: float) -> bool:
        """Extend a row's life; False if the row is gone (pruned after a stall)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE endpoints SET expires_at = ? WHERE service = ? AND address = ?",
                (self._clock() + ttl, service, address),
            )
        return cur.rowcount > 0

    def delete(self, service: str, address: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM endpoints WHERE service = ? AND address = ?", (service, address)
            )

    def prune(self) -> int:
        """Delete expired rows; returns how many."""
        with self._lock:
            cur = self._db.execute("DELETE FROM endpoints WHERE expires_at <= ?", (self._clock(),))
        return cur.rowcount

    def lookup(self, service: str) -> tuple[list[Endpoint], float | None]:
        """The live endpoints of ``service`` and the earliest time one of them expires."""
        with self._lock:
            rows = self._db.execute(
                "SELECT address, weight, metadata, expires_at FROM endpoints"
                " WHERE service = ? AND expires_at > ? ORDER BY address",
                (service, self._clock()),
            ).fetchall()
        endpoints = [
            Endpoint(address, int(weight), _metadata(metadata))
            for address, weight, metadata, _ in rows
        ]
        return endpoints, min((row[3] for row in rows), default=None)

    def services(self) -> dict[str, list[Endpoint]]:
        """Every live service and its endpoints (for tools: the CLI, proxy config)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT service, address, weight, metadata FROM endpoints"
                " WHERE expires_at > ? ORDER BY service, address",
                (self._clock(),),
            ).fetchall()
        out: dict[str, list[Endpoint]] = {}
        for service, address, weight, metadata in rows:
            out.setdefault(service, []).append(Endpoint(address, int(weight), _metadata(metadata)))
        return out

    def entries(self) -> list[tuple[str, Endpoint, float]]:
        """Every live row as ``(service, endpoint, expires_at)`` (for tools: the CLI)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT service, address, weight, metadata, expires_at FROM endpoints"
                " WHERE expires_at > ? ORDER BY service, address",
                (self._clock(),),
            ).fetchall()
        return [
            (service, Endpoint(address, int(weight), _metadata(metadata)), float(expires_at))
            for service, address, weight, metadata, expires_at in rows
        ]


def _metadata(text: str) -> dict[str, str]:
    try:
        value: Any = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


class RegistryResolver(Resolver):
    """``registry://service``: the live endpoints of a service in the embedded registry."""

    def __init__(
        self,
        service: str,
        *,
        path: str | os.PathLike[str] | None = None,
        poll_interval: float = 0.2,
    ) -> None:
        super().__init__()
        self.service = service
        self.path = path
        self.poll_interval = poll_interval

    async def _run(self) -> None:
        registry = await asyncio.to_thread(Registry, self.path)
        try:
            version: int | None = None
            next_expiry: float | None = None
            while True:
                current = registry.data_version()
                expired = next_expiry is not None and time.time() >= next_expiry
                if current != version or expired:
                    version = current
                    endpoints, next_expiry = await asyncio.to_thread(registry.lookup, self.service)
                    self._publish(endpoints)
                await asyncio.sleep(self.poll_interval)
        finally:
            registry.close()

    def __repr__(self) -> str:
        return f"RegistryResolver({self.service!r})"


class RegistryRegistrar(Registrar):
    """Registers endpoints in the embedded registry file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.path = path
        self._registry: Registry | None = None

    async def _db(self) -> Registry:
        if self._registry is None:
            self._registry = await asyncio.to_thread(Registry, self.path)
        return self._registry

    async def _put(self, reg: Registration) -> None:
        db = await self._db()
        await asyncio.to_thread(db.put, reg.service, reg.address, reg.ttl, reg.weight, reg.metadata)

    async def _refresh(self, reg: Registration) -> None:
        db = await self._db()
        if not await asyncio.to_thread(db.touch, reg.service, reg.address, reg.ttl):
            await self._put(reg)

    async def _delete(self, reg: Registration) -> None:
        db = await self._db()
        await asyncio.to_thread(db.delete, reg.service, reg.address)

    async def _close_backend(self) -> None:
        registry, self._registry = self._registry, None
        if registry is not None:
            registry.close()


def _enable_wal(db: sqlite3.Connection, budget: float = 5.0) -> None:
    """Switch the file to WAL. The switch needs the file to itself, and SQLite answers
    "database is locked" at once (its busy timeout does not apply) while other processes
    open the same new file: retry within the same budget as the busy timeout."""
    deadline = time.monotonic() + budget
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)

"""Several processes opening one new registry file at once (replicas started together):
none of them may fail with "database is locked" while the file is switched to WAL."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

from h2mesh.discovery._registry import Registry


def _open(path: str, barrier: Any) -> None:
    barrier.wait()
    Registry(path).close()


def test_processes_opening_a_new_registry_together_all_succeed(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    failed = 0
    for round_ in range(20):
        path = str(tmp_path / f"r{round_}.db")
        barrier = ctx.Barrier(8)
        procs = [ctx.Process(target=_open, args=(path, barrier)) for _ in range(8)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(30)
        failed += sum(proc.exitcode != 0 for proc in procs)
    assert failed == 0

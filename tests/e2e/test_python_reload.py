"""SIGHUP to ``Server(...).serve(..., workers=2)`` run from a Python script, as a real
process: with ``load="module:server"`` the new workers import the changed code; without
it they are forked copies of the script's process and serve the code it imported (as
gunicorn's ``--preload``), though every worker is still replaced.
"""

from __future__ import annotations

import asyncio
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from h2mesh import Channel, MethodDescriptor, MethodKind

from .test_workers import READY, RELOADABLE, STARTUP_TIMEOUT, Supervised

MAIN = """
import asyncio
import logging
import sys

from reloadable import server

logging.basicConfig(level=logging.INFO)


def ready(srv):
    print("h2mesh serving on", f"http://127.0.0.1:{srv.port}", flush=True)


load = sys.argv[1] if len(sys.argv) > 1 else None
asyncio.run(server.serve("127.0.0.1", 0, workers=2, grace=5, ready=ready, load=load))
"""

SERVER = "\nfrom h2mesh import Server\nserver = Server([Reloadable()])\n"


async def version(url: str) -> str:
    descriptor = MethodDescriptor(
        "test.v1.Reloadable", "Version", "version", MethodKind.UNARY, dict, dict
    )
    async with Channel(url, codec="json") as ch:
        reply = await ch.unary(descriptor, {}, timeout=5)
    return str(reply["text"])


@pytest.mark.parametrize(("load", "after"), [("reloadable:server", "two"), (None, "one")])
def test_sighup_with_the_python_api(tmp_path: Path, load: str | None, after: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    source = project / "reloadable.py"
    source.write_text(RELOADABLE.format(text="one") + SERVER)
    (project / "main.py").write_text(MAIN)
    log = tmp_path / "main.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "main.py", *([load] if load else [])],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=err,
            bufsize=0,
        )
    sup = Supervised(proc, log)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
        line = proc.stdout.readline().decode() if ready else ""
        assert line.startswith(READY), f"{line!r}\n{sup.output()}"
        sup.url = line.removeprefix(READY).strip()
        assert asyncio.run(version(sup.url)) == "one"
        old = sup.worker_pids()
        # A different length, so that no cached bytecode can pass for the new source.
        source.write_text(RELOADABLE.format(text="two") + SERVER + "# edited\n")
        mark = len(sup.output())
        proc.send_signal(signal.SIGHUP)
        sup.wait_log(r"reloaded: workers", after=mark)
        deadline = time.monotonic() + 15
        while sup.worker_pids() & old:  # the old workers drain and exit
            assert time.monotonic() < deadline, sup.output()
            time.sleep(0.05)
        assert len(sup.worker_pids()) == 2
        replies = {asyncio.run(version(sup.url)) for _ in range(6)}
        assert replies == {after}, sup.output()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, sup.output()
        assert not re.search(r"Traceback", sup.output()), sup.output()
    finally:
        sup.stop()


def test_load_must_be_an_import_string() -> None:
    from h2mesh import Server

    server = Server([])
    with pytest.raises(ValueError, match="MODULE:ATTRIBUTE"):
        asyncio.run(server.serve("127.0.0.1", 0, workers=2, load="reloadable.server"))
    assert server.sockets == []  # refused before anything was bound

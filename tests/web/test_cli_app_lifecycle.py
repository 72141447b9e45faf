"""``h2mesh serve`` running an ASGI application's lifespan: startup before the server
announces itself, its state in every request, and shutdown when a stop signal ends the
server; run as real processes, called by httpx."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import _serve
from tests.web.apps.lifespan_log import NOT_FOUND

APP = "tests.web.apps.lifespan_log:app"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_runs_lifespan_shutdown_after_the_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: signal.Signals
) -> None:
    events = tmp_path / "events.txt"
    monkeypatch.setenv("H2MESH_TEST_EVENTS", str(events))
    server = _serve(tmp_path, APP)
    try:
        # Startup is over before the "serving on" line: its token is already written.
        (startup,) = events.read_text().splitlines()
        token = startup.removeprefix("startup ")
        # The client's connection stays open (idle) while the server stops.
        with httpx.Client(base_url=server.url, http1=False, http2=True, timeout=5) as client:
            reply = client.get("/token")
            assert (reply.status_code, reply.text) == (200, token)
            assert reply.http_version == "HTTP/2"
            missing = client.get("/nowhere")
            assert (missing.status_code, missing.content) == (404, NOT_FOUND)
            assert events.read_text().splitlines() == [f"startup {token}", f"request {token}"]
            started = time.monotonic()
            server.proc.send_signal(stop)
            assert server.proc.wait(5) == 0
        # An idle connection does not hold the stop for the whole --grace (10 s).
        assert time.monotonic() - started < 4
        assert events.read_text().splitlines() == [
            f"startup {token}",
            f"request {token}",
            f"shutdown {token}",
        ]
        log = server.log.read_text()
        assert "Traceback" not in log
        assert "ASGI lifespan" not in log  # "... startup/shutdown failed"
        assert "does not support lifespan" not in log
        assert log.rstrip().endswith("stopped")
    finally:
        server.stop()

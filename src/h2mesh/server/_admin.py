"""The admin listener: ``/metrics``, ``/status``, ``/healthz`` and ``/readyz``.

It is a separate, small HTTP/1.1 listener (127.0.0.1 unless told otherwise), so admin pages
never share the public port. In a supervised server it runs in the supervisor and merges
the statistics of every worker; in a single process it reads the server's own.

- ``/metrics``: Prometheus text format (prometheus-client renders it).
- ``/status``: an HTML page for people: version, uptime, workers, each method's calls,
  errors and p50/p99 latency, open connections, registry state, and the endpoints this
  process's channels call (with client metrics on); it refreshes itself.
- ``/healthz``: 200 while the process runs. ``/readyz``: 200 while every worker serves,
  503 while starting or draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from ..observability import (
    DURATION_BOUNDS,
    CallStats,
    Sample,
    Series,
    Snapshot,
    merge_series,
    quantile,
)
from ..observability._observer import observer_of
from ..observability._stats import process_snapshot
from ._metrics import ACTIVE_CALLS, attach_stats

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["AdminListener", "AdminSource", "start_local_admin"]

log = logging.getLogger("h2mesh.admin")

_MAX_HEAD = 16 * 1024
_HEAD_TIMEOUT = 10.0
REFRESH_SECONDS = 5
_NBUCKETS = len(DURATION_BOUNDS) + 1


class AdminSource(Protocol):
    """What the admin pages show; the supervisor and a single server both provide it."""

    server: Server
    started: float
    registration: Any

    def worker_infos(self) -> list[Any]: ...
    def snapshots(self) -> list[Snapshot]: ...
    def retired(self) -> list[Series]: ...
    def retired_samples(self) -> list[Sample]: ...
    def extra(self) -> dict[str, float]: ...
    def is_ready(self) -> bool: ...


class _Local:
    """The admin source of a server running in this process, without workers."""

    def __init__(self, server: Server, stats: CallStats) -> None:
        self.server = server
        self.stats = stats
        self.started = time.time()
        self.registration = server.registration

    def worker_infos(self) -> list[Any]:
        return []

    def snapshots(self) -> list[Snapshot]:
        return [process_snapshot(self.stats, os.getpid(), self.started)]

    def retired(self) -> list[Series]:
        return []

    def retired_samples(self) -> list[Sample]:
        return []

    def extra(self) -> dict[str, float]:
        return {}

    def is_ready(self) -> bool:
        return bool(self.server._servers)


async def start_local_admin(server: Server, host: str, port: int) -> AdminListener:
    """Turn call statistics on for ``server`` and serve its admin pages at ``host:port``."""
    observer = observer_of(server)
    if observer.stats is None:
        observer.stats = CallStats()
    stats = observer.stats
    server.observer = observer
    attach_stats(server, stats)
    listener = AdminListener(_Local(server, stats))
    await listener.start(host, port)
    return listener


class AdminListener:
    """Serves the admin pages of ``source`` on a loopback (by default) HTTP/1.1 port."""

    def __init__(self, source: AdminSource) -> None:
        self.source = source
        self.draining = False
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port, limit=_MAX_HEAD)
        # On stdout too, before the serving line, for scripts that pick port 0.
        print(f"h2mesh admin on http://{_hostport(self.address)}", flush=True)

    @property
    def address(self) -> Any:
        assert self._server is not None
        return self._server.sockets[0].getsockname()

    @property
    def port(self) -> int:
        return int(self.address[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def close_in_child(self) -> None:
        """In a forked worker: release the listening socket without touching the loop."""
        if self._server is not None:
            for sock in self._server.sockets:
                with contextlib.suppress(OSError):
                    os.close(sock.fileno())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
            status, ctype, body = self._answer(head)
        except (asyncio.LimitOverrunError, ValueError):
            status, ctype, body = 431, "text/plain", b"request head too large\n"
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            writer.close()
            return
        except Exception:
            log.exception("admin page failed")
            status, ctype, body = 500, "text/plain", b"internal error\n"
        head_only = head.startswith(b"HEAD ")
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
            f"content-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
            "cache-control: no-store\r\nconnection: close\r\n\r\n".encode()
        )
        if not head_only:
            writer.write(body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def _answer(self, head: bytes) -> tuple[int, str, bytes]:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, "text/plain", b"bad request line\n"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n"
        if target == "/metrics":
            from ..observability._prometheus import CONTENT_TYPE, render

            src = self.source
            body = render(src.snapshots(), src.retired(), src.extra(), src.retired_samples())
            return 200, CONTENT_TYPE, body
        if target in ("/status", "/"):
            return 200, "text/html; charset=utf-8", render_status(self.source).encode()
        if target == "/healthz":
            return 200, "text/plain", b"ok\n"
        if target == "/readyz":
            if not self.draining and self.source.is_ready():
                return 200, "text/plain", b"ready\n"
            return 503, "text/plain", b"draining\n" if self.draining else b"starting\n"
        return 404, "text/plain", b"not found: try /status, /metrics, /healthz or /readyz\n"


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _hostport(addr: Any) -> str:
    host = str(addr[0])
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:20px;margin:0 0 .2em}h2{font-size:16px;margin:1.4em 0 .4em}
table{border-collapse:collapse}td,th{padding:3px 12px;border-bottom:1px solid #ddd;text-align:left}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.err{color:#b00020}.muted{color:#777}
"""


def render_status(source: AdminSource) -> str:
    """The HTML status page."""
    from .. import __version__  # the package's, imported by now

    e = html.escape
    now = time.time()
    snaps = source.snapshots()
    series = merge_series([source.retired(), *(s.series for s in snaps)])
    rows: dict[tuple[str, str], list[Any]] = {}
    for desc in source.server.methods:
        rows[(desc.service_name, desc.name)] = [0, 0, [0] * _NBUCKETS]
    for s in series:
        if s.side != "server":
            continue
        row = rows.setdefault((s.service, s.method), [0, 0, [0] * _NBUCKETS])
        row[0] += s.count
        if s.code != "OK":
            row[1] += s.count
        row[2] = [a + b for a, b in zip(row[2], s.buckets, strict=True)]
    connections = sum(s.gauges.get("connections_open", 0.0) for s in snaps)
    active = sum(x.value for s in snaps for x in s.samples if x.name == ACTIVE_CALLS)
    reg = source.registration
    if reg is None:
        registry = "not registered"
    elif reg.address:
        registry = f"registered as {e(reg.service)} at {e(reg.address)} (ttl {reg.ttl:g} s)"
    else:
        registry = f"{e(reg.service)}: not registered right now"
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{REFRESH_SECONDS}'>",
        f"<title>h2mesh status</title><style>{_STYLE}</style></head><body>",
        f"<h1>h2mesh {e(__version__)}</h1>",
        f"<div class='muted'>up {_duration(now - source.started)} · pid {os.getpid()} · "
        f"page refreshes every {REFRESH_SECONDS} s</div>",
        "<h2>Server</h2><table>",
        f"<tr><td>open connections</td><td class='n' id='connections'>{connections:.0f}</td></tr>",
        f"<tr><td>calls in flight</td><td class='n'>{active:.0f}</td></tr>",
        f"<tr><td>registry</td><td id='registry'>{registry}</td></tr>",
        f"<tr><td>ready</td><td>{'yes' if source.is_ready() else 'no'}</td></tr></table>",
    ]
    workers = source.worker_infos()
    if workers:
        out.append("<h2>Workers</h2><table><tr><th>pid</th><th>state</th><th>up</th></tr>")
        out.extend(
            f"<tr><td>{w.pid}</td><td>{w.state}</td>"
            f"<td class='n'>{_duration(now - w.started)}</td></tr>"
            for w in workers
        )
        out.append("</table>")
    out.append(
        "<h2>Methods</h2><table id='methods'><tr><th>service</th><th>method</th>"
        "<th>calls</th><th>errors</th><th>p50</th><th>p99</th></tr>"
    )
    for (service, method), (calls, errors, buckets) in sorted(rows.items()):
        err = " class='n err'" if errors else " class='n'"
        out.append(
            f"<tr><td>{e(service)}</td><td>{e(method)}</td><td class='n'>{calls}</td>"
            f"<td{err}>{errors}</td><td class='n'>{_ms(quantile(buckets, 0.5))}</td>"
            f"<td class='n'>{_ms(quantile(buckets, 0.99))}</td></tr>"
        )
    out.append("</table>")
    out.extend(_endpoint_rows(snaps))
    out.append("</body></html>")
    return "\n".join(out)


_ENDPOINT_COLUMNS = {
    "h2mesh_client_endpoint_picks_total": 0,
    "h2mesh_client_endpoint_active_calls": 1,
    "h2mesh_client_endpoint_ejections_total": 2,
    "h2mesh_client_endpoint_ejected": 3,
}


def _endpoint_rows(snaps: list[Snapshot]) -> list[str]:
    """The endpoints that this process's channels (``metrics=True``) call, if any."""
    rows: dict[tuple[str, ...], list[float]] = {}
    for snap in snaps:
        for sample in snap.samples:
            column = _ENDPOINT_COLUMNS.get(sample.name)
            if column is not None:
                rows.setdefault(sample.labels, [0.0] * 4)[column] += sample.value
    if not rows:
        return []
    e = html.escape
    out = [
        "<h2>Client endpoints</h2><table id='endpoints'><tr><th>target</th><th>endpoint</th>"
        "<th>picks</th><th>in flight</th><th>ejections</th><th>state</th></tr>"
    ]
    for (target, endpoint), (picks, active, ejections, ejected) in sorted(rows.items()):
        state = "<span class='err'>ejected</span>" if ejected else "in rotation"
        out.append(
            f"<tr><td>{e(target)}</td><td>{e(endpoint)}</td><td class='n'>{picks:.0f}</td>"
            f"<td class='n'>{active:.0f}</td><td class='n'>{ejections:.0f}</td>"
            f"<td>{state}</td></tr>"
        )
    out.append("</table>")
    return out

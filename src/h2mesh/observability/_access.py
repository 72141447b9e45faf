"""The access log: one line per request, formatted and written by a background thread.

A request only appends a tuple to a queue; a daemon thread formats lines in batches and
writes them to the log file (or stderr), so neither formatting nor a slow disk or pipe
holds up the event loop. Lines are plain text or JSON (``fmt="json"``).
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from typing import IO, Any

import msgspec

__all__ = ["AccessLog"]

Entry = tuple[float, Any, str, str, str, str, float]

_STOP = object()
_json = msgspec.json.Encoder()


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer) if peer else "-"


def format_text(entry: Entry) -> str:
    """``2026-12-01T21:40:00.123Z 127.0.0.1:5000 HTTP/2 connect /svc/Method OK 0.12ms``"""
    ts, peer, http, protocol, path, code, dt = entry
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
    where = f"{_peer(peer)} HTTP/{http} {protocol or '-'} {path or '-'}"
    return f"{stamp} {where} {code} {dt * 1000:.2f}ms"


def format_json(entry: Entry) -> str:
    ts, peer, http, protocol, path, code, dt = entry
    record = {
        "time": ts,
        "peer": _peer(peer),
        "http": http,
        "protocol": protocol,
        "path": path,
        "code": code,
        "duration_ms": round(dt * 1000, 3),
    }
    return _json.encode(record).decode()


class AccessLog:
    """Writes request lines to ``path`` (appending) or stderr, off the event loop."""

    def __init__(self, path: str | None = None, fmt: str = "text") -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"access log format must be text or json, got {fmt!r}")
        self._format = format_json if fmt == "json" else format_text
        self._out: IO[str] = open(path, "a", encoding="utf-8") if path else sys.stderr  # noqa: SIM115
        self._owned = path is not None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="h2mesh-access-log", daemon=True)
        self._thread.start()

    def add(
        self, ts: float, peer: Any, http: str, protocol: str, path: str, code: str, dt: float
    ) -> None:
        """Queue one request's line (called on the event loop; never blocks)."""
        self._queue.put((ts, peer, http, protocol, path, code, dt))

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            batch = []
            while item is not _STOP:
                batch.append(self._format(item))
                if len(batch) >= 512:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                with contextlib.suppress(OSError, ValueError):
                    self._out.write("\n".join(batch) + "\n")
                    self._out.flush()
            if item is _STOP:
                return

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        self._queue.put(_STOP)
        self._thread.join(5.0)
        if self._owned:
            self._out.close()

"""The access log: one line per request, formatted and written by a background thread.

A request only appends a tuple to a list; every ``FLUSH_INTERVAL`` seconds a daemon thread
takes what has gathered, formats the lines and writes them to the log file (or stderr) at
once, so neither formatting nor a slow disk or pipe holds up the event loop, and the two
threads do not hand the GIL back and forth for every request. Lines are plain text or
JSON (``fmt="json"``).
"""

from __future__ import annotations

import collections
import contextlib
import sys
import threading
import time
from typing import IO, Any

import msgspec

__all__ = ["AccessLog"]

Entry = tuple[float, Any, str, str, str, str, float, int, int]

FLUSH_INTERVAL = 0.1  # seconds between writes; a line waits at most this long
_json = msgspec.json.Encoder()


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer) if peer else "-"


_stamp_second = -1
_stamp_text = ""


def _stamp(ts: float) -> str:
    global _stamp_second, _stamp_text
    second = int(ts)
    if second != _stamp_second:  # one strftime per second of log, not per line
        _stamp_second, _stamp_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{_stamp_text}.{int(ts % 1 * 1000):03d}Z"


def format_text(entry: Entry) -> str:
    """``2026-12-01T21:40:00.123Z 127.0.0.1:5000 HTTP/2 connect /svc/Method OK 0.12ms 12 34``

    The last two fields are the request and response body sizes in bytes.
    """
    ts, peer, http, protocol, path, code, dt, received, sent = entry
    stamp = _stamp(ts)
    where = f"{_peer(peer)} HTTP/{http} {protocol or '-'} {path or '-'}"
    return f"{stamp} {where} {code} {dt * 1000:.2f}ms {received} {sent}"


def format_json(entry: Entry) -> str:
    ts, peer, http, protocol, path, code, dt, received, sent = entry
    record = {
        "time": ts,
        "peer": _peer(peer),
        "http": http,
        "protocol": protocol,
        "path": path,
        "code": code,
        "duration_ms": round(dt * 1000, 3),
        "request_bytes": received,
        "response_bytes": sent,
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
        # deque.append and popleft are atomic: no lock between the two threads.
        self._pending: collections.deque[Entry] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="h2mesh-access-log", daemon=True)
        self._thread.start()

    def add(
        self,
        ts: float,
        peer: Any,
        http: str,
        protocol: str,
        path: str,
        code: str,
        dt: float,
        received: int = 0,
        sent: int = 0,
    ) -> None:
        """Keep one request's line for the next write (on the event loop; never blocks);
        ``received`` and ``sent`` are the request and response body sizes in bytes."""
        self._pending.append((ts, peer, http, protocol, path, code, dt, received, sent))

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            self._write()
        self._write()

    def _write(self) -> None:
        pending = self._pending
        batch = [pending.popleft() for _ in range(len(pending))]
        if batch:
            text = "\n".join(map(self._format, batch)) + "\n"
            with contextlib.suppress(OSError, ValueError):
                self._out.write(text)
                self._out.flush()

    def close(self) -> None:
        """Write what is pending, then stop the writer thread."""
        self._stop.set()
        self._thread.join(5.0)
        if self._owned:
            self._out.close()

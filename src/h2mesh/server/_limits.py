"""What clients may hold of a server: open files, connections overall and per address."""

from __future__ import annotations

import logging
import sys

__all__ = ["ConnectionLimits", "raise_open_file_limit"]

log = logging.getLogger("h2mesh.server")


def raise_open_file_limit() -> int | None:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the new limit.

    Every connection is a file descriptor, and the usual soft default (1024) is spent by
    a thousand idle clients; servers such as nginx and uvicorn's supervisors raise it too.
    """
    if sys.platform == "win32":
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # what Linux allows at most by default (fs.nr_open)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.debug("cannot raise RLIMIT_NOFILE from %d to %d: %s", soft, hard, exc)
            return soft
        return hard
    return soft


class ConnectionLimits:
    """Counts open connections; refuses new ones past a total or a per-address cap.

    A refused connection is closed as soon as it is accepted, before a byte is read:
    that costs the server one accept, where serving it would cost buffers and a task.
    """

    __slots__ = ("by_address", "open", "per_address", "total")

    def __init__(self, total: int | None = None, per_address: int | None = None) -> None:
        for name, value in (("max_connections", total), ("per address", per_address)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.total = total
        self.per_address = per_address
        self.open = 0
        self.by_address: dict[str, int] = {}

    @property
    def active(self) -> bool:
        return self.total is not None or self.per_address is not None

    def admit(self, peer: object) -> bool:
        """Count a new connection from ``peer`` (a peername) if there is room for it."""
        if self.total is not None and self.open >= self.total:
            return False
        host = _host(peer)
        if self.per_address is not None:
            held = self.by_address.get(host, 0)
            if held >= self.per_address:
                return False
            self.by_address[host] = held + 1
        self.open += 1
        return True

    def release(self, peer: object) -> None:
        """Uncount a connection that ``admit`` let in."""
        self.open -= 1
        if self.per_address is not None:
            host = _host(peer)
            held = self.by_address.get(host, 0) - 1
            if held > 0:
                self.by_address[host] = held
            else:
                self.by_address.pop(host, None)


def _host(peer: object) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)  # a Unix socket's peer, or unknown: one shared bucket

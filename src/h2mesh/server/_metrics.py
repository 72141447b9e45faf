"""What a server's metrics read from the server itself when a snapshot is taken.

Connections, streams and bytes are summed over the open connections (plus what closed
ones left behind), and the calls in flight are counted per method from the streams being
served: nothing of this is counted per call.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..observability import CallStats, Sample, ServerObserver
from ..service import MethodDescriptor

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["attach_stats"]

ACTIVE_CALLS = "rpc_server_active_calls"


def attach_stats(server: Server, stats: CallStats) -> None:
    """Have ``stats`` sample ``server``'s connections, streams and bytes in each snapshot
    (and the server's observer know which method each request calls)."""
    if isinstance(server.observer, ServerObserver):
        server.observer.method_of = functools.partial(method_of, server)
    connections = server._connections
    stats.gauges["connections_open"] = lambda: len(connections)
    stats.gauges["streams_active"] = lambda: sum(len(c.streams) for c in connections)
    stats.counters["connections_total"] = lambda: server.connections_accepted
    stats.counters["bytes_received"] = lambda: (
        server.bytes_received + sum(c.bytes_received for c in connections)
    )
    stats.counters["bytes_sent"] = lambda: (
        server.bytes_sent + sum(c.bytes_sent for c in connections)
    )
    stats.samplers.append(lambda: _active_calls(server))


def method_of(server: Server, stream: Any) -> MethodDescriptor | None:
    """The method that ``stream``'s request calls (its RPC path or a REST route), or None
    (a hosted application's request, a built-in page, an unknown path)."""
    verb, path = b"", b""
    for name, value in stream.headers or ():
        if name == b":path":
            path = value.partition(b"?")[0]
        elif name == b":method":
            verb = value
    route = server._routes.get(path)
    if route is not None:
        return route.method
    match = server.rest.router.match(verb.decode("latin-1"), path.decode("latin-1"))
    desc = getattr(match.target, "method", None) if match is not None else None
    return desc if isinstance(desc, MethodDescriptor) else None


def _active_calls(server: Server) -> Iterator[Sample]:
    """Calls being served now, per service and method (RPC paths and REST routes)."""
    counts: dict[tuple[str, str], int] = {}
    for conn in list(server._connections):
        for stream in conn.active_streams():
            task = stream.task
            if task is None or task.done():
                continue
            desc = method_of(server, stream)
            if desc is not None:
                key = (desc.service_name, desc.name)
                counts[key] = counts.get(key, 0) + 1
    for desc in server.methods:
        counts.setdefault((desc.service_name, desc.name), 0)
    for (service, method), n in counts.items():
        yield Sample(ACTIVE_CALLS, (service, method), float(n))

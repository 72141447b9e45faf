"""What a server's metrics read from the server itself when a snapshot is taken.

Connections, streams and bytes are summed over the open connections (plus what closed
ones left behind), and the calls in flight are counted per method from the streams being
served: nothing of this is counted per call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..observability import CallStats, Sample

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["attach_stats"]

ACTIVE_CALLS = "rpc_server_active_calls"


def attach_stats(server: Server, stats: CallStats) -> None:
    """Have ``stats`` sample ``server``'s connections, streams and bytes in each snapshot."""
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


def _active_calls(server: Server) -> Iterator[Sample]:
    """Calls being served now, per service and method (RPC paths and REST routes)."""
    routes = server._routes
    router = server.rest.router
    counts: dict[tuple[str, str], int] = {}
    for conn in list(server._connections):
        for stream in conn.active_streams():
            task = stream.task
            if task is None or task.done():
                continue
            verb, path = b"", b""
            for name, value in stream.headers or ():
                if name == b":path":
                    path = value
                elif name == b":method":
                    verb = value
            path = path.partition(b"?")[0]
            route = routes.get(path)
            if route is not None:
                desc = route.method
            else:
                match = router.match(verb.decode("latin-1"), path.decode("latin-1"))
                target = getattr(match.target, "method", None) if match is not None else None
                if target is None:
                    continue  # a hosted application's request, or a built-in page
                desc = target
            key = (desc.service_name, desc.name)
            counts[key] = counts.get(key, 0) + 1
    for desc in server.methods:
        counts.setdefault((desc.service_name, desc.name), 0)
    for (service, method), n in counts.items():
        yield Sample(ACTIVE_CALLS, (service, method), float(n))

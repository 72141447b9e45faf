"""Instructions per hosted request without sockets: a Server hosting an ASGI app is fed
requests through a fake transport (``benchmarks/web_callgrind.sh`` runs it under callgrind
for N and 3N requests and prints the difference per request).

``python -m benchmarks.web_inproc gen h2 N FILE``: pre-generate HTTP/2 client bytes
(batches of ten streams). ``python -m benchmarks.web_inproc run h1|h2 N FILE APP``: serve N
requests with no sockets (APP: ``hello`` or ``module:object``). ``RAW=1`` answers with a
fixed response from the server's own code instead of the app; ``RAW=scope`` and
``RAW=head`` add the ASGI scope, then also the response head, to that.
``python -m benchmarks.web_inproc uvicorn N APP``: the same HTTP/1.1 requests through
uvicorn's own protocol (``HttpToolsProtocol``), for comparison.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pickle
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

BATCH = 10
_BODY_BYTES = b"Hello, world!"
_HEAD = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
_BODY = {"type": "http.response.body", "body": _BODY_BYTES}
_H1_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: h2load nghttp2/1.52.0\r\n"
    b"Accept: */*\r\n\r\n"
)
_PEER = ("127.0.0.1", 40000)
_LOCAL = ("127.0.0.1", 8000)


def gen(n: int, path: str) -> None:
    """Write the bytes an HTTP/2 client sends for ``n`` GET requests, in batches."""
    import ngh2

    config = ngh2.Configuration(auto_window_update=False)
    client = ngh2.Connection(ngh2.Role.CLIENT, config)
    client.initiate_connection(
        {ngh2.Setting.INITIAL_WINDOW_SIZE: 1 << 30, ngh2.Setting.ENABLE_PUSH: 0}
    )
    client.set_local_window_size(1 << 30)
    server = ngh2.Connection(ngh2.Role.SERVER, ngh2.Configuration(auto_window_update=False))
    server.initiate_connection({ngh2.Setting.MAX_CONCURRENT_STREAMS: 100})
    batches = [client.data_to_send(1 << 20)]
    server.receive_data(batches[0])
    server.events()
    client.receive_data(server.data_to_send(1 << 20))
    client.events()
    request = [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1:8000"),
        (b":path", b"/"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"user-agent", b"h2load nghttp2/1.52.0"),
    ]
    for _ in range(n // BATCH):
        for _ in range(BATCH):
            client.send_request(request, end_stream=True)
        data = client.data_to_send(1 << 20)
        batches.append(data)
        # A server engine answers them, so that the client's stream ids move on.
        server.receive_data(data)
        for event in server.events():
            if type(event).__name__ == "RequestReceived":
                server.send_response(event.stream_id, [(b":status", b"200")], end_stream=True)
        client.receive_data(server.data_to_send(1 << 20))
        client.events()
    Path(path).write_bytes(pickle.dumps(batches))


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The bare ASGI hello app (and its lifespan)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(_HEAD)
    await send(_BODY)


class FakeTransport:
    """An asyncio transport that counts what is written and never blocks."""

    def __init__(self) -> None:
        self.out = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += len(data)

    def writelines(self, lines: list[bytes]) -> None:
        for data in lines:
            self.write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": _PEER, "sockname": _LOCAL}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


def _raw_serve(host: Any, proto: str, mode: str) -> Callable[[Any], Awaitable[None]]:
    """The server's own fixed response, with the ASGI scope (``scope``) and the response
    head (``head``) made as for the app, and dropped."""
    from h2mesh.server._asgi import _scope, scope_template

    fixed = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"13")]
    # Made once per connection, as AsgiHost.serve does.
    template = scope_template("2" if proto == "h2" else "1.1", _PEER, _LOCAL, host.root_path)

    async def serve(stream: Any) -> None:
        stream.task = None
        head = fixed
        if mode in ("scope", "head"):
            headers = stream.headers or []
            _scope(headers, stream.fields, template, host.state, stream.supports_trailers)
        if mode == "head":
            head = host.response_head(200, _HEAD["headers"])
        stream.send_headers(head)
        await stream.send_data(_BODY_BYTES, end_stream=True)

    return serve


async def run(proto: str, n: int, path: str, app_spec: str) -> None:
    """Serve ``n`` requests of ``proto`` with the app ``app_spec``, through fake transports."""
    from h2mesh import Server

    server = Server([], app=_load_app(app_spec))
    server._loop = asyncio.get_running_loop()
    await server._begin(b"http")  # as start() does: the app's startup, the routes settled
    raw = os.environ.get("RAW")
    if raw:
        server.app.serve = _raw_serve(server.app, proto, raw)  # type: ignore[union-attr]
    if proto == "h2":
        batches = pickle.loads(Path(path).read_bytes())  # noqa: ASYNC240 (before the timing)
        conn = server._make_h2()
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.data_received(batches[0])
        for _ in range(3):
            await asyncio.sleep(0)
        for data in batches[1 : 1 + n // BATCH]:
            conn.data_received(data)
            # Turns of the loop until the batch is answered: an Event set by the server
            # would add its own work to what is counted.
            while conn.streams:  # noqa: ASYNC110
                await asyncio.sleep(0)
        await asyncio.sleep(0)
        print("h2 bytes out", transport.out, file=sys.stderr)
        return
    conns = []
    for _ in range(BATCH):
        h1 = server._make_h1(b"http")
        transport = FakeTransport()
        h1.connection_made(transport)
        conns.append((h1, transport))
    for _ in range(n // BATCH):
        for h1, _transport in conns:
            h1.data_received(_H1_REQUEST)
        while any(h1.streams for h1, _transport in conns):  # noqa: ASYNC110 (as above)
            await asyncio.sleep(0)
    print("h1 bytes out", sum(t.out for _, t in conns), file=sys.stderr)


def _load_app(app_spec: str) -> Any:
    if app_spec == "hello":
        return hello
    sys.path.insert(0, ".")
    module, _, name = app_spec.partition(":")
    return getattr(importlib.import_module(module), name)


async def run_uvicorn(n: int, app_spec: str) -> None:
    """``run("h1", ...)``, with uvicorn's HTTP/1.1 protocol (httptools) in place of h2mesh's."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    config = uvicorn.Config(
        _load_app(app_spec),
        http="httptools",
        loop="none",
        lifespan="off",
        log_level="warning",
        access_log=False,  # as benchmarks/web.py runs it (--no-access-log)
    )
    config.load()
    state = ServerState()
    conns = []
    for _ in range(BATCH):
        protocol = HttpToolsProtocol(config=config, server_state=state, app_state={})
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        conns.append((protocol, transport))
    for _ in range(n // BATCH):
        for protocol, _transport in conns:
            protocol.data_received(_H1_REQUEST)
        while state.tasks:  # noqa: ASYNC110 (as in run)
            await asyncio.sleep(0)
    print("uvicorn h1 bytes out", sum(t.out for _, t in conns), file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "uvicorn":
        import uvloop

        uvloop.install()
        asyncio.run(run_uvicorn(int(sys.argv[2]), sys.argv[3]))
    else:
        import uvloop

        uvloop.install()
        asyncio.run(run(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]))

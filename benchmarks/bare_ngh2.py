"""The Python ceiling: a bare asyncio + uvloop + ngh2 server that answers from the event callback.

``python -m benchmarks.bare_ngh2 PORT`` listens on 127.0.0.1 and answers every request
with ``200``, ``content-type: application/json`` and the request's body (on the
``PingPong`` path, each DATA frame as it comes: the bidi ceiling): no routing, no
codec, no task, no limits — what the engine and the event loop cost on their own, the
floor under every Python framework built on them (h2o, in C, is the other ceiling).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import ngh2
import uvloop

_HEAD = [(b":status", b"200"), (b"content-type", b"application/json")]
_PING_PONG = (b":path", b"/bench.v1.Bench/PingPong")


class Bare(asyncio.Protocol):
    def __init__(self) -> None:
        self.engine = ngh2.Connection(ngh2.Role.SERVER)
        self.bodies: dict[int, bytes] = {}
        self.echoing: set[int] = set()  # PingPong streams: each frame echoed at once
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # (h2mesh's default windows, so that large bodies are not held up by flow control)
        self.engine.initiate_connection(
            {ngh2.Setting.MAX_CONCURRENT_STREAMS: 1000, ngh2.Setting.INITIAL_WINDOW_SIZE: 1 << 20}
        )
        self.engine.set_local_window_size(16 << 20)
        transport.write(self.engine.data_to_send())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        engine = self.engine
        engine.receive_data(data)
        bodies = self.bodies
        for ev in engine.events():
            kind = type(ev)
            if kind is ngh2.RequestReceived:
                if ev.end_stream:
                    engine.send_response(ev.stream_id, _HEAD, end_stream=True)
                elif _PING_PONG in ev.headers:
                    self.echoing.add(ev.stream_id)
                    engine.send_response(ev.stream_id, _HEAD)
                else:
                    bodies[ev.stream_id] = b""
            elif kind is ngh2.DataReceived:
                sid = ev.stream_id
                body = bodies.get(sid)
                if body is not None:
                    body += ev.data
                    if ev.end_stream:
                        del bodies[sid]
                        engine.send_response(sid, _HEAD)
                        engine.send_data(sid, body, end_stream=True)
                    else:
                        bodies[sid] = body
                elif sid in self.echoing:
                    engine.send_data(sid, ev.data, end_stream=ev.end_stream)
            elif kind is ngh2.StreamClosed:
                bodies.pop(ev.stream_id, None)
                self.echoing.discard(ev.stream_id)
        while engine.want_write and self.transport is not None:
            out = engine.data_to_send(65_536)  # (as h2mesh: bigger buffers fault their pages)
            if not out:
                break
            self.transport.write(out)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Bare, "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))

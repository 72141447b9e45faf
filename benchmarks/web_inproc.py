"""Instructions per hosted request without sockets: a Server hosting an ASGI app is fed
requests through a fake transport (see benchmarks/web_callgrind.sh, which runs it under
callgrind for N and 3N requests and prints the difference per request).

python -m benchmarks.web_inproc gen h2 N FILE      -- pre-generate HTTP/2 client bytes (batches of 10 streams)
python -m benchmarks.web_inproc run h1|h2 N FILE? APP  -- serve N requests (no sockets), print a check
"""
import asyncio, sys, pickle, importlib

BATCH = 10

def gen(n, path):
    import ngh2
    c = ngh2.Connection(ngh2.Role.CLIENT, ngh2.Configuration(auto_window_update=False))
    c.initiate_connection({ngh2.Setting.INITIAL_WINDOW_SIZE: 1 << 30, ngh2.Setting.ENABLE_PUSH: 0})
    c.set_local_window_size(1 << 30)
    srv = ngh2.Connection(ngh2.Role.SERVER, ngh2.Configuration(auto_window_update=False))
    srv.initiate_connection({ngh2.Setting.MAX_CONCURRENT_STREAMS: 100})
    batches = [c.data_to_send(1 << 20)]
    srv.receive_data(batches[0]); srv.events()
    c.receive_data(srv.data_to_send(1 << 20)); c.events()
    for b in range(n // BATCH):
        for i in range(BATCH):
            c.send_request([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:8000"),
                            (b":path", b"/"), (b"accept-encoding", b"gzip, deflate"), (b"user-agent", b"h2load nghttp2/1.52.0")], end_stream=True)
        data = c.data_to_send(1 << 20)
        batches.append(data)
        srv.receive_data(data)
        for ev in srv.events():
            if type(ev).__name__ == "RequestReceived":
                srv.send_response(ev.stream_id, [(b":status", b"200")], end_stream=True)
        c.receive_data(srv.data_to_send(1 << 20)); c.events()
    pickle.dump(batches, open(path, "wb"))

_HEAD = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]}
_BODY = {"type": "http.response.body", "body": b"Hello, world!"}

async def hello(scope, receive, send):
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
    def __init__(self):
        self.out = 0; self.closed = False
    def write(self, data): self.out += len(data)
    def writelines(self, lines):
        for d in lines: self.write(d)
    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)
    def is_closing(self): return self.closed
    def close(self): self.closed = True
    def abort(self): self.closed = True
    def pause_reading(self): pass
    def resume_reading(self): pass
    def can_write_eof(self): return True
    def write_eof(self): pass
    def get_write_buffer_size(self): return 0
    def set_write_buffer_limits(self, *a, **k): pass

async def run(proto, n, path, app_spec):
    from h2mesh import Server
    if app_spec == "hello":
        app = hello
    else:
        sys.path.insert(0, ".")
        mod, _, name = app_spec.partition(":")
        app = getattr(importlib.import_module(mod), name)
    server = Server([], app=app)
    server._loop = asyncio.get_running_loop()
    await server._begin(b"http")  # as start() does: the app's startup, the routes settled
    import os
    if os.environ.get("RAW"):
        head = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"13")]
        async def serve(stream):
            stream.task = None
            stream.send_headers(head)
            await stream.send_data(b"Hello, world!", end_stream=True)
        if os.environ["RAW"] == "scope":
            from h2mesh.server._asgi import _scope, scope_template
            host = server.app
            # (made once per connection, as AsgiHost.serve does)
            template = scope_template("2" if proto == "h2" else "1.1", ("127.0.0.1", 40000), ("127.0.0.1", 8000), host.root_path)
            async def serve(stream):
                stream.task = None
                scope = _scope(stream.headers or [], stream.fields, template, host.state, stream.supports_trailers)
                stream.send_headers(head)
                await stream.send_data(b"Hello, world!", end_stream=True)
        if os.environ["RAW"] == "head":
            from h2mesh.server._asgi import _scope, scope_template
            host = server.app
            # (made once per connection, as AsgiHost.serve does)
            template = scope_template("2" if proto == "h2" else "1.1", ("127.0.0.1", 40000), ("127.0.0.1", 8000), host.root_path)
            async def serve(stream):
                stream.task = None
                scope = _scope(stream.headers or [], stream.fields, template, host.state, stream.supports_trailers)
                stream.send_headers(host.response_head(200, _HEAD["headers"]))
                await stream.send_data(b"Hello, world!", end_stream=True)
        server.app.serve = serve
    if proto == "h2":
        batches = pickle.load(open(path, "rb"))
        conn = server._make_h2()
        t = FakeTransport(); conn.connection_made(t)
        conn.data_received(batches[0])
        for _ in range(3): await asyncio.sleep(0)
        for data in batches[1: 1 + n // BATCH]:
            conn.data_received(data)
            while conn.streams:
                await asyncio.sleep(0)
        await asyncio.sleep(0)
        print("h2 bytes out", t.out, file=sys.stderr)
    else:
        conns = []
        for i in range(BATCH):
            c = server._make_h1(b"http"); t = FakeTransport(); c.connection_made(t); conns.append((c, t))
        req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: h2load nghttp2/1.52.0\r\nAccept: */*\r\n\r\n"
        for b in range(n // BATCH):
            for c, t in conns:
                c.data_received(req)
            while any(c.streams for c, _ in conns):
                await asyncio.sleep(0)
        print("h1 bytes out", sum(t.out for _, t in conns), file=sys.stderr)

if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(int(sys.argv[3]), sys.argv[4])
    else:
        import uvloop
        uvloop.install()
        asyncio.run(run(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]))

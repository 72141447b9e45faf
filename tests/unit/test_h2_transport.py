"""The HTTP/2 transport over real loopback sockets, under plain asyncio and uvloop.

Covers receive-side flow control, send-side backpressure, connection-window accounting
for streams reset with unread data, peers that violate HTTP/2, keepalive PINGs and the
idle timeout. Both ends are ``H2Connection`` objects on 127.0.0.1 (or a raw socket
playing a misbehaving peer).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import random
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from h2mesh.transport import (
    ConnectionLost,
    ErrorCode,
    H2Connection,
    H2Stream,
    StreamReset,
    TransportConfig,
    TransportError,
)
from h2mesh.transport._timers import slot_width
from tests.conftest import wait_until

Handler = Callable[[H2Stream], Coroutine[Any, Any, None]]
Run = Callable[[Coroutine[Any, Any, Any]], Any]

KIB = 1024
MIB = 1024 * KIB
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_DATA, FRAME_HEADERS, FRAME_RST_STREAM, FRAME_SETTINGS = 0x0, 0x1, 0x3, 0x4
FRAME_PING, FRAME_GOAWAY, FRAME_WINDOW_UPDATE = 0x6, 0x7, 0x8
FLAG_END_STREAM, FLAG_ACK, FLAG_END_HEADERS = 0x1, 0x1, 0x4
Frame = tuple[int, int, int, bytes]  # type, flags, stream id, payload


def request_headers(path: bytes = b"/upload") -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1"),
        (b":path", path),
    ]


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame on the wire."""
    return len(payload).to_bytes(3, "big") + struct.pack(">BBI", kind, flags, stream_id) + payload


def parse_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Split bytes into whole frames; also return the incomplete rest."""
    frames = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if len(data) < 9 + length:
            break
        sid = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        frames.append((data[3], data[4], sid, data[9 : 9 + length]))
        data = data[9 + length :]
    return frames, data


class RawPeer:
    """A hand-driven HTTP/2 client on a plain socket, for what ``H2Connection`` never sends.

    It honours flow control (so that a window the server fails to reopen stalls it) and
    encodes requests with static-table HPACK only.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: list[Frame] = []
        self.rest = b""
        self.conn_window = 65_535
        self.initial_window = 65_535
        self.windows: dict[int, int] = {}

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, kind: int, flags: int, stream_id: int, payload: bytes = b"") -> None:
        self.writer.write(frame(kind, flags, stream_id, payload))

    async def handshake(self) -> None:
        """Send the preface and wait for the server's SETTINGS."""
        self.writer.write(PREFACE + frame(FRAME_SETTINGS, 0, 0))
        await self.expect(FRAME_SETTINGS, 0)

    async def next_frame(self) -> Frame:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), 2.0)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.pending, self.rest = parse_frames(self.rest + data)
        received = self.pending.pop(0)
        self._track(received)
        return received

    async def expect(self, kind: int, stream_id: int) -> Frame:
        """Read frames until one of ``kind`` on ``stream_id`` arrives."""
        while True:
            received = await self.next_frame()
            if received[0] == kind and received[2] == stream_id:
                return received

    def _track(self, received: Frame) -> None:
        kind, flags, sid, payload = received
        if kind == FRAME_WINDOW_UPDATE:
            increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
            if sid == 0:
                self.conn_window += increment
            elif sid in self.windows:
                self.windows[sid] += increment
        elif kind == FRAME_SETTINGS and not flags & FLAG_ACK:
            for offset in range(0, len(payload), 6):
                ident, value = struct.unpack(">HI", payload[offset : offset + 6])
                if ident == 0x4:  # INITIAL_WINDOW_SIZE
                    for key in self.windows:
                        self.windows[key] += value - self.initial_window
                    self.initial_window = value
            self.send(FRAME_SETTINGS, FLAG_ACK, 0)

    def open_stream(self, stream_id: int, path: bytes = b"/", end_stream: bool = False) -> None:
        # :method POST, :scheme http (static indices); :authority and :path as literals.
        block = b"\x83\x86\x01\x09127.0.0.1\x04" + bytes([len(path)]) + path
        flags = FLAG_END_HEADERS | (FLAG_END_STREAM if end_stream else 0)
        self.windows[stream_id] = self.initial_window
        self.send(FRAME_HEADERS, flags, stream_id, block)

    async def send_body(self, stream_id: int, body: bytes) -> None:
        """Send ``body`` and end the stream, never overrunning a window."""
        offset = 0
        while offset < len(body):
            room = min(self.conn_window, self.windows[stream_id], 16_384, len(body) - offset)
            if room <= 0:
                await self.next_frame()  # wait for a WINDOW_UPDATE
                continue
            end = FLAG_END_STREAM if offset + room == len(body) else 0
            self.send(FRAME_DATA, end, stream_id, body[offset : offset + room])
            self.conn_window -= room
            self.windows[stream_id] -= room
            offset += room
        await self.writer.drain()

    async def read_body(self, stream_id: int) -> bytes:
        """The response body of ``stream_id``, up to its END_STREAM."""
        parts = []
        while True:
            kind, flags, sid, payload = await self.next_frame()
            if sid != stream_id:
                continue
            if kind == FRAME_RST_STREAM:
                raise AssertionError("the response was reset")
            if kind == FRAME_DATA:
                parts.append(payload)
            if kind in (FRAME_DATA, FRAME_HEADERS) and flags & FLAG_END_STREAM:
                return b"".join(parts)

    def close(self) -> None:
        self.writer.close()


# Each run() of a test is bounded (the conftest's ``run`` reads this).
RUN_TIME_LIMIT = 5.0


def all_of(streams: list[H2Stream], check: Callable[[H2Stream], bool]) -> Callable[[], bool]:
    """A predicate for ``wait_until``: ``check`` holds for every stream."""
    return lambda: all(check(s) for s in streams)


async def wait_stalled(progress: Callable[[], int], quiet: float = 0.1) -> int:
    """Wait until ``progress()`` stops changing for ``quiet`` seconds; return its value."""
    last = progress()
    while True:
        await asyncio.sleep(quiet)
        now = progress()
        if now == last:
            return now
        last = now


class BufferWatch(H2Connection):
    """A server connection that records the most body bytes any stream held unread."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_buffered = 0

    def _on_data(self, ev: Any) -> None:
        super()._on_data(ev)
        stream = self.streams.get(ev.stream_id)
        if stream is not None:
            self.max_buffered = max(self.max_buffered, sum(map(len, stream._chunks)))


class PingCounter(H2Connection):
    """A client connection that counts acknowledged PINGs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pings_acked = 0

    def _on_ping_ack(self, ev: Any) -> None:
        super()._on_ping_ack(ev)
        self.pings_acked += 1


class Peers:
    """A listening ``H2Connection`` server and the clients connected to it."""

    def __init__(
        self,
        handler: Handler,
        config: TransportConfig | None = None,
        server_cls: type[H2Connection] = H2Connection,
    ) -> None:
        self.handler = handler
        self.config = config or TransportConfig()
        self.server_cls = server_cls
        self.server_conns: list[H2Connection] = []
        self.clients: list[H2Connection] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Peers:
        loop = asyncio.get_running_loop()

        def on_stream(stream: H2Stream) -> None:
            task = loop.create_task(self.handler(stream))
            stream.task = task
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        def factory() -> H2Connection:
            conn = self.server_cls(client=False, config=self.config, on_stream=on_stream)
            self.server_conns.append(conn)
            return conn

        self._server = await loop.create_server(factory, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def connect(
        self, config: TransportConfig | None = None, cls: type[H2Connection] = H2Connection
    ) -> H2Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: cls(client=True, config=config or TransportConfig()), "127.0.0.1", self.port
        )
        self.clients.append(conn)
        return conn

    @property
    def server_conn(self) -> H2Connection:
        assert len(self.server_conns) == 1
        return self.server_conns[0]

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self.tasks):
            task.cancel()
        for conn in [*self.clients, *self.server_conns]:
            conn.abort()
        for conn in [*self.clients, *self.server_conns]:
            if conn.transport is not None:
                await asyncio.wait_for(conn.wait_closed(), 1.0)
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def send_all(stream: H2Stream, data: bytes, chunk: int, progress: list[int]) -> None:
    """Send ``data`` in ``chunk``-sized pieces, ending the stream; count accepted bytes."""
    view = memoryview(data)
    for offset in range(0, len(data), chunk):
        piece = bytes(view[offset : offset + chunk])
        await stream.send_data(piece, end_stream=offset + chunk >= len(data))
        progress[0] += len(piece)


async def read_digest(stream: H2Stream) -> tuple[int, str]:
    """Read a stream to its end; return the byte count and the SHA-256 of the body."""
    digest = hashlib.sha256()
    size = 0
    while chunk := await stream.read():
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


async def respond_ok(stream: H2Stream) -> None:
    """Echo handler: read the request body, answer 200 with the body's digest."""
    size, digest = await read_digest(stream)
    stream.send_headers([(b":status", b"200")])
    await stream.send_data(f"{size} {digest}".encode(), end_stream=True)


async def echo_roundtrip(client: H2Connection, body: bytes = b"ping", path: bytes = b"/") -> None:
    """One request on ``client`` answered by ``respond_ok``."""
    stream = client.open_stream(request_headers(path), end_stream=False)
    await stream.send_data(body, end_stream=True)
    headers = await asyncio.wait_for(stream.wait_response(), 2.0)
    assert (b":status", b"200") in headers
    reply = await asyncio.wait_for(stream.read_all(1024), 2.0)
    assert reply == f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()


# -- receive-side flow control ---------------------------------------------------------


def test_receiver_that_does_not_read_stalls_the_sender(run: Run) -> None:
    window = 64 * KIB
    payload = os.urandom(1 * MIB)
    accepted: asyncio.Queue[H2Stream] = asyncio.Queue()

    async def park(stream: H2Stream) -> None:
        await accepted.put(stream)
        await asyncio.Event().wait()  # the test reads the stream itself

    async def main() -> None:
        cfg = TransportConfig(stream_window=window)
        async with Peers(park, cfg, server_cls=BufferWatch) as peers:
            client = await peers.connect(TransportConfig(send_high_water=32 * KIB))
            stream = client.open_stream(request_headers(), end_stream=False)
            progress = [0]
            sender = asyncio.create_task(send_all(stream, payload, 16 * KIB, progress))
            server_stream = await asyncio.wait_for(accepted.get(), 2.0)

            sent = await wait_stalled(lambda: progress[0])
            server = peers.server_conn
            assert isinstance(server, BufferWatch)
            # The sender is blocked in send_data, the receiver holds exactly one window.
            assert not sender.done()
            assert sent < len(payload)
            assert sum(map(len, server_stream._chunks)) == window
            assert client.engine.queued_body_size(stream.id) > 0
            # What the sender got rid of: a window on the wire plus its queue limit.
            assert sent <= window + 32 * KIB + 16 * KIB

            # Reading slowly reopens the window; everything arrives intact.
            digest = hashlib.sha256()
            size = 0
            while chunk := await server_stream.read():
                digest.update(chunk)
                size += len(chunk)
                if size % (128 * KIB) == 0:
                    await asyncio.sleep(0.001)
                assert sum(map(len, server_stream._chunks)) <= window
            await asyncio.wait_for(sender, 2.0)
            assert size == len(payload)
            assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()
            assert server.max_buffered <= window

    run(main())


# -- send-side backpressure --------------------------------------------------------------


def test_sender_waits_for_a_client_that_does_not_read(run: Run) -> None:
    window = 64 * KIB
    high_water = 32 * KIB
    chunk = 16 * KIB
    payload = os.urandom(4 * MIB)
    progress = [0]
    max_queued = [0]

    async def stream_out(stream: H2Stream) -> None:
        engine = stream._conn.engine
        stream.send_headers([(b":status", b"200")])
        for offset in range(0, len(payload), chunk):
            piece = payload[offset : offset + chunk]
            await stream.send_data(piece, end_stream=offset + chunk >= len(payload))
            progress[0] += len(piece)
            max_queued[0] = max(max_queued[0], engine.queued_body_size(stream.id))

    async def main() -> None:
        cfg = TransportConfig(send_high_water=high_water)
        async with Peers(stream_out, cfg) as peers:
            client = await peers.connect(TransportConfig(stream_window=window))
            stream = client.open_stream(request_headers(b"/download"), end_stream=True)
            await asyncio.wait_for(stream.wait_response(), 2.0)

            sent = await wait_stalled(lambda: progress[0])
            (handler,) = peers.tasks
            assert not handler.done()
            # Bounded: one window in flight plus the stream's queue limit (and one chunk).
            assert sent <= window + high_water + chunk
            assert max_queued[0] <= high_water + chunk
            assert peers.server_conn.engine.queued_body_size() <= high_water + chunk
            assert sum(map(len, stream._chunks)) <= window

            size, digest = await asyncio.wait_for(read_digest(stream), 3.0)
            await asyncio.wait_for(handler, 1.0)
            assert size == len(payload)
            assert digest == hashlib.sha256(payload).hexdigest()
            assert max_queued[0] <= high_water + chunk

    run(main())


# -- connection-window accounting ----------------------------------------------------------

UNREAD = 64 * KIB
STREAMS = 100
CONN_WINDOW = 1 * MIB
# A client that neither pings nor times out on its own.
QUIET = TransportConfig(idle_timeout=None, keepalive_interval=None)


def test_a_body_in_tiny_frames_is_held_gathered_and_read_whole_in_order(run: Run) -> None:
    # 20,000 DATA frames of 3 bytes while the handler does not read: the stream holds them
    # gathered in a few pieces (not 20,000 objects), and reading gives every byte, in order,
    # as bytes.
    frames = [b"%03d" % (i % 1000) for i in range(20_000)]
    body = b"".join(frames)
    go = asyncio.Event()
    kinds: set[type] = set()

    async def handler(stream: H2Stream) -> None:
        await go.wait()
        digest = hashlib.sha256()
        while chunk := await stream.read():
            kinds.add(type(chunk))
            digest.update(chunk)
        stream.send_headers([(b":status", b"200")])
        await stream.send_data(digest.hexdigest().encode(), end_stream=True)

    async def main() -> None:
        async with Peers(handler) as peers:
            peer = await RawPeer.connect(peers.port)
            await peer.handshake()
            peer.open_stream(1)
            for piece in frames:
                peer.send(FRAME_DATA, 0, 1, piece)
            peer.send(FRAME_DATA, FLAG_END_STREAM, 1)
            await peer.writer.drain()
            await wait_until(lambda: 1 in peers.server_conn.streams)
            stream = peers.server_conn.streams[1]
            await wait_until(lambda: stream._eof)  # every frame taken in, none read
            assert stream.received == len(body)
            assert len(stream._chunks) <= 4, len(stream._chunks)
            go.set()
            reply = await peer.read_body(1)
            assert reply == hashlib.sha256(body).hexdigest().encode()
            assert kinds == {bytes}
            peer.close()

    run(main())


@pytest.mark.parametrize("who_resets", ["server", "client"])
def test_reset_streams_return_unread_bytes_to_the_connection_window(
    run: Run, who_resets: str
) -> None:
    """100 streams each leave 64 KiB unread, then die; the connection window survives."""
    buffered: dict[int, H2Stream] = {}
    payload = os.urandom(UNREAD)
    big = os.urandom(1 * MIB)

    async def handler(stream: H2Stream) -> None:
        path = dict(stream.headers or ())[b":path"]
        if path == b"/big":
            await respond_ok(stream)
            return
        await wait_until(lambda: stream._unacked == UNREAD)
        if who_resets == "server":
            stream.reset(ErrorCode.CANCEL)
        else:
            buffered[stream.id] = stream
        await asyncio.Event().wait()

    async def main() -> None:
        # Room for one batch of ten: a leak would close the window within two batches.
        cfg = TransportConfig(stream_window=UNREAD, connection_window=CONN_WINDOW)
        async with Peers(handler, cfg) as peers:
            client = await peers.connect()
            for _ in range(STREAMS // 10):
                streams = [client.open_stream(request_headers(), False) for _ in range(10)]
                sends = [asyncio.create_task(s.send_data(payload)) for s in streams]
                await asyncio.gather(*sends, return_exceptions=True)
                if who_resets == "client":
                    await wait_until(all_of(streams, lambda s: s.id in buffered))
                    for s in streams:
                        s.reset(ErrorCode.CANCEL)
                # Every one of these streams is closed on both sides.
                await wait_until(all_of(streams, lambda s: s.closed))
            await wait_until(lambda: not peers.server_conn.streams)
            await asyncio.wait_for(echo_roundtrip(client, big, b"/big"), 2.0)

    run(main())


def test_data_arriving_after_a_reset_returns_to_the_connection_window(run: Run) -> None:
    """The server resets each stream at once; the client's whole body lands afterwards."""
    payload = os.urandom(UNREAD)
    big = os.urandom(1 * MIB)

    async def handler(stream: H2Stream) -> None:
        if dict(stream.headers or ())[b":path"] == b"/big":
            await respond_ok(stream)
        else:
            stream.reset(ErrorCode.CANCEL)

    async def main() -> None:
        cfg = TransportConfig(stream_window=UNREAD, connection_window=CONN_WINDOW)
        async with Peers(handler, cfg) as peers:
            raw = await RawPeer.connect(peers.port)
            try:
                await raw.handshake()
                for n in range(STREAMS):
                    sid = 2 * n + 1
                    raw.open_stream(sid)
                    reset = await raw.expect(FRAME_RST_STREAM, sid)
                    assert reset[3] == b"\x00\x00\x00\x08"  # CANCEL, from the handler
                    await raw.send_body(sid, payload)  # all of it after the reset
                sid = 2 * STREAMS + 1
                raw.open_stream(sid, b"/big")
                await raw.send_body(sid, big)
                reply = await raw.read_body(sid)
                assert reply == f"{len(big)} {hashlib.sha256(big).hexdigest()}".encode()
            finally:
                raw.close()

    run(main())


def test_client_resetting_unread_responses_keeps_its_connection_window(run: Run) -> None:
    payload = os.urandom(UNREAD)
    big = os.urandom(1 * MIB)

    async def handler(stream: H2Stream) -> None:
        path = dict(stream.headers or ())[b":path"]
        stream.send_headers([(b":status", b"200")])
        await stream.send_data(big if path == b"/big" else payload, end_stream=path == b"/big")
        await asyncio.Event().wait()

    async def main() -> None:
        async with Peers(handler) as peers:
            cfg = TransportConfig(stream_window=UNREAD, connection_window=CONN_WINDOW)
            client = await peers.connect(cfg)
            for _ in range(STREAMS // 10):
                streams = [client.open_stream(request_headers(), True) for _ in range(10)]
                await wait_until(all_of(streams, lambda s: s._unacked == UNREAD))
                for s in streams:
                    s.reset(ErrorCode.CANCEL)
                await wait_until(all_of(streams, lambda s: s.closed))
            stream = client.open_stream(request_headers(b"/big"), True)
            size, digest = await asyncio.wait_for(read_digest(stream), 2.0)
            assert (size, digest) == (len(big), hashlib.sha256(big).hexdigest())

    run(main())


# -- peers that violate HTTP/2 -----------------------------------------------------------


VIOLATIONS = {
    # DATA is never allowed on stream 0.
    "data-on-stream-0": frame(FRAME_SETTINGS, 0, 0) + frame(FRAME_DATA, 0, 0, b"x" * 10),
    # SETTINGS payloads are multiples of six bytes.
    "bad-settings-length": frame(FRAME_SETTINGS, 0, 0, b"\x00" * 5),
    # A PING payload is exactly eight bytes.
    "short-ping": frame(FRAME_SETTINGS, 0, 0) + frame(FRAME_PING, 0, 0, b"abc"),
    # Client streams have odd identifiers.
    "even-stream-id": frame(FRAME_SETTINGS, 0, 0) + frame(FRAME_HEADERS, 0x5, 2, b"\x82"),
    # Bytes that are not frames at all.
    "random-junk": bytes(random.Random(7).getrandbits(8) for _ in range(300)),
}


async def violate(port: int, garbage: bytes) -> list[Frame]:
    """Send the preface then ``garbage``; return the frames received until EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(PREFACE + garbage)
        received = await asyncio.wait_for(reader.read(), 2.0)  # read() waits for EOF
    finally:
        writer.close()
    return parse_frames(received)[0]


@pytest.mark.parametrize("garbage", list(VIOLATIONS.values()), ids=list(VIOLATIONS))
def test_protocol_violation_gets_goaway_and_spares_other_connections(
    run: Run, garbage: bytes
) -> None:
    async def main() -> None:
        async with Peers(respond_ok) as peers:
            good = await peers.connect()
            await echo_roundtrip(good)

            frames = await violate(peers.port, garbage)
            goaways = [f for f in frames if f[0] == FRAME_GOAWAY]
            assert goaways, f"no GOAWAY in {frames}"
            error_code = int.from_bytes(goaways[-1][3][4:8], "big")
            assert error_code != 0  # not a graceful shutdown: the peer is at fault
            bad = [c for c in peers.server_conns if c is not peers.server_conns[0]]
            await wait_until(lambda: all(c.lost for c in bad))

            assert good.is_available()
            await echo_roundtrip(good, b"still here")

    run(main())


# -- keepalive and idle timeout ---------------------------------------------------------------


def test_keepalive_pings_are_acknowledged_and_keep_the_connection_open(run: Run) -> None:
    async def main() -> None:
        async with Peers(respond_ok) as peers:
            cfg = TransportConfig(keepalive_interval=0.2, keepalive_timeout=0.3, idle_timeout=None)
            client = await peers.connect(cfg, cls=PingCounter)
            assert isinstance(client, PingCounter)
            await wait_until(lambda: client.pings_acked >= 2, timeout=2.5)
            assert not client.lost and client.is_available()
            await echo_roundtrip(client)

    run(main())


def test_keepalive_closes_a_connection_whose_peer_stopped_answering(run: Run) -> None:
    async def mute_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frame(FRAME_SETTINGS, 0, 0))  # a valid start, then silence
        while await reader.read(65536):
            pass
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(mute_peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        cfg = TransportConfig(keepalive_interval=0.2, keepalive_timeout=0.3, idle_timeout=None)
        _, client = await loop.create_connection(
            lambda: H2Connection(client=True, config=cfg), "127.0.0.1", port
        )
        stream = client.open_stream(request_headers(), end_stream=True)
        started = time.monotonic()
        try:
            await asyncio.wait_for(client.wait_closed(), 2.5)
            elapsed = time.monotonic() - started
            assert 0.3 < elapsed < 2.0
            assert client.lost
            with pytest.raises(ConnectionLost):
                await stream.wait_response()
        finally:
            client.abort()
            server.close()
            await server.wait_closed()

    run(main())


def test_idle_timeout_closes_an_idle_connection_with_goaway(run: Run) -> None:
    async def main() -> None:
        cfg = TransportConfig(idle_timeout=0.3, keepalive_interval=None)
        # docs/protocols.md: closed by idle_timeout + one check interval (here the idle
        # timeout itself) + one slot of the shared timer wheel; 0.25 s for a busy machine.
        bound = 0.3 + 0.3 + slot_width(0.3) + 0.25
        async with Peers(respond_ok, cfg) as peers:
            client = await peers.connect(QUIET)
            await echo_roundtrip(client)
            idle_since = time.monotonic()
            await asyncio.wait_for(client.wait_closed(), bound)
            elapsed = time.monotonic() - idle_since
            assert 0.25 < elapsed < bound
            assert client.goaway_last_stream_id == 1  # GOAWAY came before the close
            assert not client.is_available()

    run(main())


def test_idle_timeout_waits_for_open_streams(run: Run) -> None:
    async def slow(stream: H2Stream) -> None:
        await asyncio.sleep(0.6)
        await respond_ok(stream)

    async def main() -> None:
        cfg = TransportConfig(idle_timeout=0.2, keepalive_interval=None)
        async with Peers(slow, cfg) as peers:
            client = await peers.connect(QUIET)
            await echo_roundtrip(client)  # a stream open longer than the idle timeout
            assert not client.lost
            await asyncio.wait_for(client.wait_closed(), 2.0)

    run(main())


# -- header list limits -----------------------------------------------------------------------


class GoawayWatch(H2Connection):
    """A client connection that records the error code of the GOAWAY it receives."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.goaway_code: int | None = None

    def _on_goaway(self, ev: Any) -> None:
        super()._on_goaway(ev)
        self.goaway_code = ev.error_code


LIMIT = 4096


def test_oversized_request_headers_get_431_on_that_stream_only(run: Run) -> None:
    async def main() -> None:
        async with Peers(respond_ok, TransportConfig(max_header_list_size=LIMIT)) as peers:
            client = await peers.connect()
            big = [*request_headers(), (b"x-big", b"a" * (2 * LIMIT))]
            # Without a body...
            stream = client.open_stream(big, end_stream=True)
            assert (b":status", b"431") in await asyncio.wait_for(stream.wait_response(), 2.0)
            assert await stream.read() == b""
            # ...and with one still coming: the server stops it instead of buffering it.
            stream = client.open_stream(big, end_stream=False)
            upload = asyncio.create_task(stream.send_data(os.urandom(1 * MIB), end_stream=True))
            assert (b":status", b"431") in await asyncio.wait_for(stream.wait_response(), 2.0)
            await asyncio.wait_for(asyncio.gather(upload, return_exceptions=True), 2.0)
            assert not peers.tasks  # no handler ever saw these requests

            assert client.is_available()
            await echo_roundtrip(client, b"fine")
            near = [*request_headers(), (b"x-near", b"a" * (LIMIT // 2))]
            stream = client.open_stream(near, end_stream=True)
            assert (b":status", b"200") in await asyncio.wait_for(stream.wait_response(), 2.0)

    run(main())


def test_header_list_far_over_the_limit_ends_the_connection_with_goaway(run: Run) -> None:
    async def main() -> None:
        async with Peers(respond_ok, TransportConfig(max_header_list_size=LIMIT)) as peers:
            client = await peers.connect(cls=GoawayWatch)
            assert isinstance(client, GoawayWatch)
            await echo_roundtrip(client)
            huge = [*request_headers(), (b"x-huge", b"a" * (8 * LIMIT))]
            stream = client.open_stream(huge, end_stream=True)
            with pytest.raises(TransportError):
                await asyncio.wait_for(stream.wait_response(), 2.0)
            await asyncio.wait_for(client.wait_closed(), 2.0)
            assert client.goaway_code == ErrorCode.ENHANCE_YOUR_CALM
            assert client.goaway_last_stream_id == 1  # the request was never processed

    run(main())


def test_oversized_response_headers_fail_the_call_not_the_connection(run: Run) -> None:
    async def handler(stream: H2Stream) -> None:
        await read_digest(stream)
        path = dict(stream.headers or ())[b":path"]
        extra = [(b"x-big", b"a" * (2 * LIMIT))] if path == b"/big" else []
        stream.send_headers([(b":status", b"200"), *extra])
        await stream.send_data(b"body", end_stream=True)

    async def main() -> None:
        async with Peers(handler) as peers:
            client = await peers.connect(TransportConfig(max_header_list_size=LIMIT))
            stream = client.open_stream(request_headers(b"/big"), end_stream=True)
            with pytest.raises(StreamReset, match="response header list over the 4096-byte"):
                await asyncio.wait_for(stream.wait_response(), 2.0)
            with pytest.raises(StreamReset):
                await stream.read()
            assert client.is_available()
            stream = client.open_stream(request_headers(b"/small"), end_stream=True)
            assert (b":status", b"200") in await asyncio.wait_for(stream.wait_response(), 2.0)
            assert await stream.read_all(100) == b"body"

    run(main())


# -- odds and ends of the stream API ----------------------------------------------------------


def test_peer_reset_fails_reads_and_cancels_the_handler(run: Run) -> None:
    async def main() -> None:
        got_cancel = asyncio.Event()

        async def handler(stream: H2Stream) -> None:
            try:
                await stream.read_all(1 * MIB)
            except asyncio.CancelledError:
                got_cancel.set()
                raise

        async with Peers(handler) as peers:
            client = await peers.connect()
            stream = client.open_stream(request_headers(), end_stream=False)
            await stream.send_data(b"partial")
            await wait_until(lambda: bool(peers.tasks))
            stream.reset(ErrorCode.CANCEL)
            await asyncio.wait_for(got_cancel.wait(), 2.0)
            with pytest.raises(StreamReset):
                await stream.read()
            with pytest.raises(TransportError):
                await stream.send_data(b"more")

    run(main())


def test_a_settings_wait_given_up_leaves_no_unretrieved_error_when_the_peer_leaves(
    run: Run,
) -> None:
    # A caller gives up waiting for SETTINGS (its deadline); the peer then drops the
    # connection: the error that ends the wait must not be logged as never retrieved.
    dropped = asyncio.Event()

    async def silent_then_gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await dropped.wait()
        writer.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        server = await asyncio.start_server(silent_then_gone, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, client = await loop.create_connection(
            lambda: H2Connection(client=True, config=TransportConfig(keepalive_interval=None)),
            "127.0.0.1",
            port,
        )
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.wait_peer_settings(), 0.05)
            dropped.set()
            await asyncio.wait_for(client.wait_closed(), 5)
            with pytest.raises(ConnectionLost):
                await client.wait_peer_settings()
        finally:
            client.abort()
            server.close()
            await server.wait_closed()
        del client  # the connection held the ended wait: let it go, as a pool does
        gc.collect()
        await asyncio.sleep(0)
        assert [c for c in reported if "never retrieved" in str(c.get("message"))] == []

    run(main())

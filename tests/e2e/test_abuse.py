"""Attacks on a live server, bounded and on loopback: a normal client must keep working.

Each attack runs against a real server (in process, or an ``h2mesh serve`` process with
the default soft limit of 1024 open files) while an h2mesh ``Channel`` makes ordinary
calls; the assertions are the normal client's success rate, the server's memory and the
limit that stopped the attacker.
"""

from __future__ import annotations

import asyncio
import json
import resource
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from examples.greeter import Greeter, HelloRequest

from h2mesh import Channel, Code, RpcError, Server, TransportConfig
from h2mesh.transport import ErrorCode

Run = Callable[[Coroutine[Any, Any, Any]], Any]

REPO = Path(__file__).resolve().parents[2]
H2MESH = Path(sys.executable).parent / "h2mesh"
HELLO = HelloRequest(name="x")
HALF_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "


async def normal_calls(url: str, calls: int) -> float:
    """The share of ``calls`` unary calls on a fresh Channel that succeed."""
    ok = 0
    async with Channel(url) as ch:
        stub = ch.stub(Greeter)
        for _ in range(calls):
            try:
                await stub.say_hello(HELLO, timeout=5)
                ok += 1
            except RpcError:
                pass
    return ok / calls


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 3.0) -> bytes:
    """What the server sent before closing the connection (fails if it stays open)."""
    return await asyncio.wait_for(reader.read(), timeout)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# -- HTTP/1.1 request head timeout -----------------------------------------------------------
def test_half_sent_request_head_gets_408_and_the_connection_closes(run: Run) -> None:
    async def main() -> None:
        server = Server([Greeter()], config=TransportConfig(request_head_timeout=0.3))
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(HALF_HEAD)
            answer = await closed_by_server(reader)
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert b"request head not complete within 0.3 s" in answer
            writer.close()
            # A head that arrives in pieces but in time is served.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /demo.v1.Greeter/SayHello?encoding=json&message=%7B%22name")
            await writer.drain()
            await asyncio.sleep(0.05)  # a second read for the server, well within 0.3 s
            writer.write(b"%22%3A%22x%22%7D HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await closed_by_server(reader)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            writer.close()
        finally:
            await server.stop(0.1)

    run(main())


# -- connection caps -------------------------------------------------------------------------
def test_connections_past_the_per_address_cap_are_closed_and_others_served(run: Run) -> None:
    async def main() -> None:
        server = Server([Greeter()], max_connections_per_address=20)
        await server.start("127.0.0.1", 0)
        await server.start("::1", 0)
        port4, port6 = (addr[1] for addr in server.sockets)
        held = [await asyncio.open_connection("127.0.0.1", port4) for _ in range(20)]
        try:
            await asyncio.sleep(0)  # (accepting is the server's: let it run)
            extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port4)
            assert await closed_by_server(extra_reader) == b""  # closed, nothing read
            extra_writer.close()
            # Another address is served; the capped one too once it lets go of one.
            assert await normal_calls(f"http://[::1]:{port6}", 20) == 1.0
            held.pop()[1].close()
            ok = 0.0
            deadline = time.monotonic() + 3.0
            while ok < 1.0 and time.monotonic() < deadline:  # the close reaches the server
                ok = await normal_calls(f"http://127.0.0.1:{port4}", 1)
            assert ok == 1.0
        finally:
            for _, writer in held:
                writer.close()
            await server.stop(0.1)

    run(main())


def test_connections_past_the_total_cap_are_closed_at_once(run: Run) -> None:
    async def main() -> None:
        server = Server([Greeter()], max_connections=10)
        await server.start()
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(10)]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert await closed_by_server(reader) == b""
            writer.close()
            with pytest.raises(RpcError) as refused:
                await normal_calls_raising(f"http://127.0.0.1:{server.port}")
            assert refused.value.code is Code.UNAVAILABLE
        finally:
            for _, w in held:
                w.close()
            await server.stop(0.1)
        deadline = time.monotonic() + 3.0
        while server.connection_limits.open:  # every close is counted, once it arrives
            assert time.monotonic() < deadline, server.connection_limits.open
            await asyncio.sleep(0.01)

    run(main())


async def normal_calls_raising(url: str) -> None:
    async with Channel(url) as ch:
        await ch.stub(Greeter).say_hello(HELLO, timeout=2)


# -- 1,100 slow connections against the default 1024 open files ------------------------------
@pytest.fixture
def served_with_1024_files(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """``h2mesh serve`` started as most systems start it: soft RLIMIT_NOFILE 1024."""

    def lower_limit() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    yield from h2mesh_serve(tmp_path, ["examples.greeter:Greeter"], lower_limit)


def h2mesh_serve(
    tmp_path: Path, targets: list[str], preexec_fn: Callable[[], None] | None = None
) -> Iterator[tuple[int, int]]:
    """Run ``h2mesh serve TARGETS`` on a free port; yields its pid and port, kills it after."""
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(H2MESH), "serve", *targets, "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log,
        preexec_fn=preexec_fn,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("h2mesh serving on "), line
        yield proc.pid, int(line.rsplit(":", 1)[1])
    finally:
        proc.kill()
        proc.wait(5)
        log.close()


def test_1100_slow_connections_leave_a_normal_client_served(
    run: Run, served_with_1024_files: tuple[int, int]
) -> None:
    pid, port = served_with_1024_files
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < 4096:
        pytest.fail(f"the hard open-file limit here ({hard}) is too low for this test")
    limits = Path(f"/proc/{pid}/limits").read_text()
    soft_now = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert soft_now.split()[3] == soft_now.split()[4]  # the server raised soft to hard
    rss_before = rss_kib(pid)

    async def main() -> float:
        slow = []
        for _ in range(1100):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HALF_HEAD)  # and never the rest
            slow.append(writer)
        try:
            return await normal_calls(f"http://127.0.0.1:{port}", 200)
        finally:
            for writer in slow:
                writer.close()

    soft, hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard_limit, 4096), hard_limit))
    success = run(main())
    assert success >= 0.99, f"normal client: {success:.1%} success"
    grown = rss_kib(pid) - rss_before
    assert grown < 64 * 1024, f"server RSS grew by {grown} KiB for 1,100 idle connections"


# -- 2,000 streams whose peers keep their receive windows shut -------------------------------
SHUT_CONNECTIONS = 8
SHUT_STREAMS = 250  # per connection (the server allows 256)
# Each stream asks for 100,000 messages of 4 KiB: 400 MB that can never leave.
BULK_REQUEST = json.dumps({"size": 4096, "count": 100_000}).encode()


class ShutWindowPeer:
    """A python-hyper ``h2`` client that opens streams and never lets a byte of them in.

    Its SETTINGS set the initial stream window to 0 and it never sends WINDOW_UPDATE; it
    does answer PINGs (the ``h2`` library acknowledges them), so keepalive spares it.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        self.writer.write(self.h2.data_to_send())
        self.answered: set[int] = set()  # streams whose response headers came
        self.data: dict[int, int] = {}  # DATA bytes received per stream
        self.pump = asyncio.ensure_future(self._pump())

    def open_streams(self, count: int) -> None:
        body = struct.pack(">BI", 0, len(BULK_REQUEST)) + BULK_REQUEST
        for _ in range(count):
            sid = self.h2.get_next_available_stream_id()
            self.h2.send_headers(
                sid,
                [
                    (b":method", b"POST"),
                    (b":scheme", b"http"),
                    (b":authority", b"bulk"),
                    (b":path", b"/test.v1.Bulk/Stream"),
                    (b"content-type", b"application/connect+json"),
                ],
            )
            self.h2.send_data(sid, body, end_stream=True)
        self.writer.write(self.h2.data_to_send())

    def open_window(self, sid: int, size: int) -> None:
        """Start reading one stream after all: let ``size`` bytes of it come."""
        self.h2.increment_flow_control_window(size)
        self.h2.increment_flow_control_window(size, stream_id=sid)
        self.writer.write(self.h2.data_to_send())

    async def _pump(self) -> None:
        while data := await self.reader.read(65536):
            for ev in self.h2.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    self.answered.add(ev.stream_id)
                elif isinstance(ev, h2.events.DataReceived):
                    self.data[ev.stream_id] = self.data.get(ev.stream_id, 0) + len(ev.data)
            if out := self.h2.data_to_send():
                self.writer.write(out)

    def close(self) -> None:
        self.pump.cancel()
        self.writer.close()


@pytest.fixture
def bulk_server(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """``h2mesh serve`` with its default limits, serving large answers and the greeter."""
    yield from h2mesh_serve(tmp_path, ["tests.e2e.bulk_service:Bulk", "examples.greeter:Greeter"])


def test_2000_streams_with_shut_windows_hold_bounded_memory(
    run: Run, bulk_server: tuple[int, int]
) -> None:
    pid, port = bulk_server
    rss_before = rss_kib(pid)

    async def main() -> tuple[float, int]:
        peers = [
            ShutWindowPeer(*await asyncio.open_connection("127.0.0.1", port))
            for _ in range(SHUT_CONNECTIONS)
        ]
        try:
            deadline = time.monotonic() + 5.0
            while not all(p.h2.remote_settings.max_concurrent_streams == 256 for p in peers):
                assert time.monotonic() < deadline, "no SETTINGS from the server"
                await asyncio.sleep(0.01)
            for peer in peers:
                peer.open_streams(SHUT_STREAMS)
            # Every handler has run and answered (headers need no window) ...
            deadline = time.monotonic() + 20.0
            while sum(len(p.answered) for p in peers) < SHUT_CONNECTIONS * SHUT_STREAMS:
                assert time.monotonic() < deadline, sum(len(p.answered) for p in peers)
                await asyncio.sleep(0.02)
            # ... and not one byte of their bodies got through.
            assert not any(p.data for p in peers)
            success = await normal_calls(f"http://127.0.0.1:{port}", 200)
            grown = rss_kib(pid) - rss_before
            # The waits end as a window opens: one stream of one peer now reads 1 MiB.
            sid = min(peers[0].answered)
            peers[0].open_window(sid, 1024 * 1024)
            deadline = time.monotonic() + 5.0
            while peers[0].data.get(sid, 0) < 1024 * 1024:
                assert time.monotonic() < deadline, peers[0].data
                await asyncio.sleep(0.01)
            return success, grown
        finally:
            for peer in peers:
                peer.close()

    success, grown = run(main())
    assert success >= 0.99, f"normal client: {success:.1%} success"
    # Measured: about 48 MiB (some 8 MiB queued in the engines: 1 MiB per connection;
    # the rest is the 2,000 calls themselves, each with one message waiting to be sent);
    # without the caps, 160 MiB (64 KiB queued per stream).
    assert grown < 96 * 1024, f"server RSS grew by {grown} KiB for 2,000 stalled streams"


# -- rapid reset while a normal client calls -------------------------------------------------
async def rapid_reset(port: int, streams: int = 1200) -> int | None:
    """One connection that opens and at once resets up to ``streams`` streams
    (CVE-2023-44487); the error code of the GOAWAY that ends it (None: none came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    head = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"x"),
        (b":path", b"/demo.v1.Greeter/SayHello"),
        (b"content-type", b"application/json"),
    ]
    try:
        for _ in range(streams // 100):
            if writer.is_closing() or reader.at_eof():
                break  # the server has had enough
            for _ in range(100):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, head)
                conn.reset_stream(sid)
            writer.write(conn.data_to_send())
            await asyncio.sleep(0)  # (let the normal client's calls run in between)
    except ConnectionError:
        pass  # closed by the server while we wrote: its GOAWAY is in the read buffer
    try:
        while data := await asyncio.wait_for(reader.read(65536), 5.0):
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ConnectionTerminated):
                    return int(ev.error_code)
    except ConnectionError:
        pass
    finally:
        writer.close()
    return None


def test_rapid_reset_leaves_a_normal_client_served(run: Run, bulk_server: tuple[int, int]) -> None:
    pid, port = bulk_server
    rss_before = rss_kib(pid)

    async def main() -> tuple[float, list[int | None]]:
        async def attack() -> list[int | None]:
            return [await rapid_reset(port) for _ in range(2)]

        attackers = asyncio.gather(*(attack() for _ in range(3)))
        shares = []  # the normal client calls for as long as the attack lasts
        while not attackers.done() or len(shares) < 4:
            shares.append(await normal_calls(f"http://127.0.0.1:{port}", 50))
        codes = [code for codes in await attackers for code in codes]
        return sum(shares) / len(shares), codes

    success, codes = run(main())
    assert success >= 0.99, f"normal client: {success:.1%} success"
    assert codes == [ErrorCode.ENHANCE_YOUR_CALM] * 6, codes
    grown = rss_kib(pid) - rss_before
    assert grown < 32 * 1024, f"server RSS grew by {grown} KiB under 6 rapid-reset connections"


# -- a body in tiny DATA frames that nobody reads --------------------------------------------
TINY_STREAMS = 2
TINY_WINDOW = 1024 * 1024  # the server's default stream window


@pytest.fixture
def held_app_server(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """``h2mesh serve`` with an application that never reads request bodies, beside the
    greeter."""
    yield from h2mesh_serve(tmp_path, ["tests.e2e.hold_app:app", "examples.greeter:Greeter"])


def test_a_body_in_two_byte_data_frames_costs_the_server_about_its_size(
    run: Run, held_app_server: tuple[int, int]
) -> None:
    """Two streams, each sent its whole 1 MiB window in 2-byte DATA frames, to an app that
    never reads: the server holds the 2 MiB, not an object per frame (about 45 bytes
    each, some 46 MiB), and serves a normal client meanwhile."""
    pid, port = held_app_server
    rss_before = rss_kib(pid)

    async def main() -> tuple[float, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams = []
        for _ in range(TINY_STREAMS):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(
                sid,
                [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"held"),
                 (b":path", b"/upload")],
            )  # fmt: skip
            streams.append(sid)
        writer.write(conn.data_to_send())
        # The server's SETTINGS (its 1 MiB stream window) and their acknowledgement.
        while conn.remote_settings.initial_window_size != TINY_WINDOW:
            conn.receive_data(await asyncio.wait_for(reader.read(65536), 5.0))
        writer.write(conn.data_to_send())
        for sid in streams:
            # Written by hand: h2 would gather the bytes into full frames.
            frame = struct.pack(">I", 2)[1:] + bytes((0, 0)) + struct.pack(">I", sid) + b"xy"
            batch = frame * 4096
            for _ in range(TINY_WINDOW // 2 // 4096):
                writer.write(batch)
                await writer.drain()
        # A PING after the frames: its answer means the server has taken them all in.
        conn.ping(b"tinydata")
        writer.write(conn.data_to_send())
        acked = False
        while not acked:
            data = await asyncio.wait_for(reader.read(65536), 10.0)
            assert data, "the server closed the connection"
            events = conn.receive_data(data)
            assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
            acked = any(isinstance(e, h2.events.PingAckReceived) for e in events)
        grown = rss_kib(pid) - rss_before
        success = await normal_calls(f"http://127.0.0.1:{port}", 50)
        writer.close()
        return success, grown

    success, grown = run(main())
    assert success == 1.0, f"normal client: {success:.1%} success"
    # Measured: ~3 MiB (the 2 MiB of body, gathered); 58 MiB with a bytes object per frame.
    assert grown < 12 * 1024, f"server RSS grew by {grown} KiB for 2 MiB of body"

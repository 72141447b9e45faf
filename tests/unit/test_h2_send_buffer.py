"""Caps on the response bytes queued for peers that keep their receive windows shut.

Real ``H2Connection`` servers on 127.0.0.1 answer ``H2Connection`` clients that never
read (their initial stream window is 0, so nothing a server queues for them can leave);
the assertions are the bytes queued in the servers' engines, who waits, and the order
in which the waits end.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from h2mesh.transport import (
    ConnectionLost,
    ErrorCode,
    H2Connection,
    H2Stream,
    SendBudget,
    StreamReset,
    TransportConfig,
)

from .test_h2_transport import Peers, Run, read_digest, request_headers, wait_until

# Each run() of a test is bounded (the conftest's ``run`` reads this).
RUN_TIME_LIMIT = 5.0

KIB = 1024
CHUNK = 16 * KIB
# A client that never reads: its streams open with a window of 0 bytes.
SHUT = TransportConfig(stream_window=0, idle_timeout=None, keepalive_interval=None)
OPEN = TransportConfig(idle_timeout=None, keepalive_interval=None)


def sharing(budget: SendBudget) -> type[H2Connection]:
    """A server connection class whose connections share ``budget``."""

    class Shared(H2Connection):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(send_budget=budget, **kwargs)

    return Shared


def queued(conns: list[H2Connection]) -> int:
    """Body bytes the engines of ``conns`` hold for their peers, all together."""
    return sum(conn.engine.queued_body_size() for conn in conns)


class Outbox:
    """A handler that answers each request with ``chunks`` pieces of ``CHUNK`` bytes.

    It records the pieces each stream got rid of, in the order ``send_data`` returned.
    """

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.sent: dict[bytes, int] = {}
        self.order: list[bytes] = []
        self.errors: list[BaseException] = []
        self.streams: dict[bytes, H2Stream] = {}

    async def __call__(self, stream: H2Stream) -> None:
        name = dict(stream.headers or ())[b":path"]
        self.sent[name] = 0
        self.streams[name] = stream
        stream.send_headers([(b":status", b"200")])
        try:
            for n in range(self.chunks):
                await stream.send_data(piece(name, n), end_stream=n == self.chunks - 1)
                self.sent[name] += 1
                self.order.append(name)
        except (ConnectionLost, StreamReset) as exc:
            self.errors.append(exc)
        except asyncio.CancelledError as exc:  # (the transport cancels it with its stream)
            self.errors.append(exc)
            raise

    def total(self) -> int:
        return sum(self.sent.values())


def piece(name: bytes, n: int) -> bytes:
    return (name + b"%d " % n).ljust(CHUNK, b".")


def expected(name: bytes, chunks: int) -> str:
    return hashlib.sha256(b"".join(piece(name, n) for n in range(chunks))).hexdigest()


def open_window(client: H2Connection, stream: H2Stream, size: int) -> None:
    """Open ``stream``'s window to ``size`` bytes: from now on the client reads it."""
    client.engine.set_local_window_size(size, stream_id=stream.id)
    client.schedule_flush()


def test_senders_on_a_connection_wait_at_its_cap_and_finish_once_it_reads(run: Run) -> None:
    cap = 128 * KIB
    out = Outbox(chunks=16)  # 256 KiB per stream, 8 streams: 2 MiB asked for
    cfg = TransportConfig(connection_send_buffer=cap, send_high_water=1024 * KIB)

    async def main() -> None:
        async with Peers(out, cfg) as peers:
            client = await peers.connect(SHUT)
            streams = [client.open_stream(request_headers(b"/%d" % i), True) for i in range(8)]
            await wait_until(lambda: len(out.sent) == 8)
            server = peers.server_conn
            await wait_until(lambda: len(server.room_waiters) == 8)  # every handler waits
            # The cap holds, give or take the piece that crossed it: the rest wait.
            assert server.engine.queued_body_size() <= cap + CHUNK
            assert out.total() * CHUNK <= cap + CHUNK
            assert len(server.room_waiters) == 8
            assert peers.server_conn.budget.queued == server.queued

            # The client reads every stream: all of them finish, intact.
            async def read(stream: H2Stream) -> tuple[int, str]:
                open_window(client, stream, 16 * CHUNK)
                return await read_digest(stream)

            got = await asyncio.wait_for(asyncio.gather(*map(read, streams)), 4.0)
            for i, (size, digest) in enumerate(got):
                assert size == 16 * CHUNK
                assert digest == expected(b"/%d" % i, 16)
            assert not out.errors
            assert server.queued == 0 and server.budget.queued == 0

    run(main())


def test_waits_end_in_the_order_they_began_when_a_stream_is_reset(run: Run) -> None:
    cap = 64 * KIB
    out = Outbox(chunks=4)  # the first stream fills the cap by itself
    cfg = TransportConfig(connection_send_buffer=cap, send_high_water=1024 * KIB)

    async def main() -> None:
        async with Peers(out, cfg) as peers:
            client = await peers.connect(SHUT)
            first = client.open_stream(request_headers(b"/first"), True)
            await wait_until(lambda: out.sent.get(b"/first") == 4)
            server = peers.server_conn
            later = []
            for name in (b"/a", b"/b", b"/c"):  # one at a time, so that their order is known
                later.append(client.open_stream(request_headers(name), True))
                await wait_until(lambda: len(server.room_waiters) == len(later))
            assert out.order == [b"/first"] * 4
            first.reset()  # the peer gives up on the stream holding the cap
            await wait_until(lambda: out.total() == 4 + 4)
            # One piece each, in the order they came; then the cap is reached again.
            assert out.order[4:8] == [b"/a", b"/b", b"/c", b"/a"]
            assert server.engine.queued_body_size() == cap

    run(main())


def test_server_budget_is_shared_and_a_connection_with_nothing_queued_still_sends(
    run: Run,
) -> None:
    budget = SendBudget(128 * KIB)
    out = Outbox(chunks=64)  # 1 MiB per stream
    cfg = TransportConfig(send_high_water=1024 * KIB)

    async def main() -> None:
        async with Peers(out, cfg, server_cls=sharing(budget)) as peers:
            shut = [await peers.connect(SHUT) for _ in range(4)]
            for i, client in enumerate(shut):
                client.open_stream(request_headers(b"/shut%d" % i), True)
            await wait_until(lambda: budget.queued >= budget.limit)
            await wait_until(lambda: len(out.sent) == 4)
            shut_conns = list(peers.server_conns)
            # Every handler waits (a connection with nothing queued sent one piece first).
            await wait_until(lambda: all(len(c.room_waiters) == 1 for c in shut_conns))
            # The budget holds, but for one piece per connection that had nothing queued.
            assert queued(peers.server_conns) <= budget.limit + 4 * CHUNK
            assert all(n >= 1 for n in out.sent.values()), out.sent

            # A client that reads is served meanwhile: its data leaves as soon as queued.
            reader = await peers.connect(OPEN)
            stream = reader.open_stream(request_headers(b"/reader"), True)
            size, digest = await asyncio.wait_for(read_digest(stream), 4.0)
            assert (size, digest) == (64 * CHUNK, expected(b"/reader", 64))
            assert queued(peers.server_conns) <= budget.limit + 4 * CHUNK

            # The shut client holding most of the budget goes away: its bytes return to the
            # budget, and the others (waiting for the budget, not for their own
            # connections) move on.
            before = dict(out.sent)
            filler = max(range(4), key=lambda i: out.sent[b"/shut%d" % i])
            assert out.sent[b"/shut%d" % filler] > 1
            shut[filler].abort()
            await wait_until(lambda: sum(out.sent.values()) > sum(before.values()))
            await wait_until(
                lambda: all(len(c.room_waiters) == 1 for c in shut_conns if not c.lost)
            )
            assert queued(peers.server_conns) <= budget.limit + 4 * CHUNK
            assert budget.queued == sum(c.queued for c in peers.server_conns if not c.lost)

    run(main())


@pytest.mark.parametrize("end", ["connection lost", "handler cancelled"])
def test_a_waiting_sender_is_reaped_with_its_connection_or_its_task(run: Run, end: str) -> None:
    budget = SendBudget(10 * 1024 * KIB)
    out = Outbox(chunks=8)
    cfg = TransportConfig(connection_send_buffer=32 * KIB, send_high_water=1024 * KIB)

    async def main() -> None:
        async with Peers(out, cfg, server_cls=sharing(budget)) as peers:
            client = await peers.connect(SHUT)
            for name in (b"/a", b"/b"):
                client.open_stream(request_headers(name), True)
            server = peers.server_conn
            await wait_until(lambda: len(server.room_waiters) == 2)
            assert budget.queued == server.queued > 0
            if end == "connection lost":
                client.abort()
                await wait_until(lambda: len(out.errors) == 2)
                assert all(
                    isinstance(e, (ConnectionLost, asyncio.CancelledError)) for e in out.errors
                ), out.errors
                assert not server.room_waiters
                assert budget.queued == 0 and not budget.waiting
            else:
                # (what a call deadline does) the first waiter's task is cancelled: it
                # leaves the queue, and the next one is first.
                first, second = server.room_waiters
                assert first.task is not None
                first.task.cancel()
                await wait_until(lambda: len(out.errors) == 1)
                assert list(server.room_waiters) == [second]
                assert second._send_waiter is not None  # still waiting: no room yet

    run(main())


def test_a_stream_whose_peer_takes_nothing_for_send_timeout_is_reset(run: Run) -> None:
    budget = SendBudget(10 * 1024 * KIB)
    out = Outbox(chunks=8)
    cfg = TransportConfig(
        send_timeout=0.3, idle_timeout=None, keepalive_interval=None, send_high_water=32 * KIB
    )

    async def main() -> None:
        async with Peers(out, cfg, server_cls=sharing(budget)) as peers:
            client = await peers.connect(SHUT)
            stuck = client.open_stream(request_headers(b"/stuck"), True)
            await wait_until(lambda: budget.queued > 0)
            started = asyncio.get_running_loop().time()
            with pytest.raises(StreamReset) as reset:
                await asyncio.wait_for(stuck.read(), 3.0)
            assert reset.value.error_code == ErrorCode.CANCEL
            assert asyncio.get_running_loop().time() - started >= 0.3
            # The handler waiting to send more is stopped (cancelled, as for any reset),
            # the stream says why, and its bytes are given back.
            await wait_until(lambda: len(out.errors) == 1)
            assert "took none of the response for 0.3 s" in str(out.streams[b"/stuck"]._error)
            await wait_until(lambda: budget.queued == 0)
            # The connection goes on: a stream the client reads is served in full.
            served = client.open_stream(request_headers(b"/served"), True)
            await asyncio.wait_for(served.wait_response(), 2.0)
            open_window(client, served, 8 * CHUNK)
            size, digest = await asyncio.wait_for(read_digest(served), 3.0)
            assert (size, digest) == (8 * CHUNK, expected(b"/served", 8))

    run(main())


def test_send_timeout_also_ends_the_streams_waiting_for_room(run: Run) -> None:
    """Streams that never got their bytes queued (the connection was at its cap) are
    reset on the same clock as the one holding the cap, not one send_timeout after
    another as room frees up. (The check runs on an injected clock.)"""
    out = Outbox(chunks=8)
    cfg = TransportConfig(
        send_timeout=None,  # no timer: the test calls the check itself
        idle_timeout=None,
        keepalive_interval=None,
        connection_send_buffer=32 * KIB,
        send_high_water=1024 * KIB,
    )

    async def main() -> None:
        async with Peers(out, cfg) as peers:
            client = await peers.connect(SHUT)
            client.open_stream(request_headers(b"/first"), True)
            await wait_until(lambda: out.sent.get(b"/first") == 2)  # the cap, reached
            server = peers.server_conn
            for name in (b"/b", b"/c"):
                client.open_stream(request_headers(name), True)
            await wait_until(lambda: len(server.room_waiters) == 3)
            assert out.sent == {b"/first": 2, b"/b": 0, b"/c": 0}
            server._reset_stalled(100.0, 60.0)  # first seen stalled
            server._reset_stalled(159.0, 60.0)
            assert all(stream._error is None for stream in out.streams.values())
            server._reset_stalled(160.0, 60.0)  # a minute on: all three, at once
            for name in (b"/first", b"/b", b"/c"):
                assert "took none of the response for 60 s" in str(out.streams[name]._error)
            await wait_until(lambda: len(out.errors) == 3)
            assert out.sent == {b"/first": 2, b"/b": 0, b"/c": 0}
            await wait_until(lambda: server.budget.queued == 0)

    run(main())


class WholeResponses:
    """A handler: ``/fill`` streams pieces until it must wait; any other path is answered
    whole with ``try_respond``, falling back to ``send_headers``/``send_data`` (as callers
    must) when it declines. Records what ``try_respond`` said and what it left queued."""

    def __init__(self) -> None:
        self.answers: dict[bytes, bool] = {}
        self.queued_after: dict[bytes, int] = {}
        self.filled = asyncio.Event()

    async def __call__(self, stream: H2Stream) -> None:
        name = dict(stream.headers or ())[b":path"]
        if name == b"/fill":
            stream.send_headers([(b":status", b"200")])
            conn = stream._conn
            n = 0
            while conn.queued < conn.send_limit:
                await stream.send_data(piece(name, n))
                n += 1
            self.filled.set()
            await stream.send_data(b"", end_stream=True)  # waits: the cap is reached
            return
        head = [(b":status", b"200"), (b"content-type", b"text/plain")]
        body = name * 100
        taken = stream.try_respond(head, body)
        self.answers[name] = taken
        self.queued_after[name] = stream._conn.engine.queued_body_size(stream.id)
        if not taken:
            assert not stream.ended_local
            stream.send_headers(head)
            await stream.send_data(body, end_stream=True)


def test_a_whole_response_is_sent_at_once_unless_the_connection_is_full(run: Run) -> None:
    cap = 64 * KIB
    out = WholeResponses()
    cfg = TransportConfig(connection_send_buffer=cap, send_high_water=1024 * KIB)

    async def main() -> None:
        async with Peers(out, cfg) as peers:
            reader = await peers.connect(OPEN)
            stream = reader.open_stream(request_headers(b"/open"), True)
            size, digest = await asyncio.wait_for(read_digest(stream), 4.0)
            assert out.answers[b"/open"] is True
            assert (await stream.wait_response())[0] == (b":status", b"200")
            assert (size, digest) == (500, hashlib.sha256(b"/open" * 100).hexdigest())

            # On a connection whose peer holds the cap, the whole response is declined
            # with nothing sent (the fallback then waits for room).
            client = await peers.connect(SHUT)
            fill = client.open_stream(request_headers(b"/fill"), True)
            await asyncio.wait_for(out.filled.wait(), 4.0)
            later = client.open_stream(request_headers(b"/later"), True)
            await wait_until(lambda: b"/later" in out.answers)
            assert out.answers[b"/later"] is False
            assert out.queued_after[b"/later"] == 0
            # The peer reads: both responses arrive whole.
            open_window(client, fill, 1 << 20)
            open_window(client, later, 1 << 20)
            got = await asyncio.wait_for(read_digest(later), 4.0)
            assert got == (600, hashlib.sha256(b"/later" * 100).hexdigest())
            await asyncio.wait_for(read_digest(fill), 4.0)

    run(main())


def test_a_whole_response_with_trailers_arrives_head_body_and_trailers(run: Run) -> None:
    answers: list[bool] = []

    async def handler(stream: H2Stream) -> None:
        answers.append(
            stream.try_respond(
                [(b":status", b"200"), (b"content-type", b"application/grpc")],
                b"\x00\x00\x00\x00\x02hi",
                [(b"grpc-status", b"0"), (b"x-end", b"yes")],
            )
        )

    async def main() -> None:
        async with Peers(handler, TransportConfig()) as peers:
            client = await peers.connect(OPEN)
            stream = client.open_stream(request_headers(b"/t"), True)
            head = await asyncio.wait_for(stream.wait_response(), 4.0)
            body = await asyncio.wait_for(stream.read_all(1 << 16), 4.0)
            assert answers == [True]
            assert dict(head)[b"content-type"] == b"application/grpc"
            assert body == b"\x00\x00\x00\x00\x02hi"
            assert stream.trailers == [(b"grpc-status", b"0"), (b"x-end", b"yes")]

    run(main())

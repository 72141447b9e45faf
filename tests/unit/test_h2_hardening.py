"""Requests that libnghttp2 alone gets wrong, sent by a python-hyper ``h2`` client.

The server is a real ``H2Connection`` on 127.0.0.1; the peer is the ``h2`` state machine
(with its own checks turned off where a request must be malformed) over an asyncio
socket, so every byte on the wire is what a third-party client would send.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from h2mesh.transport import ErrorCode, H2Stream, TransportConfig
from h2mesh.transport._guard import InboundGuard, shorten_strings

from .test_h2_transport import Peers, Run, read_digest, wait_until

# Each run() of a test is bounded (the conftest's ``run`` reads this).
RUN_TIME_LIMIT = 5.0

BASE = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/echo")]


def request(*extra: tuple[bytes, bytes], authority: bytes | None = b"svc") -> list[Any]:
    head = list(BASE)
    if authority is not None:
        head.insert(2, (b":authority", authority))
    return [*head, *extra]


def incompressible(size: int) -> bytes:
    """A header value that Huffman coding cannot shrink below the engine's limit."""
    rng = random.Random(size)
    return bytes(rng.choice(b"!#$%&'*+-.^_`|~0123456789") for _ in range(size))


class H2Peer:
    """An ``h2`` client connection over an asyncio socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.h2.initiate_connection()
        self.flush()
        self.events: list[h2.events.Event] = []

    @classmethod
    async def connect(cls, port: int) -> H2Peer:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def flush(self) -> None:
        self.writer.write(self.h2.data_to_send())

    def send(self, headers: list[Any], body: bytes = b"") -> int:
        sid: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, headers, end_stream=not body)
        if body:
            self.h2.send_data(sid, body, end_stream=True)
        self.flush()
        return sid

    async def next_event(self) -> h2.events.Event | None:
        """The next event from the server; None once it closed the connection."""
        while not self.events:
            data = await asyncio.wait_for(self.reader.read(65536), 2.0)
            if not data:
                return None
            self.events += self.h2.receive_data(data)
            self.flush()
        return self.events.pop(0)

    async def response(self, sid: int) -> tuple[dict[bytes, bytes], bytes]:
        """The response on stream ``sid``: its headers and its body."""
        headers: dict[bytes, bytes] = {}
        body = b""
        while True:
            ev = await self.next_event()
            assert ev is not None, "the server closed the connection"
            assert not isinstance(ev, h2.events.ConnectionTerminated), ev
            if getattr(ev, "stream_id", None) != sid:
                continue
            if isinstance(ev, h2.events.ResponseReceived):
                headers = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
                self.h2.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded):
                return headers, body
            elif isinstance(ev, h2.events.StreamReset):
                raise AssertionError(f"stream {sid} reset with code {ev.error_code}")

    async def goaway(self) -> h2.events.ConnectionTerminated:
        while True:
            ev = await self.next_event()
            assert ev is not None, "closed without GOAWAY"
            if isinstance(ev, h2.events.ConnectionTerminated):
                return ev

    def close(self) -> None:
        self.writer.close()


async def echo_authority(stream: H2Stream) -> None:
    """Answer with the request's ``:authority`` as the server's layers see it."""
    await read_digest(stream)
    authority = dict(stream.headers or ()).get(b":authority", b"(none)")
    stream.send_headers([(b":status", b"200")])
    await stream.send_data(authority, end_stream=True)


def test_host_without_authority_is_accepted_and_becomes_the_authority(run: Run) -> None:
    async def main() -> None:
        async with Peers(echo_authority) as peers:
            peer = await H2Peer.connect(peers.port)
            # As HAProxy's HTTP/2 health checks and some proxies send it.
            sid = peer.send(request((b"host", b"backend:8080"), authority=None), b"x")
            headers, body = await peer.response(sid)
            assert headers[b":status"] == b"200"
            assert body == b"backend:8080"
            peer.close()

    run(main())


@pytest.mark.parametrize(
    ("authority", "host"),
    [(b"svc", b"svc"), (b"Svc.Example", b"svc.example"), (b"svc:80", b"svc")],
)
def test_host_naming_the_same_origin_as_authority_is_accepted(
    run: Run, authority: bytes, host: bytes
) -> None:
    async def main() -> None:
        async with Peers(echo_authority) as peers:
            peer = await H2Peer.connect(peers.port)
            sid = peer.send(request((b"host", host), authority=authority))
            headers, body = await peer.response(sid)
            assert headers[b":status"] == b"200"
            assert body == authority
            peer.close()

    run(main())


def test_host_disagreeing_with_authority_is_rejected_on_that_stream(run: Run) -> None:
    async def main() -> None:
        async with Peers(echo_authority) as peers:
            peer = await H2Peer.connect(peers.port)
            sid = peer.send(request((b"host", b"evil.example"), authority=b"svc"), b"body")
            headers, body = await peer.response(sid)
            assert headers[b":status"] == b"400"
            assert b"'evil.example' disagrees with :authority 'svc'" in body
            assert not peers.tasks  # no handler saw it
            # The connection goes on.
            sid = peer.send(request(), b"x")
            assert (await peer.response(sid))[0][b":status"] == b"200"
            peer.close()

    run(main())


@pytest.mark.parametrize("field", ["value", "name"])
def test_single_field_over_64k_gets_431_and_the_connection_goes_on(run: Run, field: str) -> None:
    async def main() -> None:
        big = incompressible(70_000)
        extra = (b"x-big", big) if field == "value" else (big.lower(), b"v")
        config = TransportConfig(max_header_list_size=1024 * 1024)  # allowed by the limit
        async with Peers(echo_authority, config) as peers:
            peer = await H2Peer.connect(peers.port)
            sid = peer.send(request(extra), b"body")
            headers, _ = await peer.response(sid)
            assert headers[b":status"] == b"431"
            assert not peers.tasks
            # HPACK state stayed in step: indexed fields of the next request decode.
            sid = peer.send(request((b"x-small", b"ok")), b"x")
            headers, body = await peer.response(sid)
            assert headers[b":status"] == b"200"
            assert body == b"svc"
            peer.close()

    run(main())


@pytest.mark.parametrize(
    ("fields", "how"),
    [
        # Few fields, in a block split over CONTINUATION frames (each field under 64 KiB).
        ([(b"x-a", incompressible(40_000)), (b"x-b", incompressible(40_000))], "continued"),
        # Many fields, each a one-byte reference to the same 4 KB entry of the dynamic
        # table: a small frame that decodes past the limit.
        ([(b"x-r", incompressible(4_000))] * 17, "indexed"),
    ],
)
def test_header_list_over_the_default_limit_gets_431(
    run: Run, fields: list[tuple[bytes, bytes]], how: str
) -> None:
    async def main() -> None:
        async with Peers(echo_authority) as peers:  # the default limit, 64 KiB
            peer = await H2Peer.connect(peers.port)
            sid = peer.send(request(*fields), b"body")
            headers, _ = await peer.response(sid)
            assert headers[b":status"] == b"431", how
            assert not peers.tasks
            # The connection goes on, and a list within the limit passes.
            sid = peer.send(request(*fields[:1]), b"x")
            headers, body = await peer.response(sid)
            assert headers[b":status"] == b"200"
            assert body == b"svc"
            peer.close()

    run(main())


def test_single_field_over_64k_in_trailers_resets_only_that_stream(run: Run) -> None:
    async def handler(stream: H2Stream) -> None:
        await echo_authority(stream)

    async def main() -> None:
        async with Peers(handler, TransportConfig(max_header_list_size=1024 * 1024)) as peers:
            peer = await H2Peer.connect(peers.port)
            sid = peer.h2.get_next_available_stream_id()
            peer.h2.send_headers(sid, request())
            peer.h2.send_data(sid, b"part")
            peer.flush()
            await wait_until(lambda: bool(peers.tasks))  # the handler is reading the body
            peer.h2.send_headers(sid, [(b"x-big", incompressible(70_000))], end_stream=True)
            peer.flush()
            with pytest.raises(AssertionError, match=f"stream {sid} reset"):
                await peer.response(sid)
            sid = peer.send(request(), b"x")
            assert (await peer.response(sid))[0][b":status"] == b"200"
            peer.close()

    run(main())


def test_rapid_reset_ends_in_goaway_enhance_your_calm(run: Run) -> None:
    async def main() -> None:
        async with Peers(echo_authority) as peers:
            peer = await H2Peer.connect(peers.port)
            for _ in range(3000):
                sid = peer.h2.get_next_available_stream_id()
                peer.h2.send_headers(sid, request())
                peer.h2.reset_stream(sid)
            peer.flush()
            goaway = await peer.goaway()
            assert goaway.error_code == ErrorCode.ENHANCE_YOUR_CALM  # not INTERNAL_ERROR
            peer.close()
            # Other clients are served.
            other = await H2Peer.connect(peers.port)
            sid = other.send(request(), b"x")
            assert (await other.response(sid))[0][b":status"] == b"200"
            other.close()

    run(main())


def test_guard_output_does_not_depend_on_how_reads_are_split() -> None:
    """The guard holds split header blocks whatever the read boundaries."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    for i, size in enumerate((10, 70_000, 100, 66_000, 20_000)):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request((b"x-f", incompressible(size + i))))
        conn.send_data(sid, os.urandom(5000), end_stream=True)
    wire = conn.data_to_send()  # the preface included
    every = range(1 << 31)  # every stream is open, as far as these guards know
    whole_guard = InboundGuard(open_streams=every)
    whole = whole_guard.feed(wire)
    assert list(whole_guard.oversized) == [3, 7]  # in the order they came
    assert len(whole) < len(wire) - 2 * 60_000
    for chunk in (1, 7, 9, 1000, 16_393):
        guard = InboundGuard(open_streams=every)
        out = b"".join(guard.feed(wire[i : i + chunk]) for i in range(0, len(wire), chunk))
        assert out == whole, chunk
        assert list(guard.oversized) == [3, 7]


def test_shorten_strings_leaves_blocks_without_long_strings_alone() -> None:
    assert shorten_strings(b"\x82\x86\x84", 10) is None  # indexed fields only
    assert shorten_strings(b"\x40\x01a\x01b", 10) is None  # short literals
    assert shorten_strings(b"\x40\x7f", 10) is None  # truncated: the engine judges it
    shortened = shorten_strings(b"\x00\x01a\x0bhello world", 10)
    assert shortened is not None
    assert shortened.startswith(b"\x00\x01a\x7f")  # the value, now the stand-in

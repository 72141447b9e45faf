"""HTTP/2 conformance cases (h2spec's numbering) that libnghttp2 alone gets wrong.

Each case is sent as raw frames built with ``hyperframe`` (HPACK by ``hpack``) to a real
``Server`` on 127.0.0.1; the assertions are the frames it answers with, as RFC 9113
requires: a GOAWAY with the right code for connection errors, an RST_STREAM for stream
errors, and the connection going on where the client did nothing wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import hpack
import pytest
from examples.greeter import Greeter
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from h2mesh import Server

Run = Callable[[Coroutine[Any, Any, Any]], Any]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED = 0x1, 0x3, 0x5
REQUEST = [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/")]


class RawClient:
    """A client that writes hyperframe frames and reads the server's back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.encoder = hpack.Encoder()
        self.buffer = b""

    def send(self, *frames: Frame) -> None:
        self.writer.write(b"".join(f.serialize() for f in frames))

    def headers(self, sid: int, end_stream: bool = True) -> HeadersFrame:
        flags = ["END_HEADERS", *(["END_STREAM"] if end_stream else [])]
        return HeadersFrame(sid, self.encoder.encode(REQUEST), flags=flags)

    async def frame(self) -> Frame | None:
        """The next frame from the server; None once it closed the connection."""
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                    self.buffer = self.buffer[9 + length :]
                    return frame
            data = await asyncio.wait_for(self.reader.read(65536), 3.0)
            if not data:
                return None
            self.buffer += data

    async def until(self, kind: type[Frame], sid: int | None = None) -> Frame:
        while True:
            frame = await self.frame()
            assert frame is not None, f"closed before a {kind.__name__}"
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.send(SettingsFrame(0, flags=["ACK"]))
            if isinstance(frame, kind) and (sid is None or frame.stream_id == sid):
                return frame

    async def response_ends(self, sid: int) -> None:
        """Read until the server ended its response on ``sid``."""
        while True:
            frame = await self.until(Frame)
            if frame.stream_id == sid and "END_STREAM" in frame.flags:
                return

    async def goaway(self) -> GoAwayFrame:
        frame = await self.until(GoAwayFrame)
        assert isinstance(frame, GoAwayFrame)
        return frame


@asynccontextmanager
async def client() -> AsyncIterator[RawClient]:
    server = Server([Greeter()])
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    peer = RawClient(reader, writer)
    writer.write(PREFACE)
    peer.send(SettingsFrame(0))
    try:
        yield peer
    finally:
        writer.close()
        await server.stop(0.1)


def check(run: Run, case: Callable[[RawClient], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        async with client() as peer:
            await case(peer)

    run(main())


def test_3_5_2_invalid_preface_gets_goaway_protocol_error(run: Run) -> None:
    async def main() -> None:
        server = Server([Greeter()])
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"INVALID CONNECTION PREFACE\r\n\r\n")
            peer = RawClient(reader, writer)
            goaway = await peer.frame()
            assert isinstance(goaway, GoAwayFrame)
            assert goaway.error_code == PROTOCOL_ERROR
            assert await peer.frame() is None  # and the connection closes
            writer.close()
        finally:
            await server.stop(0.1)

    run(main())


def test_5_1_8_data_after_the_clients_rst_stream_is_stream_closed(run: Run) -> None:
    async def case(peer: RawClient) -> None:
        peer.send(peer.headers(1, end_stream=False), RstStreamFrame(1, error_code=0x8))
        peer.send(DataFrame(1, b"test", flags=["END_STREAM"]))
        assert (await peer.goaway()).error_code == STREAM_CLOSED

    check(run, case)


def test_5_1_9_headers_after_the_clients_rst_stream_is_stream_closed(run: Run) -> None:
    async def case(peer: RawClient) -> None:
        peer.send(peer.headers(1, end_stream=False), RstStreamFrame(1, error_code=0x8))
        peer.send(peer.headers(1))
        assert (await peer.goaway()).error_code == STREAM_CLOSED

    check(run, case)


def test_5_1_11_data_on_a_closed_stream_is_stream_closed(run: Run) -> None:
    async def case(peer: RawClient) -> None:
        peer.send(peer.headers(1))
        await peer.response_ends(1)
        peer.send(DataFrame(1, b"test", flags=["END_STREAM"]))
        assert (await peer.goaway()).error_code == STREAM_CLOSED

    check(run, case)


def test_5_1_12_headers_on_a_closed_stream_is_stream_closed(run: Run) -> None:
    async def case(peer: RawClient) -> None:
        peer.send(peer.headers(1))
        await peer.response_ends(1)
        peer.send(peer.headers(1))
        assert (await peer.goaway()).error_code == STREAM_CLOSED

    check(run, case)


def test_5_1_1_2_a_lower_stream_id_is_a_protocol_error(run: Run) -> None:
    async def case(peer: RawClient) -> None:
        peer.send(peer.headers(5))
        await peer.response_ends(5)
        peer.send(peer.headers(3))
        assert (await peer.goaway()).error_code == PROTOCOL_ERROR

    check(run, case)


def test_5_3_1_2_priority_on_itself_resets_that_stream_only(run: Run) -> None:
    async def case(peer: RawClient) -> None:
        peer.send(PriorityFrame(1, depends_on=1, stream_weight=255))
        reset = await peer.until(RstStreamFrame, 1)
        assert isinstance(reset, RstStreamFrame)
        assert reset.error_code == PROTOCOL_ERROR
        peer.send(peer.headers(3))
        await peer.response_ends(3)  # the connection goes on

    check(run, case)


def test_6_3_1_priority_on_stream_0_is_a_protocol_error(run: Run) -> None:
    async def case(peer: RawClient) -> None:
        frame = PriorityFrame(1, depends_on=0, stream_weight=255)
        frame.stream_id = 0  # (hyperframe refuses it in the constructor)
        peer.send(frame)
        assert (await peer.goaway()).error_code == PROTOCOL_ERROR

    check(run, case)


@pytest.mark.parametrize("same_read", [True, False])
def test_6_9_1_3_stream_window_overflow_resets_that_stream_only(run: Run, same_read: bool) -> None:
    async def case(peer: RawClient) -> None:
        overflow = WindowUpdateFrame(1, window_increment=2**31 - 1)
        if same_read:  # the stream is opened by the same read
            peer.send(peer.headers(1, end_stream=False), overflow, overflow)
        else:
            peer.send(peer.headers(1, end_stream=False))
            await peer.until(HeadersFrame, 1)
            peer.send(overflow, overflow)
        reset = await peer.until(RstStreamFrame, 1)
        assert isinstance(reset, RstStreamFrame)
        assert reset.error_code == FLOW_CONTROL_ERROR
        peer.send(peer.headers(3))
        await peer.response_ends(3)

    check(run, case)


def test_data_after_the_response_on_a_stream_the_client_left_open_is_fine(run: Run) -> None:
    """Only the client's own END_STREAM or RST_STREAM closes its side: later DATA on a
    stream the server has answered is not an error."""

    async def case(peer: RawClient) -> None:
        peer.send(peer.headers(1, end_stream=False))
        await peer.response_ends(1)  # the server's side is done (a 415)
        peer.send(DataFrame(1, b"late"), DataFrame(1, b"later", flags=["END_STREAM"]))
        peer.send(peer.headers(3))
        await peer.response_ends(3)

    check(run, case)

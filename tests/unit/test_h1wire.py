"""The HTTP/1.1 wire helpers, without sockets: what they write is read back by llhttp."""

from __future__ import annotations

from typing import Any

import pytest
from httptools import HttpResponseParser
from hypothesis import given
from hypothesis import strategies as st

from h2mesh.transport._h1wire import (
    CHUNKED,
    DONE,
    LAST_CHUNK,
    LENGTH,
    NO_BODY,
    RAW,
    Reject,
    absolute_form,
    body_head,
    chunk,
    error_response,
    field_block,
    frame_response,
    status_line,
    switching_head,
    trailer_section,
    wanted_upgrade,
)


class Parsed:
    """A response as llhttp (httptools) reads it."""

    def __init__(self, data: bytes) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.complete = False
        self.keep_alive: bool | None = None
        self.parser = HttpResponseParser(self)
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True

    def get(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)

    @property
    def status(self) -> int:
        code: int = self.parser.get_status_code()
        return code


def frame(
    status: int,
    fields: list[tuple[bytes, bytes]],
    body: bytes,
    end: bool,
    **options: Any,
) -> tuple[bytes, int, int, bool]:
    found, length, block = field_block([(b":status", b"%d" % status), *fields])
    kwargs = {"head_request": False, "http10": False, "keep": True, **options}
    return frame_response(found, block, length, body, end, **kwargs)


def test_status_lines_have_reason_phrases() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(499) == b"HTTP/1.1 499 Client Closed Request\r\n"
    assert status_line(599) == b"HTTP/1.1 599 Unknown\r\n"
    assert status_line(200) is status_line(200)  # cached


def test_field_block_drops_pseudo_and_framing_fields_and_reports_them() -> None:
    status, length, block = field_block(
        [
            (b":status", b"201"),
            (b"content-type", b"text/plain"),
            (b"content-length", b"12"),
            (b"transfer-encoding", b"chunked"),
            (b"connection", b"close"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ]
    )
    assert (status, length) == (201, 12)
    assert block == b"content-type: text/plain\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n"


def test_field_block_drops_any_pseudo_header_and_takes_an_iterator() -> None:
    fields = iter([(b":status", b"200"), (b":protocol", b"ws"), (b"x", b"1"), (b":x", b"2")])
    assert field_block(fields) == (200, -1, b"x: 1\r\n")


def test_a_declared_length_is_replaced_by_the_length_of_a_whole_body() -> None:
    data, framing, _, _ = frame(404, [(b"content-length", b"99")], b"gone", True)
    assert data.endswith(b"\r\ncontent-length: 4\r\n\r\ngone") and framing == DONE
    assert data.count(b"content-length") == 1


@pytest.mark.parametrize(
    "field",
    [(b"x", b"a\r\nset-cookie: evil=1"), (b"x", b"a\nb"), (b"x\r\ny", b"v"), (b"", b"v")],
)
def test_field_block_refuses_what_would_smuggle_fields(field: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError, match="invalid header field") as info:
        field_block([(b"content-type", b"text/plain"), field, (b"server", b"h2mesh")])
    assert repr(field[0]) in str(info.value)  # the message names the field


def test_whole_body_gets_content_length_in_one_buffer() -> None:
    data, framing, _, keep = frame(200, [(b"content-type", b"text/plain")], b"hello", True)
    assert (framing, keep) == (DONE, True)
    assert data == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
    )
    parsed = Parsed(data)
    assert parsed.complete and parsed.body == b"hello" and parsed.keep_alive


def test_declared_length_frames_a_body_sent_in_pieces() -> None:
    data, framing, left, _ = frame(200, [(b"content-length", b"10")], b"abc", False)
    assert (framing, left) == (LENGTH, 7)
    parsed = Parsed(data + b"defghij")
    assert parsed.complete and parsed.body == b"abcdefghij"


def test_streamed_body_is_chunked_with_trailers() -> None:
    data, framing, _, _ = frame(200, [], b"first", False)
    assert framing == CHUNKED
    wire = data + chunk(b"second", False) + trailer_section([(b"grpc-status", b"0")])
    parsed = Parsed(wire)
    assert parsed.get(b"transfer-encoding") == b"chunked"
    assert parsed.complete and parsed.body == b"firstsecond"
    assert (b"grpc-status", b"0") in parsed.headers  # llhttp reports trailers as headers


def test_last_chunk_forms() -> None:
    data, _, _, _ = frame(200, [], b"", False)
    assert Parsed(data + chunk(b"x", True)).body == b"x"
    parsed = Parsed(data + chunk(b"y", False) + LAST_CHUNK)
    assert parsed.complete and parsed.body == b"y"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_send_no_bytes(status: int) -> None:
    data, framing, _, _ = frame(status, [], b"dropped", False)
    assert framing == NO_BODY and b"dropped" not in data
    data, framing, _, _ = frame(status, [], b"dropped", True)
    assert framing == DONE and data.endswith(b"\r\n\r\n") and b"content-length" not in data


def test_head_response_says_what_get_would_have_sent() -> None:
    data, framing, _, _ = frame(200, [], b"twelve bytes", True, head_request=True)
    assert framing == DONE
    assert b"content-length: 12\r\n" in data and data.endswith(b"\r\n\r\n")
    parsed = Parsed(data)  # httptools cannot be told the request was HEAD: no body read
    assert parsed.get(b"content-length") == b"12" and parsed.body == b""


def test_http10_client_gets_close_delimited_or_keep_alive() -> None:
    data, framing, _, keep = frame(200, [], b"abc", False, http10=True)
    assert (framing, keep) == (RAW, False)
    assert b"connection" not in data and b"transfer-encoding" not in data
    data, framing, _, keep = frame(200, [], b"abc", True, http10=True)
    assert (framing, keep) == (DONE, True)
    assert b"connection: keep-alive\r\n" in data


def test_connection_close_is_said_when_not_kept() -> None:
    data, _, _, keep = frame(200, [], b"abc", True, keep=False)
    assert not keep
    parsed = Parsed(data)
    assert parsed.get(b"connection") == b"close" and parsed.keep_alive is False


@given(
    pieces=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=20),
    declared=st.booleans(),
    first_is_last=st.booleans(),
)
def test_any_body_in_pieces_reads_back_whole(
    pieces: list[bytes], declared: bool, first_is_last: bool
) -> None:
    whole = b"".join(pieces)
    fields = [(b"content-length", b"%d" % len(whole))] if declared else []
    if first_is_last:
        data, framing, _, _ = frame(200, fields, whole, True)
        wire = data
    else:
        data, framing, left, _ = frame(200, fields, pieces[0], False)
        rest = pieces[1:]
        if framing == LENGTH:
            wire = data + b"".join(rest)
            assert left == len(whole) - len(pieces[0])
        else:
            assert framing == CHUNKED
            wire = data + b"".join(chunk(p, False) for p in rest) + LAST_CHUNK
    parsed = Parsed(wire)
    assert parsed.complete and parsed.body == whole


def test_error_response_is_complete_and_closes() -> None:
    parsed = Parsed(error_response(431, "request header fields too large"))
    assert parsed.status == 431 and parsed.complete
    assert parsed.body == b"request header fields too large\n"
    assert parsed.get(b"connection") == b"close"


def test_switching_head() -> None:
    data = switching_head([(b"sec-websocket-accept", b"abc")], b"websocket")
    assert data == (
        b"HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: abc\r\n"
        b"upgrade: websocket\r\nconnection: Upgrade\r\n\r\n"
    )


def test_absolute_form_targets() -> None:
    assert absolute_form(b"http://example.com/a?b=1") == (b"/a?b=1", b"example.com")
    assert absolute_form(b"http://example.com:8080") == (b"/", b"example.com:8080")
    assert absolute_form(b"http://[::1]:81/x") == (b"/x", b"[::1]:81")
    with pytest.raises(Reject) as info:
        absolute_form(b"not a url")
    assert info.value.status == 400


def test_wanted_upgrade_and_body_head() -> None:
    allowed = frozenset({b"websocket"})
    assert wanted_upgrade([(b"upgrade", b" WebSocket ")], allowed) == b"websocket"
    assert wanted_upgrade([(b"upgrade", b"h2c")], allowed) is None
    assert wanted_upgrade([(b"upgrade", b"websocket")], frozenset()) is None
    assert body_head([(b"content-length", b"0")]) is None
    assert body_head([(b"content-length", b"5")]) == (
        b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n"
    )
    assert body_head([(b"transfer-encoding", b"chunked")]) == (
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    assert body_head([(b"x", b"y")]) is None

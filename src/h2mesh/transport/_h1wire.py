"""HTTP/1.1 on the wire, without I/O: response heads, body framing, chunked coding.

Everything here is a pure function of its arguments (bytes and numbers in, bytes out), so
it is tested without sockets; ``_h1`` (the connection) and ``_h1stream`` (one exchange)
decide when to call it and write what it returns. Request parsing is llhttp's (through
httptools); the helpers here check what it hands over.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from httptools import HttpParserError, parse_url

from ._stream import Headers

__all__ = [
    "CHUNKED",
    "CONTINUE",
    "DONE",
    "LAST_CHUNK",
    "LENGTH",
    "NOT_STARTED",
    "NO_BODY",
    "RAW",
    "Reject",
    "absolute_form",
    "body_head",
    "chunk",
    "error_response",
    "field_block",
    "frame_response",
    "status_line",
    "switching_head",
    "trailer_section",
    "wanted_upgrade",
]

# How a response body is framed; decided when the body starts.
NOT_STARTED = 0
CHUNKED = 1
RAW = 2  # HTTP/1.0 client, length unknown: the body ends when the connection closes
NO_BODY = 3  # HEAD, 204 and 304: bytes handed to send_data are dropped
DONE = 4
LENGTH = 5  # the application declared a content-length: its bytes go out as they are

# Fields that frame the message or belong to the connection: the connection writes its
# own, and drops any the application passes.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"content-length",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    }
)
# What the quick loop of field_block leaves out of the block: the fields above, and the
# pseudo-headers of HTTP/2 that an RPC layer may hand over (any other one, or an empty
# name, is seen in the block and sent the careful way).
_SKIPPED = _HOP_BY_HOP | {b":status", b":method", b":path", b":scheme", b":authority"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
_CHUNK_END = b"\r\n"
_LAST_AFTER_CHUNK = b"\r\n0\r\n\r\n"
_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\n"
# Status codes http.HTTPStatus does not know but RPC protocols use.
_EXTRA_REASONS = {499: "Client Closed Request"}
_status_lines: dict[int, bytes] = {}


class Reject(Exception):
    """A request the connection answers by itself with ``status``, then closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n``, cached per status code."""
    line = _status_lines.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = _EXTRA_REASONS.get(status, "Unknown")
        line = _status_lines[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason.encode())
    return line


def error_response(status: int, message: str) -> bytes:
    """A complete plain-text response that the connection sends on its own, then closes."""
    body = message.encode("utf-8", "replace") + b"\n"
    return b"".join(
        (
            status_line(status),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body),
            body,
        )
    )


def field_block(headers: Iterable[tuple[bytes, bytes]]) -> tuple[int, int, bytes]:
    """The ``name: value`` lines of ``headers`` as one block of bytes, with the
    ``:status`` found (0 if none) and the ``content-length`` given (-1 if none).

    Pseudo-headers other than ``:status`` and hop-by-hop fields are left out. A CR or LF
    would let a value smuggle in fields of its own, so those raise ``ValueError``: the
    block is checked once, by counting its line ends, rather than field by field (on
    Python 3.11 each ``b"x" in value`` costs as much as building the whole block).
    """
    if headers.__class__ is not list:
        headers = list(headers)  # (gone through twice if it needs the careful way)
    status = 0
    length = -1
    lines: list[bytes] = []
    for name, value in headers:
        if name in _SKIPPED:
            if name == b":status":
                status = int(value)
            elif name == b"content-length" and value.isdigit():
                length = int(value)
            continue
        lines += (name, b": ", value, b"\r\n")
    block = b"".join(lines)
    count = len(lines) >> 2
    if (
        block.count(b"\n") != count
        or block.count(b"\r") != count
        or block[:1] == b":"
        or block.find(b"\n:") >= 0
    ):
        # A line end in a field, or a line starting with ":" (an empty name, or a
        # pseudo-header other than :status): the careful way, which names it.
        return _careful_block(headers)
    return status, length, block


def _careful_block(headers: Iterable[tuple[bytes, bytes]]) -> tuple[int, int, bytes]:
    """``field_block`` field by field, for a block that is not what it should be."""
    status = 0
    length = -1
    lines: list[bytes] = []
    for name, value in headers:
        if name[:1] == b":":
            if name == b":status":
                status = int(value)
            continue
        if name in _HOP_BY_HOP:
            if name == b"content-length" and value.isdigit():
                length = int(value)
            continue
        if not name:
            raise ValueError(f"invalid header field {name!r}: {value!r}")
        lines += (name, b": ", value, b"\r\n")
    _smuggled(lines)
    return status, length, b"".join(lines)


def _smuggled(lines: list[bytes]) -> None:
    """Raise ``ValueError`` naming the field of ``lines`` with a CR or LF in it."""
    for k in range(0, len(lines), 4):
        name, value = lines[k], lines[k + 2]
        if name.find(b"\n") >= 0 or name.find(b"\r") >= 0:
            raise ValueError(f"invalid header field {name!r}: {value!r}")
        if value.find(b"\n") >= 0 or value.find(b"\r") >= 0:
            raise ValueError(f"invalid header field {name!r}: {value!r}")


def frame_response(
    status: int,
    fields: bytes,
    length: int,
    body: bytes,
    end: bool,
    *,
    head_request: bool,
    http10: bool,
    keep: bool,
) -> tuple[bytes, int, int, bool]:
    """The bytes that start a response: the status line, ``fields`` (a ``field_block``)
    and the framing fields, then the first ``body`` bytes, in one buffer.

    ``length`` is the content-length the application declared (-1: none), ``end``
    whether ``body`` is all of it, ``keep`` whether the connection may stay open. Returns
    the bytes, the framing (``DONE``, ``NO_BODY``, ``LENGTH``, ``RAW`` or ``CHUNKED``), the
    declared bytes still due (``LENGTH``), and whether the connection stays open.
    """
    if end and not head_request and status != 204 and status != 304:
        # The common case first: a whole body, its length known now (a declared one
        # is replaced by the length of what is sent).
        framing = b"content-length: %d\r\n\r\n" % len(body)
        if not keep:
            framing = b"content-length: %d\r\n" % len(body) + _close(http10) + b"\r\n"
        elif http10:
            framing = b"content-length: %d\r\nconnection: keep-alive\r\n\r\n" % len(body)
        return b"".join((status_line(status), fields, framing, body)), DONE, length, keep
    lines = [status_line(status), fields]
    if head_request or status == 204 or status == 304:
        if head_request and (end or length >= 0):
            # What a GET would have said; the bytes themselves are not sent.
            lines.append(b"content-length: %d\r\n" % (length if length >= 0 else len(body)))
        body = b""
        kind = DONE if end else NO_BODY
    elif end:
        lines.append(b"content-length: %d\r\n" % len(body))
        kind = DONE
    elif length >= len(body):
        # A length declared up front frames a body sent in pieces, as clients and
        # proxies prefer to chunks (progress, no per-chunk overhead).
        lines.append(b"content-length: %d\r\n" % length)
        length -= len(body)
        kind = LENGTH
    elif http10:
        # HTTP/1.0 has no chunked coding: the body runs until the connection closes.
        keep = False
        kind = RAW
    else:
        lines.append(b"transfer-encoding: chunked\r\n")
        kind = CHUNKED
        if body:
            body = chunk(body, False)
    if keep:
        if http10:
            lines.append(b"connection: keep-alive\r\n")
    else:
        lines.append(_close(http10))
    lines.append(b"\r\n")
    if body:
        lines.append(body)
    return b"".join(lines), kind, length, keep


def _close(http10: bool) -> bytes:
    # HTTP/1.0 connections close unless kept alive: nothing needs saying.
    return b"" if http10 else b"connection: close\r\n"


def chunk(data: bytes, last: bool) -> bytes:
    """``data`` as one chunk of a chunked body, with the last chunk after it if ``last``
    (``data`` must not be empty: an empty chunk ends the body)."""
    return b"".join((b"%x\r\n" % len(data), data, _LAST_AFTER_CHUNK if last else _CHUNK_END))


def trailer_section(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The last chunk of a chunked body, carrying ``headers`` as trailer fields."""
    return b"".join((b"0\r\n", field_block(headers)[2], b"\r\n"))


def switching_head(headers: Iterable[tuple[bytes, bytes]], protocol: bytes) -> bytes:
    """A ``101 Switching Protocols`` response to ``protocol``, with ``headers``."""
    fields = field_block(headers)[2]
    return b"".join(
        (_SWITCHING, fields, b"upgrade: ", protocol, b"\r\nconnection: Upgrade\r\n\r\n")
    )


def absolute_form(target: bytes) -> tuple[bytes, bytes]:
    """The path and authority of an absolute-form request target (``GET http://h/p``)."""
    try:
        url = parse_url(target)
    except HttpParserError:
        raise Reject(400, "invalid request target") from None
    if not url.host:
        raise Reject(400, "invalid request target")
    path = url.path or b"/"
    if url.query:
        path += b"?" + url.query
    host = url.host
    authority = b"[" + host + b"]" if b":" in host else host
    if url.port:
        authority += b":%d" % url.port
    return path, authority


def wanted_upgrade(headers: Headers, allowed: frozenset[bytes]) -> bytes | None:
    """The protocol of an ``Upgrade`` header this connection may switch to, if any."""
    if not allowed:
        return None
    for name, value in headers:
        if name == b"upgrade":
            wanted = value.strip().lower()
            return wanted if wanted in allowed else None
    return None


def body_head(headers: Headers) -> bytes | None:
    """A made-up request head with the same body framing as ``headers`` (None: no body)."""
    for name, value in headers:
        if name == b"transfer-encoding":
            return b"POST / HTTP/1.1\r\ntransfer-encoding: " + value + b"\r\n\r\n"
        if name == b"content-length":
            length = int(value)  # llhttp has already checked the digits
            return b"POST / HTTP/1.1\r\ncontent-length: %d\r\n\r\n" % length if length else None
    return None

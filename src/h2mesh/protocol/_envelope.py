"""Length-prefixed message envelopes (Connect streams; gRPC uses the same frame).

An envelope is one flags byte, a 4-byte big-endian length, then the payload.
``EnvelopeReader`` is sans-IO: feed it chunks as they arrive, take whole envelopes out.
"""

from __future__ import annotations

import struct
from typing import Protocol

from .._errors import Code, RpcError
from ..compression import Compressor
from ..transport import MessageTooLarge, Stream

__all__ = [
    "FLAG_COMPRESSED",
    "FLAG_END_STREAM",
    "BodyFraming",
    "EnvelopeReader",
    "MessageReader",
    "encode_envelope",
]

FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02

_HEADER = struct.Struct(">BI")
_pack = _HEADER.pack
_unpack_from = _HEADER.unpack_from


def encode_envelope(payload: bytes, flags: int = 0) -> bytes:
    """One envelope holding ``payload``."""
    return _pack(flags, len(payload)) + payload


class EnvelopeReader:
    """Splits a byte stream into ``(flags, payload)`` envelopes.

    Messages larger than ``max_size`` raise ``MessageTooLarge`` as soon as the prefix
    is seen, before any of the payload is buffered.

    Each payload is copied once, out of the chunk it arrived in: a chunk fed while
    nothing is held is kept as it is (no buffer copy), and only the part of an envelope
    split across chunks is gathered in a buffer.
    """

    __slots__ = ("_buf", "_pos", "max_size")

    def __init__(self, max_size: int) -> None:
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self.max_size = max_size

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        buf = self._buf
        pos = self._pos
        if pos == len(buf) and type(data) is bytes:  # nothing held: keep the chunk itself
            self._buf = data
            self._pos = 0
        elif type(buf) is bytearray:
            if pos > 65_536:  # compact, so the buffer does not grow with a long stream
                del buf[:pos]
                self._pos = 0
            buf += data
        else:  # the rest of a chunk, and more: gather them
            gathered = bytearray(memoryview(buf)[pos:])
            gathered += data
            self._buf = gathered
            self._pos = 0

    def next(self) -> tuple[int, bytes] | None:
        """The next complete envelope, or None if more bytes are needed."""
        buf = self._buf
        pos = self._pos
        size = len(buf)
        if size - pos < 5:
            return None
        flags, length = _unpack_from(buf, pos)
        if length > self.max_size:
            raise MessageTooLarge(self.max_size)
        end = pos + 5 + length
        if size < end:
            return None
        payload: bytes
        if type(buf) is bytes:
            payload = buf[pos + 5 : end]
        else:
            with memoryview(buf) as view:
                payload = bytes(view[pos + 5 : end])
        if end == size:
            self._buf = b""
            self._pos = 0
        else:
            self._pos = end
        return flags, payload

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as an envelope."""
        return len(self._buf) - self._pos


class BodyFraming(Protocol):
    """How a body wraps its envelopes (identity, or base64 for gRPC-Web text)."""

    def decode(self, chunk: bytes) -> bytes: ...

    def decode_end(self) -> bytes: ...


class MessageReader:
    """The request messages of a stream: envelopes, size limit and decompression.

    ``next()`` returns each message's payload, decompressed, and None at the end of the
    body; a body that ends inside an envelope raises ``RpcError(truncated_code)``.
    """

    __slots__ = ("_decompress", "_framing", "_reader", "_stream", "_truncated_code", "max_size")

    def __init__(
        self,
        stream: Stream,
        max_size: int,
        decompress: Compressor | None = None,
        framing: BodyFraming | None = None,
        truncated_code: Code = Code.INTERNAL,
    ) -> None:
        self._stream = stream
        self._reader = EnvelopeReader(max_size)
        self._decompress = decompress
        self._framing = framing
        self._truncated_code = truncated_code
        self.max_size = max_size

    def take_single(self) -> bytes | None:
        """The request's one message, if the whole body is already here and holds exactly
        one envelope; None otherwise (then ``next()``, which also reports what is wrong)."""
        reader = self._reader
        if self._framing is not None or reader.pending:
            return None
        body = self._stream.take_body(self.max_size + 5)
        if body is None:
            return None
        if len(body) >= 5:
            flags, length = _unpack_from(body, 0)
            if length + 5 == len(body) and not flags & FLAG_COMPRESSED:
                return body[5:]
        reader.feed(body)  # compressed, none or several: next() takes it from here
        return None

    async def next(self) -> bytes | None:
        reader = self._reader
        framing = self._framing
        while True:
            env = reader.next()
            if env is not None:
                flags, payload = env
                if flags & FLAG_COMPRESSED:
                    if self._decompress is None:
                        raise RpcError(
                            Code.INTERNAL,
                            "received a compressed message with no compression negotiated",
                        )
                    payload = self._decompress.decompress(payload, self.max_size)
                return payload
            chunk = await self._stream.read()
            if not chunk:
                tail = framing.decode_end() if framing is not None else b""
                if tail:
                    reader.feed(tail)
                    continue
                if reader.pending:
                    raise RpcError(self._truncated_code, "request body ends inside a message")
                return None
            reader.feed(framing.decode(chunk) if framing is not None else chunk)

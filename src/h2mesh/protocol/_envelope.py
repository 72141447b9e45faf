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
    "pack_prefix",
    "single_payload",
    "unpack_prefix",
]

FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02

_HEADER = struct.Struct(">BI")
# Pieces of a split envelope shorter than this are gathered by copying (see _add).
_SMALL_PIECE = 2048
_pack = _HEADER.pack
_unpack_from = _HEADER.unpack_from
#: ``(flags, length)`` -> the 5-byte prefix, and back (``unpack_prefix(data, offset)``),
#: for the per-call paths that frame one message inline.
pack_prefix = _pack
unpack_prefix = _unpack_from


def encode_envelope(payload: bytes, flags: int = 0) -> bytes:
    """One envelope holding ``payload``."""
    return _pack(flags, len(payload)) + payload


def single_payload(body: bytes) -> bytes | None:
    """The payload of ``body`` if it is exactly one plain message envelope (no flag set:
    not compressed, not an end-of-stream or trailer envelope), else None."""
    if len(body) >= 5:
        flags, length = _unpack_from(body, 0)
        if not flags and length + 5 == len(body):
            return body[5:]
    return None


class EnvelopeReader:
    """Splits a byte stream into ``(flags, payload)`` envelopes.

    Messages larger than ``max_size`` raise ``MessageTooLarge`` as soon as the prefix
    is seen, before any of the payload is buffered. Each payload is copied once: a chunk
    that holds whole envelopes is sliced where it lies, and a message split over chunks
    is kept as the pieces it came in (views of the chunks, never a growing buffer) and
    joined once it is whole.
    """

    __slots__ = ("_chunk", "_cpos", "_have", "_need", "_parts", "max_size")

    def __init__(self, max_size: int) -> None:
        self._chunk = b""  # the last chunk fed, read in place from _cpos
        self._cpos = 0
        self._parts: list[bytes | bytearray | memoryview] = []  # an envelope in pieces
        self._have = 0  # bytes in _parts
        self._need = 0  # the size of that envelope, prefix included, once it is known
        self.max_size = max_size

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self._chunk:
            self._spill()
        if self._parts:
            self._add(data)
        else:
            self._chunk = data
            self._cpos = 0

    def _add(self, piece: bytes | memoryview) -> None:
        """Keep ``piece`` of the envelope being gathered. Small pieces are copied into one
        buffer: a peer sending a message one byte per DATA frame would otherwise make a
        list entry and a bytes object (some 40 bytes) per byte of it."""
        parts = self._parts
        n = len(piece)
        if n >= _SMALL_PIECE:
            parts.append(piece)
        elif parts and parts[-1].__class__ is bytearray:
            parts[-1] += piece  # (a bytearray, as checked)
        else:
            parts.append(bytearray(piece))
        self._have += n

    def _spill(self) -> None:
        """Make what is left of the chunk the first piece of an envelope."""
        chunk, self._chunk = self._chunk, b""
        pos = self._cpos
        self._add(memoryview(chunk)[pos:] if pos else chunk)

    def next(self) -> tuple[int, bytes] | None:
        """The next complete envelope, or None if more bytes are needed."""
        chunk = self._chunk
        if chunk:
            pos = self._cpos
            if len(chunk) - pos >= 5:
                flags, length = _unpack_from(chunk, pos)
                if length > self.max_size:
                    raise MessageTooLarge(self.max_size)
                end = pos + 5 + length
                if end <= len(chunk):
                    if end == len(chunk):
                        self._chunk = b""
                    else:
                        self._cpos = end
                    return flags, chunk[pos + 5 : end]
            self._spill()
        parts = self._parts
        if not parts:
            return None
        have = self._have
        need = self._need
        if not need:
            if have < 5:
                return None
            first = parts[0]
            if len(first) < 5:  # the prefix itself came in pieces (rare)
                first = b"".join(parts)
                parts[:] = [first]
            length = _unpack_from(first, 0)[1]
            if length > self.max_size:
                raise MessageTooLarge(self.max_size)
            need = self._need = 5 + length
        if have < need:
            return None
        flags = parts[0][0]
        extra = have - need
        if extra:
            # The last piece runs into the next envelope: the rest of it is read in place.
            last = parts[-1]
            keep = len(last) - extra
            parts[-1] = memoryview(last)[:keep]
            if isinstance(last, bytes):
                self._chunk, self._cpos = last, keep
            else:  # (a buffer of small pieces: its short rest is copied out)
                self._chunk, self._cpos = bytes(last[keep:]), 0
        parts[0] = memoryview(parts[0])[5:]
        payload = b"".join(parts)
        parts.clear()
        self._have = self._need = 0
        return flags, payload

    def take(self, data: bytes) -> tuple[int, bytes] | None:
        """``feed(data)``, then ``next()``; with nothing pending, a chunk that is exactly
        one envelope (a stream of one message per DATA frame) is sliced at once."""
        if not self._chunk and not self._parts and len(data) >= 5:
            flags, length = _unpack_from(data, 0)
            if length + 5 == len(data) and length <= self.max_size:
                return flags, data[5:]
        self.feed(data)
        return self.next()

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as an envelope."""
        return self._have + (len(self._chunk) - self._cpos if self._chunk else 0)


class BodyFraming(Protocol):
    """How a body wraps its envelopes (identity, or base64 for gRPC-Web text)."""

    def decode(self, chunk: bytes) -> bytes: ...

    def decode_end(self) -> bytes: ...


class MessageReader:
    """The messages of a stream's body: envelopes, size limit and decompression.

    ``next()`` returns each message's payload, decompressed, and None at the end of the
    body; ``flags`` holds the flags of the envelope it last returned (the client looks
    for end-stream and trailer envelopes there). A body that ends inside an envelope
    raises ``RpcError(truncated_code)``. Servers read requests with it, clients responses.
    """

    __slots__ = (
        "_decompress",
        "_framing",
        "_reader",
        "_side",
        "_stream",
        "_truncated_code",
        "flags",
        "max_size",
    )

    def __init__(
        self,
        stream: Stream,
        max_size: int,
        decompress: Compressor | None = None,
        framing: BodyFraming | None = None,
        truncated_code: Code = Code.INTERNAL,
        side: str = "request",
    ) -> None:
        self._stream = stream
        self._reader: EnvelopeReader | None = None  # made when first needed
        self._decompress = decompress
        self._framing = framing
        self._truncated_code = truncated_code
        self._side = side
        self.flags = 0
        self.max_size = max_size

    def feed_body(self, body: bytes) -> None:
        """Take envelopes the caller already read off the stream (no framing around them)."""
        reader = self._reader
        if reader is None:
            reader = self._reader = EnvelopeReader(self.max_size)
        reader.feed(body)

    def take_single(self) -> bytes | None:
        """The body's one message, if nothing was read yet, the whole body is already
        here (no framing around it) and it is exactly one uncompressed envelope; None
        otherwise, and then ``next()`` reads it (and says what is wrong with it)."""
        if self._framing is not None or self._reader is not None:
            return None
        chunks = self._stream.take_chunks(self.max_size + 5)
        if chunks is None:
            return None
        if len(chunks) == 1:
            body = chunks[0]
            if len(body) >= 5:  # (single_payload inline: this runs for every unary call)
                flags, length = _unpack_from(body, 0)
                if not flags and length + 5 == len(body):
                    return body[5:]
            self.feed_body(body)
            return None
        # A large message comes in pieces: the reader joins them once.
        first = chunks[0]
        plain = False
        if len(first) >= 5:
            flags, length = _unpack_from(first, 0)
            plain = not flags and length + 5 == sum(map(len, chunks))
        reader = self._reader = EnvelopeReader(self.max_size)
        for chunk in chunks:
            reader.feed(chunk)
        if not plain:
            return None  # compressed, none or several: next() judges
        env = reader.next()
        return None if env is None else env[1]

    async def next(self) -> bytes | None:
        reader = self._reader
        if reader is None:
            reader = self._reader = EnvelopeReader(self.max_size)
        framing = self._framing
        # Nothing buffered (the usual case between messages): straight to the read.
        env = reader.next() if reader._chunk or reader._parts else None
        while env is None:
            chunk = await self._stream.read()
            if not chunk:  # the end of the body
                tail = framing.decode_end() if framing is not None else b""
                if not tail:
                    if reader.pending:
                        raise RpcError(
                            self._truncated_code, f"{self._side} body ends inside a message"
                        )
                    return None
                chunk = tail
            elif framing is not None:
                chunk = framing.decode(chunk)
            env = reader.take(chunk)
        flags, payload = env
        self.flags = flags
        if flags & FLAG_COMPRESSED:
            if self._decompress is None:
                raise RpcError(
                    Code.INTERNAL, "received a compressed message with no compression negotiated"
                )
            payload = self._decompress.decompress(payload, self.max_size)
        return payload

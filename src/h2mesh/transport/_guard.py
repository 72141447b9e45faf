"""A look at the frames a client sends, before the engine sees them.

libnghttp2 refuses any HPACK string longer than 64 KiB with a connection-wide
COMPRESSION_ERROR, even where the configured header limit would have cost the peer only
that one request (a 431). ``InboundGuard`` walks the frame headers of every read (a few
struct unpacks, no copy in the common case) and holds back only header blocks split over
CONTINUATION frames, the only ones that can carry such a string. A held block that does
carry one is rewritten so that the engine sees a short stand-in, and its stream is
remembered so that the connection answers 431 on it. Everything else passes unchanged.
"""

from __future__ import annotations

import struct
import time

# A frame header: 24-bit length and 8-bit type in one word, flags, stream id.
_FRAME_HEAD = struct.Struct(">IBI")
_WORD = struct.Struct(">I")
_HEADERS = 0x1
_RST_STREAM = 0x3
_CONTINUATION = 0x9
_END_STREAM = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY = 0x20
_PREFACE_LEN = 24

# The longest string libnghttp2's HPACK decoder accepts (its NGHTTP2_HD_MAX_NV).
ENGINE_STRING_LIMIT = 65_536
# What an over-long string becomes. Longer than any dynamic table this side allows
# (4096 bytes), so that indexing it empties the table exactly as the original would have
# on the peer's side, and HPACK state stays in step. A value starts with "/" so that it
# is valid wherever a path is expected; a name is a valid lowercase token.
_VALUE_STAND_IN = b"/" + b"x" * 4096
_NAME_STAND_IN = b"x" * 4097


class InboundGuard:
    """Scans a server connection's input; see the module docstring."""

    __slots__ = (
        "_carry",
        "_max_block_frames",
        "_max_frame",
        "_reset_burst",
        "_reset_checked",
        "_reset_rate",
        "_reset_tokens",
        "_skip",
        "flooded",
        "oversized",
    )

    def __init__(
        self,
        *,
        max_frame_size: int = 16_384,
        max_continuations: int = 8,
        reset_limit: tuple[int, int] = (1000, 33),
    ) -> None:
        self._skip = _PREFACE_LEN  # bytes of the current frame (or preface) not yet seen
        self._carry = b""  # held bytes: a split frame header, or a header block
        self._max_frame = max_frame_size
        self._max_block_frames = max_continuations + 1
        #: Streams whose request headers held a field too long for the engine.
        self.oversized: set[int] = set()
        # A token bucket for RST_STREAM frames: a burst, then so many per second.
        self._reset_burst, self._reset_rate = reset_limit
        self._reset_tokens = float(self._reset_burst)
        self._reset_checked = time.monotonic()
        #: True once the client reset streams faster than the limit; the input from
        #: that frame on is dropped and the connection should end (ENHANCE_YOUR_CALM).
        self.flooded = False

    def feed(self, data: bytes) -> bytes:
        """The bytes to hand the engine now (the rest is held until complete)."""
        if self.flooded:
            return b""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        n = len(data)
        pos = self._skip
        if pos >= n:
            self._skip = pos - n
            return data
        unpack = _WORD.unpack_from
        parts: list[bytes] | None = None
        released = 0
        while pos + 9 <= n:
            # Only the first word (length and type) of most frames is read: this loop
            # runs for every frame a client sends.
            (word,) = unpack(data, pos)
            kind = word & 0xFF
            if kind == _HEADERS:
                if not data[pos + 4] & _END_HEADERS:
                    end, complete = self._block_end(data, pos)
                    if not complete:
                        if end == pos:  # still arriving: hold it from its first byte
                            self._carry = data[pos:]
                            self._skip = 0
                            head = data[released:pos]
                            return b"".join((*parts, head)) if parts else head
                        # Too big or malformed to be a request we could answer: the
                        # engine judges it (and the frames after it pass as usual).
                        pos = end
                        continue
                    rewritten = self._rewrite(data, pos, end)
                    if rewritten is not None:
                        if parts is None:
                            parts = []
                        parts.append(data[released:pos])
                        parts.append(rewritten)
                        released = end
                    pos = end
                    continue
            elif kind == _RST_STREAM and not self._take_reset():
                self.flooded = True
                head = data[released:pos]
                return b"".join((*parts, head)) if parts else head
            pos += 9 + (word >> 8)
        if pos > n:
            self._skip = pos - n
            tail = n
        else:
            self._skip = 0
            tail = pos
            if pos < n:
                self._carry = data[pos:]  # a split frame header
        if parts is None:
            return data if tail == n else data[:tail]
        parts.append(data[released:tail])
        return b"".join(parts)

    def _take_reset(self) -> bool:
        now = time.monotonic()
        tokens = self._reset_tokens + (now - self._reset_checked) * self._reset_rate
        self._reset_checked = now
        if tokens >= 1.0:
            self._reset_tokens = min(tokens, self._reset_burst) - 1.0
            return True
        self._reset_tokens = tokens
        return False

    def _block_end(self, data: bytes, pos: int) -> tuple[int, bool]:
        """Where the header block starting at ``pos`` ends, and whether it is all here.

        ``(pos, False)``: not all here yet, hold it. ``(p, False)`` with ``p > pos``: give
        up on it (over the engine's limits, or not followed by CONTINUATION); frames up to
        ``p`` are complete and pass as they are.
        """
        n = len(data)
        unpack = _FRAME_HEAD.unpack_from
        frames = 0
        p = pos
        while p + 9 <= n:
            word, flags, _ = unpack(data, p)
            kind = word & 0xFF
            length = word >> 8
            if (frames and kind != _CONTINUATION) or length > self._max_frame:
                # A broken block, or a frame too big to hold (the engine refuses it).
                return (p if p > pos else p + 9 + length), False
            if frames >= self._max_block_frames:
                return p, False
            if p + 9 + length > n:
                return pos, False
            p += 9 + length
            frames += 1
            if flags & _END_HEADERS:
                return p, True
        return pos, False

    def _rewrite(self, data: bytes, start: int, end: int) -> bytes | None:
        """The frames of a block with its over-long strings replaced, or None if none."""
        if end - start <= ENGINE_STRING_LIMIT:
            return None  # too short to carry such a string
        word, flags, sid = _FRAME_HEAD.unpack_from(data, start)
        body = start + 9
        payload_end = body + (word >> 8)
        pad = 0
        if flags & _PADDED:
            pad = data[body]
            body += 1
        priority = b""
        if flags & _PRIORITY:
            priority = data[body : body + 5]
            body += 5
        fragments = [data[body : payload_end - pad]]
        p = payload_end
        while p < end:
            word, _, _ = _FRAME_HEAD.unpack_from(data, p)
            fragments.append(data[p + 9 : p + 9 + (word >> 8)])
            p += 9 + (word >> 8)
        block = shorten_strings(b"".join(fragments), ENGINE_STRING_LIMIT)
        if block is None:
            return None
        self.oversized.add(sid & 0x7FFFFFFF)
        return _frames(sid, flags & (_END_STREAM | _PRIORITY), priority, block, self._max_frame)


def _frames(sid: int, flags: int, priority: bytes, block: bytes, max_frame: int) -> bytes:
    """A header block as HEADERS (+ CONTINUATION) frames of at most ``max_frame`` bytes."""
    out = []
    first = max_frame - len(priority)
    chunks = [block[:first]]
    chunks += [block[i : i + max_frame] for i in range(first, len(block), max_frame)]
    for i, chunk in enumerate(chunks):
        kind = _HEADERS if i == 0 else _CONTINUATION
        bits = flags if i == 0 else 0
        if i == len(chunks) - 1:
            bits |= _END_HEADERS
        payload = priority + chunk if i == 0 else chunk
        out.append(_FRAME_HEAD.pack((len(payload) << 8) | kind, bits, sid) + payload)
    return b"".join(out)


def _hpack_int(buf: bytes, pos: int, prefix: int) -> tuple[int, int]:
    """An HPACK integer (RFC 7541 5.1) at ``pos``: its value and the position after it."""
    mask = (1 << prefix) - 1
    value = buf[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise ValueError("HPACK integer too long")


def shorten_strings(block: bytes, limit: int) -> bytes | None:
    """``block`` with every HPACK string longer than ``limit`` replaced by a stand-in.

    None if there is none (or the block is malformed: the engine reports that itself).
    Only the layout of representations is read (RFC 7541 section 6); nothing is decoded,
    and indexed names or values are left alone, so no dynamic table is needed.
    """
    out: list[bytes] = []
    kept = 0
    pos = 0
    n = len(block)
    try:
        while pos < n:
            first = block[pos]
            if first & 0x80:  # indexed field
                _, pos = _hpack_int(block, pos, 7)
                continue
            if first & 0x40:  # literal with incremental indexing
                prefix = 6
            elif first & 0x20:  # dynamic table size update
                _, pos = _hpack_int(block, pos, 5)
                continue
            else:  # literal without indexing, or never indexed
                prefix = 4
            index, pos = _hpack_int(block, pos, prefix)
            # The name if it is a literal, then the value.
            for stand_in in (_VALUE_STAND_IN,) if index else (_NAME_STAND_IN, _VALUE_STAND_IN):
                string_start = pos
                length, pos = _hpack_int(block, pos, 7)
                if pos + length > n:
                    return None
                if length > limit:
                    out.append(block[kept:string_start])
                    out.append(_hpack_int_bytes(len(stand_in), 7) + stand_in)
                    kept = pos + length
                pos += length
    except (IndexError, ValueError):
        return None
    if not out:
        return None
    out.append(block[kept:])
    return b"".join(out)


def _hpack_int_bytes(value: int, prefix: int) -> bytes:
    """``value`` as an HPACK integer with a ``prefix``-bit prefix (first-byte flags 0)."""
    mask = (1 << prefix) - 1
    if value < mask:
        return bytes((value,))
    out = [mask]
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)

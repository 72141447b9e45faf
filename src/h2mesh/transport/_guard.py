"""A look at the frames a client sends, before the engine sees them.

libnghttp2 leaves a few things to its user, and ``InboundGuard`` does them from the frame
headers of every read (a few struct unpacks, no copy in the common case):

- It refuses any HPACK string longer than 64 KiB with a connection-wide COMPRESSION_ERROR,
  where the configured header limit would cost the peer only that request (a 431). Only
  header blocks split over CONTINUATION frames can carry such a string: those are held
  until complete, and one that carries it is rewritten with a short stand-in; its stream
  is remembered so that the connection answers 431 on it.
- It keeps no state of closed streams, so DATA or HEADERS on a stream the client itself
  closed (END_STREAM, RST_STREAM) and HEADERS on a stream id the client skipped pass
  silently. The guard remembers the last ``_CLOSED_KEPT`` closed ids and the skipped
  ranges, and reports STREAM_CLOSED / PROTOCOL_ERROR (RFC 9113 5.1, 5.1.1).
- It ignores PRIORITY on stream 0 or on itself (RFC 9113 6.3, 5.3.1), and makes a stream
  window overflow a connection error where it is the stream's (6.9.1).
- Its rapid-reset limiter answers GOAWAY INTERNAL_ERROR; the guard's, set tighter,
  answers ENHANCE_YOUR_CALM.

Frames on streams the server reset but the client has not closed are left to the engine,
which ignores them: the client may not have seen the reset yet.

One module because the guard is one frame scanner (``InboundGuard.feed``) whose checks share
its per-connection state; the HPACK string shortening below it serves the same scan.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable, Container

from .._http2 import ErrorCode

# A frame header: 24-bit length and 8-bit type in one word, flags, stream id.
_FRAME_HEAD = struct.Struct(">IBI")
_WORD = struct.Struct(">I")
_HEADERS = 0x1
_PRIORITY = 0x2
_RST_STREAM = 0x3
_WINDOW_UPDATE = 0x8
_CONTINUATION = 0x9
_END_STREAM = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY_FLAG = 0x20
_PREFACE_LEN = 24
_MAX_WINDOW = 2**31 - 1
_CLOSED_KEPT = 1024
_SKIPPED_KEPT = 16
# The codes the guard answers with, as module constants for the scan loop.
PROTOCOL_ERROR = ErrorCode.PROTOCOL_ERROR
FLOW_CONTROL_ERROR = ErrorCode.FLOW_CONTROL_ERROR
STREAM_CLOSED = ErrorCode.STREAM_CLOSED
ENHANCE_YOUR_CALM = ErrorCode.ENHANCE_YOUR_CALM

# The longest string libnghttp2's HPACK decoder accepts (its NGHTTP2_HD_MAX_NV).
ENGINE_STRING_LIMIT = 65_536
# What an over-long string becomes. Longer than any dynamic table this side allows
# (4096 bytes), so that indexing it empties the table exactly as the original would have
# on the peer's side, and HPACK state stays in step. A value starts with "/" so that it
# is valid wherever a path is expected; a name is a valid lowercase token.
_VALUE_STAND_IN = b"/" + b"x" * 4096
_NAME_STAND_IN = b"x" * 4097


_NO_IDS: frozenset[int] = frozenset()


class _RecentIds:
    """A set of the last ``_CLOSED_KEPT`` stream ids added (made on the first: most
    connections never need one, and an idle connection should cost little memory)."""

    __slots__ = ("_order", "ids")

    def __init__(self) -> None:
        self.ids: set[int] | frozenset[int] = _NO_IDS
        self._order: deque[int] | None = None

    def add(self, sid: int) -> None:
        ids = self.ids
        if sid in ids:
            return
        order = self._order
        if order is None:
            ids = self.ids = set()
            order = self._order = deque()
        assert isinstance(ids, set)
        ids.add(sid)
        order.append(sid)
        if len(order) > _CLOSED_KEPT:
            ids.discard(order.popleft())

    def __contains__(self, sid: object) -> bool:
        return sid in self.ids


class InboundGuard:
    """Scans a server connection's input; see the module docstring."""

    __slots__ = (
        "_carry",
        "_max_block_frames",
        "_max_frame",
        "_max_sid",
        "_open",
        "_peer_reset",
        "_reset_burst",
        "_reset_checked",
        "_reset_rate",
        "_reset_tokens",
        "_skip",
        "_skipped",
        "_tolerated",
        "_window",
        "failed",
        "fitting_fields",
        "oversized",
        "violation",
    )

    def __init__(
        self,
        *,
        max_frame_size: int = 16_384,
        max_continuations: int = 8,
        reset_limit: tuple[int, int] = (1000, 33),
        open_streams: Container[int] = (),
        window: Callable[[int], int | None] = lambda sid: None,
        fitting_fields: int = 0,
    ) -> None:
        self._skip = _PREFACE_LEN  # bytes of the current frame (or preface) not yet seen
        self._carry = b""  # held bytes: a split frame header, or a header block
        self._max_frame = max_frame_size
        self._max_block_frames = max_continuations + 1
        self._open = open_streams  # the streams the connection serves now
        self._window = window  # an opened stream's send window (None: unknown)
        #: Streams whose request headers held a field too long for the engine (a dict as
        #: an ordered set: an empty one takes 64 bytes, an empty set 216).
        self.oversized: dict[int, None] = {}
        # Streams the client reset, and streams the server closed while the client's side
        # was open (a frame on those may cross the server's reset): the most recent
        # _CLOSED_KEPT of each. Any other stream that the connection no longer serves
        # was closed by the client's END_STREAM, and a frame on it is an error.
        self._peer_reset = _RecentIds()
        self._tolerated = _RecentIds()
        self._max_sid = 0  # the highest stream id the client opened
        # The ranges of ids it skipped: never to be opened (a tuple: most clients skip none).
        self._skipped: tuple[tuple[int, int], ...] = ()
        # A token bucket for RST_STREAM frames: a burst, then so many per second.
        self._reset_burst, self._reset_rate = reset_limit
        # (Full at first: refilled from time 0, and capped at the burst. No float objects
        # until the first RST_STREAM.)
        self._reset_tokens: float = self._reset_burst
        self._reset_checked = 0.0
        #: The client's error that stopped the scan, as (stream id, error code): a stream
        #: error to answer before calling ``feed(b"")`` for the rest, or (0, code) for a
        #: connection error (``failed``: nothing more is read). Rapid reset is
        #: (0, ENHANCE_YOUR_CALM).
        self.violation: tuple[int, int] | None = None
        self.failed = False
        #: The connection adds up a request's header list only if it has more fields
        #: than this (see ``_fields_that_fit`` in ``_h2.py``): a header block that came
        #: in one HEADERS frame and has no more fields than this is within the limit.
        #: Once a block split over CONTINUATION frames arrived, every list is added up.
        self.fitting_fields = fitting_fields

    def feed(self, data: bytes) -> bytes:
        """The bytes to hand the engine now (the rest is held until complete)."""
        if self.failed:
            return b""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        n = len(data)
        pos = self._skip
        if pos >= n:
            self._skip = pos - n
            return data
        unpack = _FRAME_HEAD.unpack_from
        open_streams = self._open
        peer_reset = self._peer_reset
        reset_ids = peer_reset.ids  # (the set itself: truth-testing it costs no call)
        known = self._max_sid  # streams up to this one were opened by earlier reads
        parts: list[bytes] | None = None
        released = 0
        last = n - 9  # a frame header that starts past this one is split
        while pos <= last:
            # This loop runs for every frame a client sends: keep it to a few lookups.
            word, flags, sid = unpack(data, pos)
            kind = word & 0xFF
            if not kind:
                if not reset_ids and (sid > known or sid in open_streams):
                    # DATA on a stream opened by this read or being served, none reset:
                    # the commonest frame, and nothing to check (the code below says why).
                    pos += 9 + (word >> 8)
                    continue
            elif (
                kind == _HEADERS
                and flags & _END_HEADERS
                and not reset_ids
                and sid - self._max_sid in (1, 2)  # (max_sid < sid <= max_sid + 2)
            ):
                # A whole header block opening the next stream, none reset: the checks
                # below would only record it as the highest one.
                self._max_sid = sid
                pos += 9 + (word >> 8)
                continue
            if kind <= _HEADERS:  # DATA or HEADERS
                sid &= 0x7FFFFFFF
                if (sid <= known and sid & 1 and sid not in open_streams) or (
                    reset_ids and sid in reset_ids
                ):
                    code = self._closed_stream_error(sid)
                    if code is not None:
                        return self._stop(data, released, pos, parts, 0, code)
                if kind == _HEADERS:
                    max_sid = self._max_sid
                    if sid <= max_sid and self._skipped and self._was_skipped(sid):
                        # A lower id than one already used (RFC 9113 5.1.1).
                        return self._stop(data, released, pos, parts, 0, PROTOCOL_ERROR)
                    if not flags & _END_HEADERS:
                        self.fitting_fields = 0  # (a block of many frames holds more)
                        end, complete = self._block_end(data, pos)
                        if end == pos:  # still arriving: hold it from its first byte
                            self._carry = data[pos:]
                            self._skip = 0
                            head = data[released:pos]
                            return b"".join((*parts, head)) if parts else head
                        if sid > max_sid:
                            self._opened(sid)
                        if not complete:
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
                    if sid > max_sid:
                        if sid > max_sid + 2:
                            self._skip_ids(max_sid + 2, sid - 2)
                        self._max_sid = sid
            elif kind == _RST_STREAM:
                if not self._take_reset():
                    return self._stop(data, released, pos, parts, 0, ENHANCE_YOUR_CALM)
                peer_reset.add(sid & 0x7FFFFFFF)
                reset_ids = peer_reset.ids  # (made by the first add)
            elif (kind == _PRIORITY and word >> 8 == 5) or (
                kind == _WINDOW_UPDATE and word >> 8 == 4
            ):  # (other lengths: the engine's FRAME_SIZE_ERROR)
                if pos + 13 > n:  # the payload word is needed: wait for it
                    self._carry = data[pos:]
                    self._skip = 0
                    head = data[released:pos]
                    return b"".join((*parts, head)) if parts else head
                error = self._check_priority_or_window(kind, sid & 0x7FFFFFFF, data, pos)
                if error is not None:
                    return self._stop(data, released, pos, parts, *error)
            pos += 9 + (word >> 8)
        if pos == n:  # the read ends with a whole frame: the common case
            self._skip = 0
            if parts is None:
                return data
            parts.append(data[released:])
            return b"".join(parts)
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

    def _stop(
        self,
        data: bytes,
        released: int,
        pos: int,
        parts: list[bytes] | None,
        sid: int,
        code: int,
    ) -> bytes:
        """End the scan before the offending frame at ``pos``; it is dropped."""
        self.violation = (sid, code)
        if sid == 0:
            self.failed = True
        else:  # the frames after it are scanned by the next feed
            end = pos + 9 + (int.from_bytes(data[pos : pos + 3], "big"))
            if end <= len(data):
                self._carry = data[end:]
                self._skip = 0
            else:
                self._skip = end - len(data)
        head = data[released:pos]
        return b"".join((*parts, head)) if parts else head

    def tolerate(self, sid: int) -> None:
        """Stream ``sid`` ended on the server's side while the client's was open."""
        self._tolerated.add(sid)

    def _closed_stream_error(self, sid: int) -> int | None:
        """The error of a DATA or HEADERS frame on a stream the connection does not serve."""
        if sid in self._peer_reset:
            return STREAM_CLOSED  # RFC 9113 5.1: nothing but PRIORITY after RST_STREAM
        if sid in self._tolerated or sid in self._open:
            return None
        if self._was_skipped(sid):
            return PROTOCOL_ERROR  # never opened, and lower than one that was (5.1.1)
        return STREAM_CLOSED  # after the client's END_STREAM and the server's response

    def _opened(self, sid: int) -> None:
        if sid > self._max_sid + 2:
            self._skip_ids(self._max_sid + 2, sid - 2)
        self._max_sid = sid

    def _skip_ids(self, first: int, last: int) -> None:
        self._skipped = (*self._skipped[1 - _SKIPPED_KEPT :], (first, last))

    def _was_skipped(self, sid: int) -> bool:
        return any(first <= sid <= last for first, last in self._skipped)

    def _check_priority_or_window(
        self, kind: int, sid: int, data: bytes, pos: int
    ) -> tuple[int, int] | None:
        """The error, as ``(stream id or 0, code)``, of a PRIORITY or WINDOW_UPDATE frame
        the engine would let pass or judge too harshly; None if it is fine."""
        (value,) = _WORD.unpack_from(data, pos + 9)
        value &= 0x7FFFFFFF
        if kind == _PRIORITY:
            if sid == 0:
                return 0, PROTOCOL_ERROR  # RFC 9113 6.3
            if value == sid:
                return sid, PROTOCOL_ERROR  # depends on itself (RFC 9113 5.3.1)
            return None
        if sid == 0 or sid > self._max_sid or sid in self._peer_reset:
            return None  # the connection's window, an idle or a closed stream: the engine's
        # A stream's window over 2^31-1 is an error of that stream only (RFC 9113 6.9.1),
        # where the engine ends the whole connection.
        window = self._window(sid)
        if window is not None and window + value > _MAX_WINDOW:
            return sid, FLOW_CONTROL_ERROR
        return None

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
        if flags & _PRIORITY_FLAG:
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
        self.oversized[sid & 0x7FFFFFFF] = None
        return _frames(
            sid, flags & (_END_STREAM | _PRIORITY_FLAG), priority, block, self._max_frame
        )


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

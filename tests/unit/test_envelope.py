"""Envelope framing: encode, then read back through arbitrary chunk boundaries."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2mesh.protocol._envelope import (
    FLAG_COMPRESSED,
    FLAG_END_STREAM,
    EnvelopeReader,
    encode_envelope,
)
from h2mesh.transport import MessageTooLarge

envelopes = st.lists(
    st.tuples(st.integers(0, 255), st.binary(max_size=300)),
    max_size=20,
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted)."""
    if not data:
        return [b""]
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _drain(reader: EnvelopeReader) -> list[tuple[int, bytes]]:
    out = []
    while (env := reader.next()) is not None:
        out.append(env)
    return out


def test_encode_layout() -> None:
    assert encode_envelope(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert encode_envelope(b"", FLAG_END_STREAM) == b"\x02\x00\x00\x00\x00"
    assert encode_envelope(b"x", FLAG_COMPRESSED | FLAG_END_STREAM)[:1] == b"\x03"


@given(envs=envelopes, cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_round_trip_any_chunking(envs: list[tuple[int, bytes]], cuts: list[int]) -> None:
    wire = b"".join(encode_envelope(p, f) for f, p in envs)
    reader = EnvelopeReader(max_size=1 << 20)
    got: list[tuple[int, bytes]] = []
    fed = 0
    for chunk in _split(wire, cuts):
        reader.feed(chunk)
        fed += len(chunk)
        got.extend(_drain(reader))
        consumed = sum(5 + len(p) for _, p in got)
        assert reader.pending == fed - consumed
    assert got == envs
    assert reader.pending == 0
    assert reader.next() is None


@given(envs=envelopes)
def test_round_trip_byte_at_a_time(envs: list[tuple[int, bytes]]) -> None:
    wire = b"".join(encode_envelope(p, f) for f, p in envs)
    reader = EnvelopeReader(max_size=1 << 20)
    got: list[tuple[int, bytes]] = []
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        got.extend(_drain(reader))
    assert got == envs
    assert reader.pending == 0


@given(envs=envelopes)
def test_feed_all_then_drain(envs: list[tuple[int, bytes]]) -> None:
    wire = b"".join(encode_envelope(p, f) for f, p in envs)
    reader = EnvelopeReader(max_size=1 << 20)
    reader.feed(wire)
    assert reader.pending == len(wire)
    assert _drain(reader) == envs
    assert reader.pending == 0


def test_partial_header_and_payload_are_pending() -> None:
    reader = EnvelopeReader(max_size=100)
    reader.feed(b"\x00\x00\x00")
    assert reader.next() is None
    assert reader.pending == 3
    reader.feed(b"\x00\x04ab")
    assert reader.next() is None
    assert reader.pending == 7
    reader.feed(b"cd\x02")
    assert reader.next() == (0, b"abcd")
    assert reader.pending == 1
    assert reader.next() is None


def test_payload_exactly_max_size_is_accepted() -> None:
    reader = EnvelopeReader(max_size=10)
    reader.feed(encode_envelope(b"x" * 10))
    assert reader.next() == (0, b"x" * 10)


@given(max_size=st.integers(0, 1 << 20), over=st.integers(1, 1 << 20), flags=st.integers(0, 255))
def test_oversized_prefix_raises_before_payload(max_size: int, over: int, flags: int) -> None:
    reader = EnvelopeReader(max_size=max_size)
    # Only the 5-byte prefix: the payload has not arrived, the limit must trip anyway.
    reader.feed(struct.pack(">BI", flags, min(max_size + over, 0xFFFFFFFF)))
    with pytest.raises(MessageTooLarge) as info:
        reader.next()
    assert info.value.limit == max_size


def test_oversized_after_good_envelopes() -> None:
    reader = EnvelopeReader(max_size=8)
    reader.feed(encode_envelope(b"ok") + struct.pack(">BI", 0, 9))
    assert reader.next() == (0, b"ok")
    with pytest.raises(MessageTooLarge):
        reader.next()


@pytest.mark.parametrize("tail", [0, 1, 4, 7])
def test_long_stream_buffer_stays_bounded(tail: int) -> None:
    """A stream that always leaves a partial envelope behind holds only that envelope."""
    payload = b"p" * 1000
    env = encode_envelope(payload)
    reader = EnvelopeReader(max_size=1 << 16)
    # Feed each envelope split so that ``tail`` bytes of the next one ride along.
    wire = env * 2000
    step = len(env)
    received = 0
    peak = 0
    pos = 0
    while pos < len(wire):
        chunk = wire[pos : pos + step + (tail if pos == 0 else 0)]
        pos += len(chunk)
        reader.feed(chunk)
        while (got := reader.next()) is not None:
            assert got == (0, payload)
            received += 1
        peak = max(peak, reader.pending)
    assert received == 2000
    assert reader.pending == 0
    # Bounded by about one envelope, not by the 2 MB stream.
    assert peak < 2 * len(env)


def test_buffer_bounded_with_many_small_envelopes_per_chunk() -> None:
    env = encode_envelope(b"0123456789")
    reader = EnvelopeReader(max_size=100)
    count = 0
    peak = 0
    # Three bytes up front, then seven envelopes per chunk: every chunk ends three bytes
    # into an envelope, so something is always pending, and no more than that is held.
    wire = env * 20_000
    chunk_len = len(env) * 7
    starts = [0, 3, *range(3 + chunk_len, len(wire), chunk_len)]
    for start, end in itertools.pairwise([*starts, len(wire)]):
        reader.feed(wire[start:end])
        while reader.next() is not None:
            count += 1
        peak = max(peak, reader.pending)
    assert count == 20_000
    assert reader.pending == 0
    assert peak < 2 * chunk_len


@settings(max_examples=50, deadline=None)  # a shared machine makes timing meaningless
@given(sizes=st.lists(st.integers(0, 40_000), min_size=1, max_size=12), cut=st.integers(1, 9000))
def test_round_trip_large_envelopes_in_pieces(sizes: list[int], cut: int) -> None:
    envs = [(i % 3, bytes([i % 251]) * n) for i, n in enumerate(sizes)]
    wire = b"".join(encode_envelope(p, f) for f, p in envs)
    reader = EnvelopeReader(max_size=1 << 20)
    got: list[tuple[int, bytes]] = []
    for start in range(0, len(wire), cut):
        reader.feed(wire[start : start + cut])
        got.extend(_drain(reader))
    assert got == envs
    assert reader.pending == 0


@pytest.mark.parametrize("head", [1, 4, 5, 6])
def test_large_envelope_in_frames_then_the_next_in_the_same_chunk(head: int) -> None:
    """A 256 KiB message in 16 KiB pieces, its prefix cut after ``head`` bytes, and the
    last piece running on into the next envelope."""
    payload = bytes(range(256)) * 1024
    wire = encode_envelope(payload) + encode_envelope(b"next", FLAG_END_STREAM)
    reader = EnvelopeReader(max_size=1 << 20)
    pieces = [wire[:head], *(wire[i : i + 16_384] for i in range(head, len(wire), 16_384))]
    got: list[tuple[int, bytes]] = []
    for piece in pieces:
        env = reader.take(piece)
        if env is not None:
            got.append(env)
            got.extend(_drain(reader))
    assert [len(p) for _, p in got] == [len(payload), 4]
    assert got[0] == (0, payload) and got[1] == (FLAG_END_STREAM, b"next")
    assert type(got[0][1]) is bytes and reader.pending == 0


def test_a_message_sent_one_byte_at_a_time_costs_about_its_own_size() -> None:
    """A peer may cut a message into 1-byte DATA frames: what the reader holds meanwhile
    stays near the message's own size, not a list entry and an object per byte."""
    import tracemalloc

    payload = bytes(range(256)) * 2048  # 512 KiB
    wire = encode_envelope(payload)
    pieces = [wire[i : i + 1] for i in range(len(wire))]  # made before measuring
    reader = EnvelopeReader(max_size=1 << 20)
    tracemalloc.start()
    try:
        for piece in pieces[:-1]:
            reader.feed(piece)
            assert reader.next() is None
        held, _ = tracemalloc.get_traced_memory()
        reader.feed(pieces[-1])
        got = reader.next()
    finally:
        tracemalloc.stop()
    assert got == (0, payload)
    assert held < 2 * len(payload), held

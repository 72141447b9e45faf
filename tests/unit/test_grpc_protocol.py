"""gRPC and gRPC-Web wire helpers: timeouts, grpc-message, status details, trailer
frames, grpc-web-text decoding, content types."""

from __future__ import annotations

import base64
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2mesh import Code, RpcError
from h2mesh.protocol import negotiate
from h2mesh.protocol.grpc import (
    GRPC,
    decode_status_details,
    encode_grpc_metadata,
    encode_status_details,
    encode_timeout,
    parse_timeout,
    parse_trailer_block,
    percent_decode,
    percent_encode,
)
from h2mesh.protocol.grpc_web import (
    CORS_PREFLIGHT,
    GRPC_WEB,
    GRPC_WEB_TEXT,
    Base64Framing,
    encode_trailer_block,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (b"1H", 3600.0),
        (b"2M", 120.0),
        (b"3S", 3.0),
        (b"250m", 0.25),
        (b"1500u", 0.0015),
        (b"99999999n", 0.099999999),
        (b"0S", 0.0),
        (b"12345678S", 12345678.0),
    ],
)
def test_parse_timeout_units(value: bytes, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [b"", b"S", b"1", b"1s", b"1h", b"123456789S", b"-1S", b"1.5S", b" 1S", b"1 S", b"1x", b"+1S"],
)
def test_parse_timeout_invalid(value: bytes) -> None:
    with pytest.raises(RpcError) as info:
        parse_timeout(value)
    assert info.value.code == Code.INVALID_ARGUMENT


@given(st.floats(min_value=0, max_value=10**9, allow_nan=False))
def test_encode_timeout_fits_and_never_shortens(seconds: float) -> None:
    value = encode_timeout(seconds)
    assert len(value) <= 9
    assert parse_timeout(value) >= seconds * (1 - 1e-9)


@given(st.text())
def test_grpc_message_round_trip(message: str) -> None:
    encoded = percent_encode(message)
    assert all(0x20 <= b <= 0x7E for b in encoded)
    assert percent_decode(encoded) == message


def test_grpc_message_spec_examples() -> None:
    assert percent_encode("plain text") == b"plain text"
    assert percent_encode("100%") == b"100%25"
    assert percent_encode("\t\n☺") == b"%09%0A%E2%98%BA"
    # Malformed escapes are kept as they are.
    assert percent_decode(b"50%zz off %") == "50%zz off %"


def test_status_details_round_trip() -> None:
    value = base64.b64encode(b"\x08\x01").rstrip(b"=").decode()
    error = RpcError(Code.NOT_FOUND, "gone", [{"type": "google.rpc.RetryInfo", "value": value}])
    assert decode_status_details(encode_status_details(error)) == [
        {"type": "google.rpc.RetryInfo", "value": value}
    ]
    assert decode_status_details(b"\xff\xff") == []


def test_binary_metadata_is_base64_and_reserved_names_dropped() -> None:
    out = dict(encode_grpc_metadata({"x-a": "b", "x-b-bin": "\xab\x00", "grpc-status": "0"}))
    assert out == {b"x-a": b"b", b"x-b-bin": base64.b64encode(b"\xab\x00").rstrip(b"=")}


def test_trailer_block_round_trip() -> None:
    fields = [(b"grpc-status", b"3"), (b"grpc-message", b"bad%20input"), (b"x-trace", b"a:b")]
    block = encode_trailer_block(fields)
    assert block == b"grpc-status: 3\r\ngrpc-message: bad%20input\r\nx-trace: a:b\r\n"
    assert parse_trailer_block(block) == fields
    assert parse_trailer_block(b"GRPC-Status:0\r\n") == [(b"grpc-status", b"0")]


@given(
    pieces=st.lists(st.binary(max_size=40), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
)
def test_grpc_web_text_decodes_at_any_chunk_boundary(pieces: list[bytes], cuts: list[int]) -> None:
    # Each piece base64-encoded on its own (padding in the middle), then cut anywhere.
    text = b"".join(base64.b64encode(p) for p in pieces)
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    framing = Base64Framing()
    out = b"".join(framing.decode(text[a:b]) for a, b in itertools.pairwise(bounds))
    out += framing.decode_end()
    assert out == b"".join(pieces)


def test_grpc_web_text_rejects_garbage() -> None:
    with pytest.raises(RpcError) as info:
        Base64Framing().decode(b"!!!!")
    assert info.value.code == Code.INTERNAL
    framing = Base64Framing()
    framing.decode(b"QUJDR")
    with pytest.raises(RpcError):
        framing.decode_end()


def test_unpadded_text_tail_is_accepted() -> None:
    framing = Base64Framing()
    assert framing.decode(b"QUJDRA") + framing.decode_end() == b"ABCD"


@pytest.mark.parametrize(
    ("method", "ct", "proto"),
    [
        (b"POST", b"application/grpc", GRPC),
        (b"POST", b"application/grpc+proto", GRPC),
        (b"POST", b"application/grpc+json", GRPC),
        (b"POST", b"application/grpc+msgpack", GRPC),
        (b"POST", b"application/grpc-web", GRPC_WEB),
        (b"POST", b"application/grpc-web+proto", GRPC_WEB),
        (b"POST", b"application/grpc-web+json", GRPC_WEB),
        (b"POST", b"application/grpc-web-text", GRPC_WEB_TEXT),
        (b"POST", b"application/grpc-web-text+proto", GRPC_WEB_TEXT),
        (b"OPTIONS", None, CORS_PREFLIGHT),
        (b"POST", b"application/grpc+xml", None),
        (b"POST", b"application/grpcfoo", None),
    ],
)
def test_negotiate_grpc_family(method: bytes, ct: bytes | None, proto: object) -> None:
    assert negotiate(method, ct) is proto

"""Sans-IO pieces of the Connect protocol: content types and timeouts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2mesh import Code, RpcError
from h2mesh.codec import JSON, MSGPACK, PROTO
from h2mesh.protocol.connect import _parse_timeout, parse_content_type


@pytest.mark.parametrize(
    ("ct", "expected"),
    [
        (b"application/json", (False, JSON)),
        (b"application/json; charset=utf-8", (False, JSON)),
        (b"application/json;charset=UTF-8", (False, JSON)),
        (b"Application/JSON", (False, JSON)),
        (b"application/msgpack", (False, MSGPACK)),
        (b"application/connect+json", (True, JSON)),
        (b"application/connect+msgpack", (True, MSGPACK)),
        (b"application/connect+json; charset=utf-8", (True, JSON)),
    ],
)
def test_known_content_types(ct: bytes, expected: tuple[bool, object]) -> None:
    assert parse_content_type(ct) == expected
    # A second lookup (possibly cached) gives the same answer.
    assert parse_content_type(ct) == expected


@pytest.mark.parametrize(
    "ct",
    [
        b"",
        b"text/plain",
        b"application/xml",
        b"application/xml+proto",
        b"application/connect+xml",
        b"application/grpc",
        b"application/grpc+proto",
        b"multipart/form-data; boundary=x",
        b"json",
    ],
)
def test_unknown_content_types(ct: bytes) -> None:
    assert parse_content_type(ct)[1] is None


@given(ct=st.binary(max_size=60))
def test_parse_content_type_never_raises(ct: bytes) -> None:
    is_stream, codec = parse_content_type(ct)
    assert isinstance(is_stream, bool)
    assert codec in (None, JSON, MSGPACK, PROTO)


@given(ct=st.binary(max_size=40))
def test_unknown_content_types_are_not_cached_without_bound(ct: bytes) -> None:
    from h2mesh.protocol import connect

    parse_content_type(b"application/x-" + ct)
    assert len(connect._CT_CACHE) <= 64


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        (b"0", 0.0),
        (b"1", 0.001),
        (b"1500", 1.5),
        (b"0001", 0.001),
        (b"9999999999", 9_999_999.999),
    ],
)
def test_parse_timeout_accepts_digits(value: bytes | None, seconds: float | None) -> None:
    assert _parse_timeout(value) == seconds


@given(ms=st.integers(0, 9_999_999_999))
def test_parse_timeout_any_up_to_ten_digits(ms: int) -> None:
    assert _parse_timeout(str(ms).encode()) == ms / 1000.0


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"12345678901",
        b"-1",
        b"+5",
        b"1.5",
        b"1e3",
        b" 10",
        b"10 ",
        b"ten",
        b"0x10",
        b"\xd9\xa3",
    ],
)
def test_parse_timeout_rejects(value: bytes) -> None:
    with pytest.raises(RpcError) as info:
        _parse_timeout(value)
    assert info.value.code is Code.INVALID_ARGUMENT
    assert "connect-timeout-ms" in info.value.message


@given(digits=st.text("0123456789", min_size=11, max_size=30))
def test_parse_timeout_rejects_more_than_ten_digits(digits: str) -> None:
    with pytest.raises(RpcError) as info:
        _parse_timeout(digits.encode())
    assert info.value.code is Code.INVALID_ARGUMENT

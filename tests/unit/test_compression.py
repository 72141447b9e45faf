"""Compressors: round trips, the decompression-bomb limit, corrupt input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2mesh import Code, RpcError
from h2mesh.compression import DEFLATE, GZIP, IDENTITY, compressor_for, supported_names

ALL = [compressor_for(name) for name in supported_names()]


def test_names() -> None:
    assert {"gzip", "deflate", "identity", "zstd"} <= set(supported_names())
    assert compressor_for("gzip") is GZIP
    assert compressor_for("deflate") is DEFLATE
    assert compressor_for("identity") is IDENTITY
    assert compressor_for("snappy") is None


@pytest.mark.parametrize("comp", ALL, ids=lambda c: c.name)
@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=5000))
def test_round_trip(comp: object, data: bytes) -> None:
    assert comp.decompress(comp.compress(data), len(data)) == data  # type: ignore[attr-defined]


@pytest.mark.parametrize("comp", ALL, ids=lambda c: c.name)
def test_bomb_is_resource_exhausted(comp: object) -> None:
    bomb = comp.compress(bytes(64 << 20))  # type: ignore[attr-defined]
    with pytest.raises(RpcError) as info:
        comp.decompress(bomb, 4 << 20)  # type: ignore[attr-defined]
    assert info.value.code == Code.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("comp", ALL, ids=lambda c: c.name)
def test_exact_limit_is_allowed(comp: object) -> None:
    data = bytes(1000)
    packed = comp.compress(data)  # type: ignore[attr-defined]
    assert comp.decompress(packed, 1000) == data  # type: ignore[attr-defined]
    with pytest.raises(RpcError):
        comp.decompress(packed, 999)  # type: ignore[attr-defined]


@pytest.mark.parametrize("comp", [GZIP, DEFLATE], ids=lambda c: c.name)
def test_corrupt_and_truncated_input(comp: object) -> None:
    packed = comp.compress(b"hello world" * 100)  # type: ignore[attr-defined]
    for bad in (b"not compressed at all", packed[:-4]):
        with pytest.raises(RpcError) as info:
            comp.decompress(bad, 1 << 20)  # type: ignore[attr-defined]
        assert info.value.code == Code.INTERNAL

"""JSON and MessagePack codecs: round trips and the errors a bad message produces."""

from __future__ import annotations

import dataclasses
from typing import Any, TypedDict

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2mesh import Code, RpcError
from h2mesh.codec import JSON, MSGPACK, PROTO, Codec, codec_for

CODECS = [JSON, MSGPACK]
codec_param = pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)


class Point(msgspec.Struct):
    x: int
    y: int


class Shape(msgspec.Struct):
    name: str
    points: list[Point]
    tags: dict[str, str] = {}
    weight: float | None = None


@dataclasses.dataclass
class DataPoint:
    x: int
    label: str


class TypedPoint(TypedDict):
    x: int
    label: str


# JSON cannot carry integers beyond 64 bits through msgspec; stay within int64.
ints = st.integers(-(2**63), 2**63 - 1)
text = st.text()
points = st.builds(Point, x=ints, y=ints)
shapes = st.builds(
    Shape,
    name=text,
    points=st.lists(points, max_size=5),
    tags=st.dictionaries(text, text, max_size=4),
    weight=st.none() | st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    st.none() | st.booleans() | ints | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


def test_codec_names_and_lookup() -> None:
    assert JSON.name == "json"
    assert MSGPACK.name == "msgpack"
    assert codec_for("json") is JSON
    assert codec_for("msgpack") is MSGPACK
    assert codec_for("proto") is PROTO
    assert codec_for("xml") is None
    assert codec_for("") is None


def _round_trip(codec: Codec, tp: Any, value: Any) -> Any:
    data = codec.encode(value)
    assert isinstance(data, bytes)
    return codec.decoder(tp)(data)


@codec_param
@given(shape=shapes)
def test_struct_round_trip(codec: Codec, shape: Shape) -> None:
    assert _round_trip(codec, Shape, shape) == shape


@codec_param
@given(value=json_values)
def test_any_value_round_trip(codec: Codec, value: Any) -> None:
    assert _round_trip(codec, Any, value) == value


@codec_param
@given(value=st.dictionaries(text, ints))
def test_dict_round_trip(codec: Codec, value: dict[str, int]) -> None:
    assert _round_trip(codec, dict[str, int], value) == value


@codec_param
@given(value=st.lists(text))
def test_list_round_trip(codec: Codec, value: list[str]) -> None:
    assert _round_trip(codec, list[str], value) == value


@codec_param
@given(value=ints)
def test_int_round_trip(codec: Codec, value: int) -> None:
    assert _round_trip(codec, int, value) == value


@codec_param
@given(value=text)
def test_str_round_trip(codec: Codec, value: str) -> None:
    assert _round_trip(codec, str, value) == value


@codec_param
@given(x=ints, label=text)
def test_dataclass_round_trip(codec: Codec, x: int, label: str) -> None:
    value = DataPoint(x=x, label=label)
    assert _round_trip(codec, DataPoint, value) == value


@codec_param
@given(x=ints, label=text)
def test_typeddict_round_trip(codec: Codec, x: int, label: str) -> None:
    value: TypedPoint = {"x": x, "label": label}
    assert _round_trip(codec, TypedPoint, value) == value


@codec_param
def test_decoder_accepts_memoryview(codec: Codec) -> None:
    data = codec.encode(Point(1, 2))
    assert codec.decoder(Point)(memoryview(data)) == Point(1, 2)


def test_json_wire_form_is_plain_json() -> None:
    assert JSON.encode(Point(1, 2)) == b'{"x":1,"y":2}'
    assert JSON.decoder(Point)(b'{"y": 2, "x": 1}') == Point(1, 2)


@pytest.mark.parametrize("data", [b"{", b"not json", b'{"x":1,', b"\xff\xfe", b""])
def test_malformed_json(data: bytes) -> None:
    with pytest.raises(RpcError) as info:
        JSON.decoder(Point)(data)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "malformed JSON" in info.value.message


@pytest.mark.parametrize("data", [b"\xc1", b"\x82\xa1x", b""])
def test_malformed_msgpack(data: bytes) -> None:
    with pytest.raises(RpcError) as info:
        MSGPACK.decoder(Point)(data)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "malformed MessagePack" in info.value.message


@codec_param
def test_wrong_field_type_names_the_field(codec: Codec) -> None:
    data = codec.encode({"x": "one", "y": 2})
    with pytest.raises(RpcError) as info:
        codec.decoder(Point)(data)
    err = info.value
    assert err.code == Code.INVALID_ARGUMENT
    assert "invalid" in err.message
    assert "$.x" in err.message
    assert "int" in err.message


@codec_param
def test_nested_wrong_field_type_names_the_path(codec: Codec) -> None:
    data = codec.encode({"name": "s", "points": [{"x": 1, "y": 2}, {"x": 1, "y": "two"}]})
    with pytest.raises(RpcError) as info:
        codec.decoder(Shape)(data)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "$.points[1].y" in info.value.message


@codec_param
def test_missing_required_field_names_it(codec: Codec) -> None:
    with pytest.raises(RpcError) as info:
        codec.decoder(Point)(codec.encode({"x": 1}))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "missing required field `y`" in info.value.message


@codec_param
def test_dataclass_wrong_field_type(codec: Codec) -> None:
    with pytest.raises(RpcError) as info:
        codec.decoder(DataPoint)(codec.encode({"x": 1, "label": 5}))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "$.label" in info.value.message


@codec_param
def test_typeddict_wrong_field_type(codec: Codec) -> None:
    with pytest.raises(RpcError) as info:
        codec.decoder(TypedPoint)(codec.encode({"x": "no", "label": "a"}))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "$.x" in info.value.message


@codec_param
def test_wrong_top_level_type(codec: Codec) -> None:
    with pytest.raises(RpcError) as info:
        codec.decoder(Point)(codec.encode([1, 2]))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "object" in info.value.message


@codec_param
def test_unencodable_value_raises_type_error(codec: Codec) -> None:
    with pytest.raises(TypeError, match="cannot encode objects of type object"):
        codec.encode(object())


@codec_param
def test_model_dump_objects_encode_as_their_dict(codec: Codec) -> None:
    class Model:
        def model_dump(self, mode: str = "python") -> dict[str, Any]:
            assert mode == "json"
            return {"x": 3, "y": 4}

    assert codec.decoder(Point)(codec.encode(Model())) == Point(3, 4)


def test_msgpack_string_that_is_not_utf8_is_invalid_argument() -> None:
    """Found by fuzzing: msgspec raises UnicodeDecodeError, not DecodeError, for it."""
    from examples.greeter import HelloRequest

    from h2mesh import Code, RpcError
    from h2mesh.codec import MSGPACK

    for tp in (HelloRequest, dict):
        with pytest.raises(RpcError) as info:
            MSGPACK.decoder(tp)(b"\x81\xa4name\xa2\xff\xfe")
        assert info.value.code is Code.INVALID_ARGUMENT
        assert "not UTF-8" in info.value.message


def test_json_malformed_after_a_float_is_invalid_argument() -> None:
    """Found by fuzzing: a float where an object belongs, then garbage."""
    from examples.greeter import HelloRequest

    from h2mesh import Code, RpcError
    from h2mesh.codec import JSON

    with pytest.raises(RpcError) as info:
        JSON.decoder(HelloRequest)(b"333333333333333333333\x81\xa4name")
    assert info.value.code is Code.INVALID_ARGUMENT
    assert "malformed JSON" in info.value.message
    # ...and a JSON string that is not UTF-8 (msgspec raises UnicodeDecodeError).
    with pytest.raises(RpcError) as info:
        JSON.decoder(Any)(b'"u\xec"')
    assert info.value.code is Code.INVALID_ARGUMENT
    assert "not UTF-8" in info.value.message

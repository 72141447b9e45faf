"""The protobuf schema of Python types: the mapping, the refusals, text and descriptor."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Annotated, Any, TypedDict

import msgspec
import pytest
from google.protobuf import descriptor_pb2, duration_pb2, timestamp_pb2

from h2mesh import Service, rpc
from h2mesh.schema import (
    SchemaError,
    build_file,
    file_descriptor,
    message_codec,
    render_proto,
    service_file,
)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    NONE = 0
    HIGH = 7


class Inner(msgspec.Struct):
    label: str
    weight: float = 0.0


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Extra(TypedDict):
    note: str


class Everything(msgspec.Struct):
    class Kind(enum.Enum):
        PLAIN = "plain"
        FANCY = "fancy"

    count: int
    ratio: float
    flag: bool
    name: str
    blob: bytes
    tags: list[str]
    scores: dict[str, int]
    inner: Inner
    maybe: int | None
    maybe_inner: Inner | None
    color: Color
    level: Level
    kind: Everything.Kind
    when: datetime.datetime
    points: list[Point]
    by_id: dict[int, Point]
    extra: Extra
    pinned: Annotated[int, msgspec.Meta(extra={"proto": 20})]
    small: Annotated[int, msgspec.Meta(extra={"proto_type": "sint32"})]
    after: str = ""


def _fields(tp: Any) -> dict[str, tuple[int, str, str]]:
    model = build_file([tp], "t.v1", "t.proto")
    msg = next(m for m in model.messages if m.py_type is tp)
    from h2mesh.schema._text import type_ref

    return {f.name: (f.number, f.label, type_ref(f.type, "t.v1")) for f in msg.fields}


def test_type_mapping() -> None:
    assert _fields(Everything) == {
        "count": (1, "single", "int64"),
        "ratio": (2, "single", "double"),
        "flag": (3, "single", "bool"),
        "name": (4, "single", "string"),
        "blob": (5, "single", "bytes"),
        "tags": (6, "repeated", "string"),
        "scores": (7, "map", "int64"),
        "inner": (8, "single", "Inner"),
        "maybe": (9, "optional", "int64"),
        "maybe_inner": (10, "single", "Inner"),
        "color": (11, "single", "Color"),
        "level": (12, "single", "Level"),
        "kind": (13, "single", "Everything.Kind"),
        "when": (14, "single", "google.protobuf.Timestamp"),
        "points": (15, "repeated", "Point"),
        "by_id": (16, "map", "Point"),
        "extra": (17, "single", "Extra"),
        "pinned": (20, "single", "int64"),
        "small": (18, "single", "sint32"),
        "after": (19, "single", "string"),
    }


def test_proto_text() -> None:
    text = render_proto(build_file([Everything], "t.v1", "t/v1/t.proto"))
    assert 'syntax = "proto3";' in text
    assert "package t.v1;" in text
    assert 'import "google/protobuf/timestamp.proto";' in text
    assert "  map<string, int64> scores = 7;" in text
    assert "  map<int64, Point> by_id = 16;" in text
    assert "  optional int64 maybe = 9;" in text
    assert "  Inner maybe_inner = 10;" in text
    assert "  enum Kind {\n    PLAIN = 0;\n    FANCY = 1;\n  }" in text
    assert "enum Level {\n  NONE = 0;\n  HIGH = 7;\n}" in text
    assert "enum Color {\n  RED = 0;\n  GREEN = 1;\n}" in text


def test_descriptor_matches_the_text() -> None:
    fdp = file_descriptor(build_file([Everything], "t.v1", "t/v1/t.proto"))
    assert isinstance(fdp, descriptor_pb2.FileDescriptorProto)
    assert fdp.syntax == "proto3"
    assert list(fdp.dependency) == ["google/protobuf/timestamp.proto"]
    msg = next(m for m in fdp.message_type if m.name == "Everything")
    by_name = {f.name: f for f in msg.field}
    assert by_name["maybe"].proto3_optional
    assert msg.oneof_decl[by_name["maybe"].oneof_index].name == "_maybe"
    assert by_name["kind"].type_name == ".t.v1.Everything.Kind"
    assert by_name["scores"].type_name == ".t.v1.Everything.ScoresEntry"
    entry = next(m for m in msg.nested_type if m.name == "ScoresEntry")
    assert entry.options.map_entry
    assert by_name["when"].type_name == ".google.protobuf.Timestamp"


def test_round_trip_through_protobuf() -> None:
    value = Everything(
        count=-5,
        ratio=0.25,
        flag=True,
        name="ü",
        blob=b"\x00\xff",
        tags=["a", "b"],
        scores={"x": 1},
        inner=Inner("in", 1.5),
        maybe=0,
        maybe_inner=None,
        color=Color.GREEN,
        level=Level.HIGH,
        kind=Everything.Kind.FANCY,
        when=datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC),
        points=[Point(1, 2), Point(-3, 4)],
        by_id={7: Point(0, 0)},
        extra={"note": "n"},
        pinned=42,
        small=-1,
    )
    encode, decode = message_codec(Everything)
    assert decode(encode(value)) == value
    empty = Everything(**{**msgspec.structs.asdict(value), "maybe": None, "tags": []})
    assert decode(encode(empty)) == empty


def test_wire_matches_a_generated_class() -> None:
    # Timestamp is a generated class: a Struct with the same field layout reads its bytes.
    class Stamp(msgspec.Struct):
        seconds: int
        nanos: Annotated[int, msgspec.Meta(extra={"proto_type": "int32"})]

    _, decode = message_codec(Stamp)
    assert decode(timestamp_pb2.Timestamp(seconds=12, nanos=34).SerializeToString()) == Stamp(
        12, 34
    )


def test_explicit_numbers_and_clashes() -> None:
    class Pinned(msgspec.Struct):
        a: str
        b: Annotated[str, msgspec.Meta(extra={"proto": 1})]
        c: str

    assert {k: v[0] for k, v in _fields(Pinned).items()} == {"a": 2, "b": 1, "c": 3}

    class Twice(msgspec.Struct):
        a: Annotated[str, msgspec.Meta(extra={"proto": 3})]
        b: Annotated[str, msgspec.Meta(extra={"proto": 3})]

    with pytest.raises(SchemaError, match="field number 3 is also used by a"):
        _fields(Twice)

    class Reserved(msgspec.Struct):
        a: Annotated[str, msgspec.Meta(extra={"proto": 19500})]

    with pytest.raises(SchemaError, match="reserved"):
        _fields(Reserved)


class _Recursive(msgspec.Struct):
    children: list[_Recursive] = []


def test_recursive_types() -> None:
    assert _fields(_Recursive) == {"children": (1, "repeated", "_Recursive")}
    encode, decode = message_codec(_Recursive)
    value = _Recursive([_Recursive(), _Recursive([_Recursive()])])
    assert decode(encode(value)) == value


@pytest.mark.parametrize(
    ("hint", "message"),
    [
        (int | str, "unions of several types"),
        (list[list[int]], "cannot itself be a list or dict"),
        (dict[Point, int], "map keys must be str, int or bool"),
        (Any, "has no protobuf form"),
        (object, "has no protobuf form"),
        (list[int | None], "cannot be optional"),
        (list[int] | None, "an optional list or dict"),
        (tuple[int, str], "only variable-length tuples"),
        (list, "needs an element type"),
        (dict[str, list[int]], "cannot itself be a list or dict"),
        (Annotated[str, msgspec.Meta(extra={"proto_type": "int32"})], "does not fit str"),
        (Annotated[Inner, msgspec.Meta(extra={"proto_type": "int32"})], "applies to int"),
        (Annotated[int, msgspec.Meta(extra={"proto_type": "float"})], "does not fit int"),
    ],
)
def test_refusals(hint: Any, message: str) -> None:
    bad = msgspec.defstruct("Bad", [("field", hint)])
    with pytest.raises(SchemaError, match=message) as info:
        build_file([bad], "t", "t.proto")
    assert "Bad.field" in str(info.value)


def test_enum_refusals() -> None:
    class NoZero(enum.IntEnum):
        ONE = 1

    class Mixed(enum.Enum):
        A = 0
        B = "b"

    for tp, message in ((NoZero, "needs a member with value 0"), (Mixed, "mixes value types")):
        bad = msgspec.defstruct("Bad", [("e", tp)])
        with pytest.raises(SchemaError, match=message):
            build_file([bad], "t", "t.proto")


def test_name_clashes_are_refused() -> None:
    first = msgspec.defstruct("Same", [("a", int)], module="one")
    second = msgspec.defstruct("Same", [("b", int)], module="two")
    both = msgspec.defstruct("Both", [("x", first), ("y", second)])
    with pytest.raises(SchemaError, match=r"two types map to the protobuf name t\.Same"):
        build_file([both], "t", "t.proto")


def test_top_level_types_must_be_messages() -> None:
    class Plain(Service, name="t.v1.Plain"):
        @rpc
        async def echo(self, req: str) -> str:
            return req

    with pytest.raises(SchemaError, match=r"t\.v1\.Plain/Echo request: str is not a message type"):
        service_file(Plain)
    encode_error = "cannot encode"
    from h2mesh.codec import PROTO

    with pytest.raises(TypeError, match=encode_error):
        PROTO.encode(3)


def test_service_file_of_the_greeter() -> None:
    from examples.greeter import Greeter

    model = service_file(Greeter)
    assert model.name == "demo/v1/greeter.proto"
    assert model.package == "demo.v1"
    text = render_proto(model)
    assert "  rpc Count(CountRequest) returns (stream Tick);" in text
    assert "  rpc Total(stream Num) returns (Sum);" in text
    assert "  rpc Chat(stream Msg) returns (stream Msg);" in text
    fdp = file_descriptor(model)
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in fdp.service[0].method}
    assert methods == {
        "SayHello": (False, False),
        "Count": (False, True),
        "Total": (True, False),
        "Chat": (True, True),
    }


def test_health_descriptor_is_the_well_known_one() -> None:
    from grpc_health.v1 import health_pb2

    from h2mesh.server._health import HealthService

    ours = file_descriptor(service_file(HealthService))
    theirs = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(theirs)
    # grpcio-health-checking compiles it as grpc_health/...; grpc-proto's name is ours.
    assert ours.name == "grpc/health/v1/health.proto"
    assert ours.package == theirs.package
    for mine, ref in zip(ours.message_type, theirs.message_type, strict=True):
        for field in ref.field:
            field.ClearField("json_name")
        assert mine == ref
    assert ours.service[0].method == theirs.service[0].method


def test_generated_classes_inside_structs() -> None:
    class Wait(msgspec.Struct):
        d: duration_pb2.Duration
        ds: list[duration_pb2.Duration] = []

    model = build_file([Wait], "t", "t.proto")
    assert model.dependencies == ["google/protobuf/duration.proto"]
    assert "  repeated google.protobuf.Duration ds = 2;" in render_proto(model)
    encode, decode = message_codec(Wait)
    value = Wait(duration_pb2.Duration(seconds=3), [duration_pb2.Duration(nanos=5)])
    assert decode(encode(value)) == value


def test_decode_validates_like_msgspec() -> None:
    class Small(msgspec.Struct):
        n: Annotated[int, msgspec.Meta(ge=0)]

    class Signed(msgspec.Struct):
        n: int

    encode, _ = message_codec(Signed)
    _, decode = message_codec(Small)
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int` >= 0 - at `\$.n`"):
        decode(encode(Signed(-1)))

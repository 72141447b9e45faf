"""pydantic v2 models as message types, in every protocol: Connect JSON and MessagePack
(h2mesh's client and httpx), protobuf (grpcio through the .proto that ``h2mesh proto``
writes), REST routes; validation errors are ``invalid_argument`` naming the field path.
(No ``from __future__ import annotations``: pydantic reads the annotations at run time.)"""

import importlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import httpx
import msgspec
import pytest
from pydantic import BaseModel, Field

from h2mesh import Code, RpcError, Service, rpc
from h2mesh.codec import JSON, MSGPACK, PROTO
from h2mesh.schema import render_proto, service_file
from h2mesh.testing import ChannelFor

from ..conftest import ROOT, googleapis_root


class Point(BaseModel):
    x: int
    y: int = 0


class Shape(BaseModel):
    name: str = Field(min_length=1)
    points: list[Point] = []
    tags: list[str] = []
    scale: float = 1.0


class ShapeQuery(BaseModel):
    name: str
    min_points: int = Field(default=0, ge=0)


class Area(BaseModel):
    name: str
    vertices: int
    scaled: float


class Shapes(Service, name="demo.shapes.v1.Shapes"):
    """Shapes in pydantic."""

    @rpc(http="POST /v1/shapes:measure")
    async def measure(self, req: Shape) -> Area:
        """Count a shape's vertices."""
        return Area(name=req.name, vertices=len(req.points), scaled=len(req.points) * req.scale)

    @rpc(http="GET /v1/shapes/{name}")
    async def find(self, req: ShapeQuery) -> Shape:
        if req.name == "missing":
            raise RpcError(Code.NOT_FOUND, "no such shape")
        return Shape(name=req.name, points=[Point(x=i) for i in range(req.min_points)])

    @rpc(http="GET /v1/shapes/{name}/points")
    async def points(self, req: ShapeQuery) -> AsyncIterator[Point]:
        for i in range(req.min_points):
            yield Point(x=i, y=-i)


@pytest.fixture
def server_services() -> list[Service]:
    return [Shapes()]


SQUARE = Shape(name="sq", points=[Point(x=0), Point(x=1), Point(x=1, y=1), Point(y=1, x=0)])


def test_codecs_round_trip_models() -> None:
    for codec in (JSON, MSGPACK, PROTO):
        assert codec.decoder(Shape)(codec.encode(SQUARE)) == SQUARE, codec
    with pytest.raises(RpcError) as info:
        JSON.decoder(Shape)(b'{"name": "", "points": [{"x": "nope"}]}')
    assert info.value.code is Code.INVALID_ARGUMENT
    assert "at `$.name`" in info.value.message
    assert "at `$.points.0.x`" in info.value.message
    with pytest.raises(RpcError, match="malformed JSON"):
        JSON.decoder(Shape)(b"{")


def test_the_proto_schema_of_a_model() -> None:
    text = render_proto(service_file(Shapes))
    assert "message Shape {" in text and "repeated Point points = 2;" in text
    assert "rpc Measure(Shape) returns (Area) {" in text
    assert 'post: "/v1/shapes:measure"' in text


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_connect_calls_with_models(run: Any, codec: str) -> None:
    async def main() -> None:
        async with ChannelFor([Shapes()], codec=codec) as ch:
            shapes = ch.stub(Shapes)
            assert await shapes.measure(SQUARE) == Area(name="sq", vertices=4, scaled=4.0)
            got = [p async for p in shapes.points(ShapeQuery(name="a", min_points=2))]
            assert got == [Point(x=0, y=0), Point(x=1, y=-1)]

    run(main())


def test_validation_errors_name_the_field_path(server_url: str) -> None:
    url = server_url + "/demo.shapes.v1.Shapes/Measure"
    r = httpx.post(url, json={"name": "t", "points": [{"x": 1}, {"y": 2}]})
    assert r.status_code == 400 and r.json()["code"] == "invalid_argument"
    assert "Field required - at `$.points.1.x`" in r.json()["message"]
    body = msgspec.msgpack.encode({"name": 3})
    r = httpx.post(url, content=body, headers={"content-type": "application/msgpack"})
    assert r.status_code == 400 and "at `$.name`" in r.json()["message"]
    # The REST route: a path value and a query value of the wrong kind.
    r = httpx.get(server_url + "/v1/shapes/sq", params={"min_points": "-1"})
    assert r.status_code == 400 and "at `$.min_points`" in r.json()["message"]
    r = httpx.get(server_url + "/v1/shapes/sq", params={"min_points": "many"})
    assert r.status_code == 400 and "field `min_points`: expected an integer" in r.json()["message"]


def test_rest_routes_with_models(server_url: str) -> None:
    r = httpx.post(server_url + "/v1/shapes:measure", json=SQUARE.model_dump())
    assert r.status_code == 200 and r.json() == {"name": "sq", "vertices": 4, "scaled": 4.0}
    r = httpx.get(server_url + "/v1/shapes/tri", params={"min_points": 3})
    assert r.json()["points"] == [{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 2, "y": 0}]
    assert httpx.get(server_url + "/v1/shapes/missing").status_code == 404
    with httpx.stream("GET", server_url + "/v1/shapes/tri/points?min_points=2") as r:
        assert [line for line in r.iter_lines() if line] == ['{"x":0,"y":0}', '{"x":1,"y":-1}']
    doc = httpx.get(server_url + "/openapi.json").json()
    schema = doc["components"]["schemas"]["Shape"]
    assert schema["properties"]["name"]["minLength"] == 1  # pydantic's own JSON Schema
    assert doc["paths"]["/v1/shapes:measure"]["post"]["summary"] == "Count a shape's vertices."


@pytest.fixture(scope="module")
def shapes_pb(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, ModuleType]:
    root = tmp_path_factory.mktemp("shapes_proto")
    target = root / "demo" / "shapes" / "v1" / "shapes.proto"
    target.parent.mkdir(parents=True)
    target.write_text(render_proto(service_file(Shapes)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{googleapis_root()}",
            f"--python_out={root}",
            f"--grpc_python_out={root}",
            "demo/shapes/v1/shapes.proto",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(root))
    try:
        return (
            importlib.import_module("demo.shapes.v1.shapes_pb2"),
            importlib.import_module("demo.shapes.v1.shapes_pb2_grpc"),
        )
    finally:
        sys.path.remove(str(Path(root)))


def test_grpcio_calls_a_pydantic_service(
    server_url: str, shapes_pb: tuple[ModuleType, ModuleType]
) -> None:
    pb2, pb2_grpc = shapes_pb
    with grpc.insecure_channel(server_url.removeprefix("http://")) as ch:
        stub = pb2_grpc.ShapesStub(ch)
        req = pb2.Shape(name="tri", points=[pb2.Point(x=1), pb2.Point(x=2, y=3)], scale=0.5)
        area = stub.Measure(req, timeout=5)
        assert (area.name, area.vertices, area.scaled) == ("tri", 2, 1.0)
        with pytest.raises(grpc.RpcError) as info:
            stub.Measure(pb2.Shape(name=""), timeout=5)  # min_length=1
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "name" in (info.value.details() or "")
        points = list(stub.Points(pb2.ShapeQuery(name="x", min_points=2), timeout=5))
        assert [(p.x, p.y) for p in points] == [(0, 0), (1, -1)]

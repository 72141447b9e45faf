"""The route guide example (examples/route_guide): grpcio servicers, sync and ``grpc.aio``,
added unchanged to an h2mesh Server; called by grpcio's generated stub (all four kinds)
and by curl with Connect JSON."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ..conftest import ROOT, LiveServer

EXAMPLE = ROOT / "examples" / "route_guide"


@pytest.fixture(scope="module")
def generated() -> Iterator[Path]:
    """route_guide_pb2 and route_guide_pb2_grpc, generated as the example says."""
    out = Path(tempfile.mkdtemp(prefix="h2mesh-route-guide-"))
    done = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{EXAMPLE}", f"--python_out={out}",
         f"--grpc_python_out={out}", str(EXAMPLE / "route_guide.proto")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(out))
    try:
        yield out
    finally:
        sys.path.remove(str(out))
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(params=["server", "aio_server"])
def live_server(request: pytest.FixtureRequest, generated: Path, loop_kind: str) -> Iterator[Any]:
    module = importlib.import_module(f"examples.route_guide.{request.param}")
    servicer = module.RouteGuideServicer()
    pb2_grpc = importlib.import_module("route_guide_pb2_grpc")
    live = LiveServer(
        [], loop_kind, setup=lambda s: pb2_grpc.add_RouteGuideServicer_to_server(servicer, s)
    )
    live.start()
    try:
        yield live
    finally:
        live.close()


def test_all_four_kinds_with_grpcio(live_server: LiveServer) -> None:
    pb = importlib.import_module("route_guide_pb2")
    pb2_grpc = importlib.import_module("route_guide_pb2_grpc")
    with grpc.insecure_channel(live_server.url.removeprefix("http://")) as channel:
        stub = pb2_grpc.RouteGuideStub(channel)
        point = pb.Point(latitude=407838351, longitude=-746143763)
        assert stub.GetFeature(point, timeout=5).name == "Patriots Path, Mendham, NJ"
        assert stub.GetFeature(pb.Point(latitude=1, longitude=1), timeout=5).name == ""
        with pytest.raises(grpc.RpcError) as info:
            stub.GetFeature(pb.Point(), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        rect = pb.Rectangle(
            lo=pb.Point(latitude=400000000, longitude=-750000000),
            hi=pb.Point(latitude=415000000, longitude=-743000000),
        )
        names = [f.name for f in stub.ListFeatures(rect, timeout=5)]
        assert names == [
            "Patriots Path, Mendham, NJ",
            "101 New Jersey 10, Whippany, NJ",
            "U.S. 6, Shohola, PA",
            "Cadet Loop, West Point, NY",
        ]  # not Kingston, NY: north of the rectangle

        route = [point, pb.Point(latitude=408122808, longitude=-743999179), pb.Point()]
        summary = stub.RecordRoute(iter(route), timeout=5)
        assert (summary.point_count, summary.feature_count) == (3, 2)
        assert summary.distance > 0

        here, there = pb.Point(latitude=1, longitude=2), pb.Point(latitude=3, longitude=4)
        notes = [
            pb.RouteNote(location=here, message="a"),
            pb.RouteNote(location=there, message="b"),
            pb.RouteNote(location=here, message="c"),
            pb.RouteNote(location=here, message="d"),
        ]
        got = [n.message for n in stub.RouteChat(iter(notes), timeout=5)]
        assert got == ["a", "a", "c"]


def test_connect_json_with_curl(live_server: LiveServer, curl: str) -> None:
    out = subprocess.run(
        [curl, "-sS", "--http1.1", "-H", "content-type: application/json",
         "-d", '{"latitude": 413628156, "longitude": -749015468}',
         f"{live_server.url}/routeguide.RouteGuide/GetFeature"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    assert json.loads(out) == {
        "name": "U.S. 6, Shohola, PA",
        "location": {"latitude": 413628156, "longitude": -749015468},
    }

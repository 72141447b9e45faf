"""The route guide as a grpcio servicer (sync), served by h2mesh: nothing here is h2mesh
code but the last lines.

Generate the protobuf modules first (they are not checked in)::

    python -m grpc_tools.protoc -Iexamples/route_guide --python_out=examples/route_guide \\
        --grpc_python_out=examples/route_guide examples/route_guide/route_guide.proto
    PYTHONPATH=examples/route_guide h2mesh serve examples.route_guide.server:server --port 50051
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import route_guide_pb2 as pb
import route_guide_pb2_grpc

from h2mesh import Server

from .features import distance, find, inside, make_features


class RouteGuideServicer(route_guide_pb2_grpc.RouteGuideServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.features = make_features(pb)

    def GetFeature(self, request: Any, context: grpc.ServicerContext) -> Any:
        feature = find(self.features, request)
        if feature is None:
            if request.latitude == 0 and request.longitude == 0:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no point given")
            return pb.Feature(name="", location=request)
        return feature

    def ListFeatures(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        for feature in self.features:
            if inside(feature.location, request):
                yield feature

    def RecordRoute(self, request_iterator: Iterator[Any], context: Any) -> Any:
        count = features = metres = 0
        previous = None
        start = time.monotonic()
        for point in request_iterator:
            count += 1
            if find(self.features, point) is not None:
                features += 1
            if previous is not None:
                metres += distance(previous, point)
            previous = point
        return pb.RouteSummary(
            point_count=count,
            feature_count=features,
            distance=metres,
            elapsed_time=int(time.monotonic() - start),
        )

    def RouteChat(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        notes: list[Any] = []
        for note in request_iterator:
            for earlier in notes:
                if earlier.location == note.location:
                    yield earlier
            notes.append(note)


# What was `grpc.server(futures.ThreadPoolExecutor(...))` is an h2mesh Server.
server = Server([])
route_guide_pb2_grpc.add_RouteGuideServicer_to_server(RouteGuideServicer(), server)

"""The route guide as a ``grpc.aio`` servicer, served by h2mesh (see server.py for how to
generate the protobuf modules)::

    PYTHONPATH=examples/route_guide h2mesh serve examples.route_guide.aio_server:server
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import route_guide_pb2 as pb
import route_guide_pb2_grpc

from h2mesh import Server

from .features import distance, find, inside, make_features


class RouteGuideServicer(route_guide_pb2_grpc.RouteGuideServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.features = make_features(pb)

    async def GetFeature(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        feature = find(self.features, request)
        if feature is None:
            if request.latitude == 0 and request.longitude == 0:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no point given")
            return pb.Feature(name="", location=request)
        return feature

    async def ListFeatures(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for feature in self.features:
            if inside(feature.location, request):
                yield feature

    async def RecordRoute(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
        count = features = metres = 0
        previous = None
        start = time.monotonic()
        async for point in request_iterator:
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

    async def RouteChat(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        notes: list[Any] = []
        async for note in request_iterator:
            for earlier in notes:
                if earlier.location == note.location:
                    yield earlier
            notes.append(note)


server = Server([])
route_guide_pb2_grpc.add_RouteGuideServicer_to_server(RouteGuideServicer(), server)

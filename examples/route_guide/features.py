"""The map both route guide servers answer from, and the geometry they share."""

from __future__ import annotations

import math
from typing import Any

# (latitude, longitude, name), degrees times 10^7.
FEATURES = [
    (407838351, -746143763, "Patriots Path, Mendham, NJ"),
    (408122808, -743999179, "101 New Jersey 10, Whippany, NJ"),
    (413628156, -749015468, "U.S. 6, Shohola, PA"),
    (419999544, -740371136, "5 Conners Road, Kingston, NY"),
    (414008389, -743951297, "Cadet Loop, West Point, NY"),
]


def make_features(pb: Any) -> list[Any]:
    return [
        pb.Feature(name=name, location=pb.Point(latitude=lat, longitude=lon))
        for lat, lon, name in FEATURES
    ]


def find(features: list[Any], point: Any) -> Any | None:
    for feature in features:
        if feature.location == point:
            return feature
    return None


def inside(point: Any, rect: Any) -> bool:
    lo_lat, hi_lat = sorted((rect.lo.latitude, rect.hi.latitude))
    lo_lon, hi_lon = sorted((rect.lo.longitude, rect.hi.longitude))
    return lo_lat <= point.latitude <= hi_lat and lo_lon <= point.longitude <= hi_lon


def distance(a: Any, b: Any) -> int:
    """Great-circle distance in metres (haversine)."""
    lat1, lat2 = math.radians(a.latitude / 1e7), math.radians(b.latitude / 1e7)
    dlat = lat2 - lat1
    dlon = math.radians((b.longitude - a.longitude) / 1e7)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return int(2 * 6_371_000 * math.asin(math.sqrt(h)))

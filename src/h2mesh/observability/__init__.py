"""Metrics, access log and the per-request hook servers call; free when turned off.

Nothing here imports prometheus-client: ``_prometheus`` does, and only the admin listener
imports it, when ``/metrics`` is scraped.
"""

from ._access import AccessLog
from ._observer import CallObserver, ServerObserver
from ._stats import (
    DURATION_BOUNDS,
    SIZE_BOUNDS,
    CallStats,
    Sample,
    Series,
    Snapshot,
    merge_samples,
    merge_series,
    quantile,
)

__all__ = [
    "DURATION_BOUNDS",
    "SIZE_BOUNDS",
    "AccessLog",
    "CallObserver",
    "CallStats",
    "Sample",
    "Series",
    "ServerObserver",
    "Snapshot",
    "merge_samples",
    "merge_series",
    "quantile",
]

"""Metrics, access log and the per-request hook servers call; free when turned off.

Nothing here imports prometheus-client: ``_prometheus`` does, and only the admin listener
imports it, when ``/metrics`` is scraped.
"""

from ._access import AccessLog
from ._observer import CallObserver, ServerObserver
from ._stats import DURATION_BOUNDS, CallStats, Series, Snapshot, merge_series, quantile

__all__ = [
    "DURATION_BOUNDS",
    "AccessLog",
    "CallObserver",
    "CallStats",
    "Series",
    "ServerObserver",
    "Snapshot",
    "merge_series",
    "quantile",
]

"""Client-side load balancing: pickers, per-endpoint stats and outlier detection.

Pure decision code: nothing here opens a socket, reads a clock or awaits. The channel
feeds in endpoint sets, call outcomes and the time, and acts on the answers.
"""

from ._balancer import Balancer
from ._endpoint import Endpoint, EndpointStats, PeakEwma, StatsTable
from ._outlier import (
    FailurePercentageEjection,
    OutlierDetection,
    OutlierDetector,
    SuccessRateEjection,
    TickResult,
)
from ._pickers import (
    LeastRequest,
    Picker,
    PickFirst,
    RingHash,
    RoundRobin,
    Weighted,
    hash_key,
    make_picker,
)

__all__ = [
    "Balancer",
    "Endpoint",
    "EndpointStats",
    "FailurePercentageEjection",
    "LeastRequest",
    "OutlierDetection",
    "OutlierDetector",
    "PeakEwma",
    "PickFirst",
    "Picker",
    "RingHash",
    "RoundRobin",
    "StatsTable",
    "SuccessRateEjection",
    "TickResult",
    "Weighted",
    "hash_key",
    "make_picker",
]

"""Call resilience policies (gRFC A6): retries with backoff, hedging, retry throttling.

Pure objects: given what happened to an attempt (a status code, server pushback, the time
the caller passes in) they answer what to do next. The channel does the waiting and the
sending.
"""

from ._hedging import HedgingOutcome, HedgingPolicy, HedgingState, HedgingVerdict
from ._retry import MAX_ATTEMPTS_CAP, RetryDecision, RetryPolicy, RetryState, parse_pushback
from ._throttle import RetryThrottle

__all__ = [
    "MAX_ATTEMPTS_CAP",
    "HedgingOutcome",
    "HedgingPolicy",
    "HedgingState",
    "HedgingVerdict",
    "RetryDecision",
    "RetryPolicy",
    "RetryState",
    "RetryThrottle",
    "parse_pushback",
]

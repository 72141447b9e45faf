"""``Balancer``: one picker, the endpoint stats and the outlier detector, wired together.

This is the object a channel holds per target. The channel feeds it resolver updates,
asks it for an endpoint per call, reports each call's start and end, and calls ``tick``
every ``outlier_detection.interval`` seconds. All decisions, no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ._endpoint import Endpoint, EndpointStats, StatsTable
from ._outlier import OutlierDetection, OutlierDetector, TickResult
from ._pickers import Picker, make_picker

__all__ = ["Balancer"]


class Balancer:
    """Chooses endpoints for calls and keeps the numbers that make the choice good.

    ``policy`` is a policy name or a ready ``Picker``; ``max_concurrency`` caps the calls
    in flight per endpoint (``None``: no cap).
    """

    def __init__(
        self,
        policy: str | Picker = "round_robin",
        *,
        outlier_detection: OutlierDetection | None = None,
        max_concurrency: int | None = None,
        latency_decay: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        rng = rng if rng is not None else random.Random()
        if isinstance(policy, Picker):
            self.picker = policy
            self.stats = policy.stats
            self.stats.max_concurrency = max_concurrency
            self.stats.latency_decay = latency_decay
        else:
            self.stats = StatsTable(max_concurrency, latency_decay)
            self.picker = make_picker(policy, stats=self.stats, rng=rng)
        self.outlier = (
            OutlierDetector(outlier_detection, self.stats, rng=rng)
            if outlier_detection is not None
            else None
        )

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.picker.endpoints

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        """Take a new endpoint set from the resolver."""
        self.picker.update(endpoints)

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        """The endpoint for the next call; ``None`` means fail fast (see ``unavailable_reason``)."""
        return self.picker.pick(key)

    def unavailable_reason(self) -> str:
        """Why ``pick`` returned ``None``, worded for an UNAVAILABLE error message."""
        eps = self.picker.endpoints
        if not eps:
            return "no endpoints resolved"
        states = [self.stats[ep.address] for ep in eps]
        if all(s.ejected for s in states):
            return f"all {len(eps)} endpoints are ejected as outliers"
        if all(s.ejected or s.saturated for s in states):
            return f"all {len(eps)} endpoints are ejected or at their concurrency limit"
        return "no endpoint available"

    def started(self, endpoint: Endpoint) -> EndpointStats:
        """Count a call as in flight on ``endpoint``; returns its stats for ``finished``."""
        stats = self.stats[endpoint.address]
        stats.in_flight += 1
        stats.picks += 1
        return stats

    def finished(
        self,
        endpoint: Endpoint,
        ok: bool,
        latency: float | None = None,
        now: float = 0.0,
        stats: EndpointStats | None = None,
    ) -> None:
        """Record the end of a call: ``ok`` is False for outcomes that count against the
        endpoint (e.g. UNAVAILABLE, INTERNAL, connection failures), not for caller errors.
        ``stats`` is what ``started`` returned (saves looking it up again)."""
        if stats is None:
            if endpoint.address not in self.stats:
                return
            stats = self.stats[endpoint.address]
        stats.finished(ok, latency, now)

    def tick(self, now: float) -> TickResult:
        """One outlier-detection interval (a no-op without ``outlier_detection``)."""
        if self.outlier is None:
            return TickResult()
        return self.outlier.tick(now)

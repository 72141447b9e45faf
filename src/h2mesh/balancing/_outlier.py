"""Outlier detection with the semantics of gRPC's gRFC A50.

The detector is driven from outside: the channel records call outcomes into the
``StatsTable`` and calls ``tick(now)`` once per ``interval``; ``tick`` returns what it
ejected and un-ejected. No clock is read here, so tests step time by hand.

One deliberate difference from A50: A50 checks ``max_ejection_percent`` before each
ejection, so it may overshoot by one endpoint; here an ejection happens only if the
ejected share stays within ``max_ejection_percent`` afterwards.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ._endpoint import EndpointStats, StatsTable

__all__ = [
    "FailurePercentageEjection",
    "OutlierDetection",
    "OutlierDetector",
    "SuccessRateEjection",
    "TickResult",
]


@dataclass(frozen=True, slots=True)
class SuccessRateEjection:
    """Eject endpoints whose success rate is below ``mean - stdev * stdev_factor / 1000``."""

    stdev_factor: int = 1900
    enforcement_percentage: int = 100
    minimum_hosts: int = 5
    request_volume: int = 100


@dataclass(frozen=True, slots=True)
class FailurePercentageEjection:
    """Eject endpoints whose failure percentage is above ``threshold``."""

    threshold: int = 85
    enforcement_percentage: int = 100
    minimum_hosts: int = 5
    request_volume: int = 50


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """The A50 configuration (times in seconds). With neither algorithm set it does nothing."""

    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 10
    success_rate: SuccessRateEjection | None = None
    failure_percentage: FailurePercentageEjection | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.max_ejection_percent <= 100:
            raise ValueError("max_ejection_percent must be within 0..100")
        if self.interval <= 0 or self.base_ejection_time < 0 or self.max_ejection_time < 0:
            raise ValueError("interval must be > 0 and ejection times >= 0")
        for algo in (self.success_rate, self.failure_percentage):
            if algo is not None and not 0 <= algo.enforcement_percentage <= 100:
                raise ValueError("enforcement_percentage must be within 0..100")
        if (
            self.failure_percentage is not None
            and not 0 <= self.failure_percentage.threshold <= 100
        ):
            raise ValueError("failure_percentage.threshold must be within 0..100")


@dataclass(slots=True)
class TickResult:
    """What one interval tick changed (addresses)."""

    ejected: list[str] = field(default_factory=list)
    unejected: list[str] = field(default_factory=list)


class OutlierDetector:
    """Applies an ``OutlierDetection`` config to a ``StatsTable`` at each interval tick."""

    def __init__(
        self,
        config: OutlierDetection,
        stats: StatsTable,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.stats = stats
        self.rng = rng if rng is not None else random.Random()

    def ejected_count(self) -> int:
        return sum(1 for s in self.stats.values() if s.ejected)

    def _may_eject(self) -> bool:
        total = len(self.stats)
        return (
            total > 0
            and (self.ejected_count() + 1) * 100 <= self.config.max_ejection_percent * total
        )

    def _eject(self, address: str, stats: EndpointStats, now: float, result: TickResult) -> None:
        stats.ejected_at = now
        stats.ejection_multiplier += 1
        stats.ejections += 1
        result.ejected.append(address)

    def _enforced(self, percentage: int) -> bool:
        return percentage >= 100 or self.rng.randrange(100) < percentage

    def tick(self, now: float) -> TickResult:
        """Run one interval: rotate counters, eject outliers, un-eject those whose time is up."""
        cfg = self.config
        result = TickResult()
        for stats in self.stats.values():
            stats.rotate()
        if cfg.success_rate is not None:
            self._success_rate(cfg.success_rate, now, result)
        if cfg.failure_percentage is not None:
            self._failure_percentage(cfg.failure_percentage, now, result)
        ceiling = max(cfg.base_ejection_time, cfg.max_ejection_time)
        for address, stats in self.stats.items():
            if stats.ejected_at is None:
                if stats.ejection_multiplier > 0:
                    stats.ejection_multiplier -= 1
            elif address not in result.ejected:
                duration = min(cfg.base_ejection_time * stats.ejection_multiplier, ceiling)
                if now >= stats.ejected_at + duration:
                    stats.ejected_at = None
                    result.unejected.append(address)
        return result

    def _success_rate(self, algo: SuccessRateEjection, now: float, result: TickResult) -> None:
        candidates = [
            (address, stats, stats.last_successes / volume)
            for address, stats in self.stats.items()
            if (volume := stats.last_successes + stats.last_failures) >= algo.request_volume
            and volume > 0
        ]
        if len(candidates) < algo.minimum_hosts or not candidates:
            return
        rates = [rate for _, _, rate in candidates]
        mean = sum(rates) / len(rates)
        stdev = math.sqrt(sum((r - mean) ** 2 for r in rates) / len(rates))
        floor = mean - stdev * (algo.stdev_factor / 1000)
        for address, stats, rate in candidates:
            if not self._may_eject():
                return
            if not stats.ejected and rate < floor and self._enforced(algo.enforcement_percentage):
                self._eject(address, stats, now, result)

    def _failure_percentage(
        self, algo: FailurePercentageEjection, now: float, result: TickResult
    ) -> None:
        candidates = [
            (address, stats, 100 * stats.last_failures / volume)
            for address, stats in self.stats.items()
            if (volume := stats.last_successes + stats.last_failures) >= algo.request_volume
            and volume > 0
        ]
        if len(candidates) < algo.minimum_hosts or not candidates:
            return
        for address, stats, failure_pct in candidates:
            if not self._may_eject():
                return
            if (
                not stats.ejected
                and failure_pct > algo.threshold
                and self._enforced(algo.enforcement_percentage)
            ):
                self._eject(address, stats, now, result)

"""Endpoints and the per-endpoint statistics the pickers and the outlier detector read."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Endpoint", "EndpointStats", "PeakEwma", "StatsTable"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place a service answers: ``address`` is ``host:port`` (``[v6]:port`` for IPv6)."""

    address: str
    weight: int = 1
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ValueError(f"endpoint weight must be >= 1, got {self.weight}")
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"endpoint address must be host:port, got {self.address!r}")

    @property
    def host(self) -> str:
        """The host part, without IPv6 brackets."""
        return self.address.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


class PeakEwma:
    """Peak-sensitive exponentially weighted moving average of latency (seconds).

    A sample above the average replaces it at once (so a slowing endpoint is noticed
    immediately); lower samples pull it down with time constant ``decay`` seconds, and by
    at least a tenth of the gap each.
    """

    __slots__ = ("decay", "stamp", "value")

    def __init__(self, decay: float = 10.0) -> None:
        self.decay = decay
        self.value = 0.0
        self.stamp: float | None = None

    def observe(self, sample: float, now: float) -> None:
        if self.stamp is None or sample > self.value:
            self.value = sample
        else:
            # Time-based weight, but every lower sample pulls at least 10% of the way
            # down: under dense traffic a one-off spike fades within ~20 calls instead
            # of ``decay`` seconds, so a healthy endpoint does not look slow for long.
            w = min(math.exp(-max(now - self.stamp, 0.0) / self.decay), 0.9)
            self.value = self.value * w + sample * (1.0 - w)
        self.stamp = now


class EndpointStats:
    """Live numbers about one endpoint: in-flight calls, latency, recent outcomes, ejection.

    ``successes``/``failures`` count the current outlier-detection interval;
    ``last_successes``/``last_failures`` hold the interval before it (the window the
    detector judges). ``rotate()`` moves the window on.
    """

    __slots__ = (
        "ejected_at",
        "ejection_multiplier",
        "ejections",
        "failures",
        "in_flight",
        "last_failures",
        "last_successes",
        "latency",
        "max_concurrency",
        "picks",
        "successes",
    )

    def __init__(self, max_concurrency: int | None = None, latency_decay: float = 2.0) -> None:
        self.in_flight = 0
        self.max_concurrency = max_concurrency
        self.latency = PeakEwma(latency_decay)
        self.successes = 0
        self.failures = 0
        self.last_successes = 0
        self.last_failures = 0
        self.ejected_at: float | None = None
        self.ejection_multiplier = 0
        # Totals since the endpoint appeared, for metrics: attempts sent, ejections.
        self.picks = 0
        self.ejections = 0

    @property
    def ejected(self) -> bool:
        return self.ejected_at is not None

    @property
    def saturated(self) -> bool:
        return self.max_concurrency is not None and self.in_flight >= self.max_concurrency

    @property
    def available(self) -> bool:
        """Whether a picker may choose this endpoint now."""
        return self.ejected_at is None and (
            self.max_concurrency is None or self.in_flight < self.max_concurrency
        )

    def started(self) -> None:
        self.in_flight += 1
        self.picks += 1

    def finished(self, ok: bool, latency: float | None = None, now: float = 0.0) -> None:
        """Record the end of a call (``ok`` as the outlier detector should count it)."""
        self.in_flight = max(self.in_flight - 1, 0)
        if ok:
            self.successes += 1
        else:
            self.failures += 1
        if latency is not None:
            self.latency.observe(latency, now)

    def rotate(self) -> None:
        self.last_successes, self.last_failures = self.successes, self.failures
        self.successes = self.failures = 0


class StatsTable:
    """The ``EndpointStats`` of every current endpoint, keyed by address.

    Shared by a picker, the outlier detector and the channel; ``sync`` keeps it in step
    with the endpoint set (new endpoints start fresh, removed ones are forgotten).
    """

    def __init__(self, max_concurrency: int | None = None, latency_decay: float = 2.0) -> None:
        self.max_concurrency = max_concurrency
        self.latency_decay = latency_decay
        self._stats: dict[str, EndpointStats] = {}

    def sync(self, endpoints: Iterable[Endpoint]) -> None:
        old = self._stats
        new: dict[str, EndpointStats] = {}
        for ep in endpoints:
            stats = old.get(ep.address)
            if stats is None:
                stats = EndpointStats(self.max_concurrency, self.latency_decay)
            new[ep.address] = stats
        self._stats = new

    def __getitem__(self, address: str) -> EndpointStats:
        stats = self._stats.get(address)
        if stats is None:
            stats = self._stats[address] = EndpointStats(self.max_concurrency, self.latency_decay)
        return stats

    def __len__(self) -> int:
        return len(self._stats)

    def __contains__(self, address: object) -> bool:
        return address in self._stats

    def items(self) -> Iterable[tuple[str, EndpointStats]]:
        return self._stats.items()

    def values(self) -> Iterable[EndpointStats]:
        return self._stats.values()

    def available(self, address: str) -> bool:
        stats = self._stats.get(address)
        return stats is None or stats.available

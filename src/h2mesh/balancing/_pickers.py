"""Pickers: given the current endpoints and their stats, choose one for the next call.

Every picker has the same two methods: ``update(endpoints)`` when the endpoint set
changes, and ``pick(key)`` per call. ``pick`` returns ``None`` when no endpoint is
available (none known, all ejected, or all at their concurrency limit), so the caller can
fail fast with UNAVAILABLE instead of queueing. Pickers never do I/O.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

from ._endpoint import Endpoint, EndpointStats, StatsTable

__all__ = [
    "LeastRequest",
    "PickFirst",
    "Picker",
    "RingHash",
    "RoundRobin",
    "Weighted",
    "hash_key",
    "make_picker",
]


class Picker(ABC):
    """The common shape of every load-balancing policy."""

    name: ClassVar[str]

    def __init__(self, *, stats: StatsTable | None = None, rng: random.Random | None = None):
        self.stats = stats if stats is not None else StatsTable()
        self.rng = rng if rng is not None else random.Random()
        self.endpoints: tuple[Endpoint, ...] = ()

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        """Take a new endpoint set (duplicate addresses keep their first entry)."""
        unique: dict[str, Endpoint] = {}
        for ep in endpoints:
            unique.setdefault(ep.address, ep)
        self.endpoints = tuple(unique.values())
        self.stats.sync(self.endpoints)
        self._rebuild()

    def _rebuild(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Recompute derived structures after ``update`` (hook for subclasses)."""

    def _available(self) -> list[Endpoint]:
        stats = self.stats
        return [ep for ep in self.endpoints if stats.available(ep.address)]

    @abstractmethod
    def pick(self, key: bytes | None = None) -> Endpoint | None:
        """The endpoint for the next call, or ``None`` if none is available."""


class PickFirst(Picker):
    """Always the first available endpoint in resolver order; the next one on failure."""

    name = "pick_first"

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        stats = self.stats
        for ep in self.endpoints:
            if stats.available(ep.address):
                return ep
        return None


class RoundRobin(Picker):
    """Each available endpoint in turn, starting at a random place."""

    name = "round_robin"

    _next = 0

    def _rebuild(self) -> None:
        self._next = self.rng.randrange(len(self.endpoints)) if self.endpoints else 0

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        eps = self.endpoints
        n = len(eps)
        stats = self.stats
        for i in range(n):
            idx = (self._next + i) % n
            ep = eps[idx]
            if stats.available(ep.address):
                self._next = (idx + 1) % n
                return ep
        return None


class LeastRequest(Picker):
    """Power of two random choices: the one of two random endpoints with fewer calls in
    flight; equal counts go to the lower peak-EWMA latency."""

    name = "least_request"

    def __init__(
        self,
        *,
        choices: int = 2,
        probe_after: float = 10.0,
        stats: StatsTable | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(stats=stats, rng=rng)
        if choices < 2:
            raise ValueError("choices must be >= 2")
        self.choices = choices
        self.probe_after = probe_after

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        candidates = self._available()
        if not candidates:
            return None
        if len(candidates) <= self.choices:
            sample = candidates
        else:
            sample = self.rng.sample(candidates, self.choices)
        stats = [self.stats[ep.address] for ep in sample]
        # "Now" is the newest latency sample of the pair: the picker reads no clock.
        now = max((s.latency.stamp for s in stats if s.latency.stamp is not None), default=0.0)
        best = 0
        probe_after = self.probe_after
        best_cost = _cost(stats[0], now, probe_after)
        for i in range(1, len(sample)):
            cost = _cost(stats[i], now, probe_after)
            if cost < best_cost:
                best, best_cost = i, cost
        return sample[best]


def _cost(s: EndpointStats, now: float, probe_after: float) -> tuple[float, int]:
    """Peak-EWMA latency times (in-flight + 1); then the in-flight count alone. The
    latency of an endpoint that got no call for a while decays with time constant
    ``probe_after``, so a slow endpoint is tried again in time and can show it recovered;
    endpoints with no sample yet cost 0 and are tried first."""
    lat = s.latency
    if lat.stamp is None:
        return 0.0, s.in_flight
    value = lat.value
    if now > lat.stamp:
        value *= math.exp(-(now - lat.stamp) / probe_after)
    return value * (s.in_flight + 1), s.in_flight


def hash_key(data: bytes) -> int:
    """The 64-bit ring position of a key (BLAKE2b, so it is stable across processes)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class RingHash(Picker):
    """Consistent hashing on a per-call key over a ring of virtual nodes.

    Each endpoint gets ``vnodes_per_weight * weight`` points on the ring (its address hashed
    with the point index), scaled up to at least ``min_ring_size`` points in total and down
    to at most ``max_ring_size``. A key goes to the first available endpoint clockwise
    from its hash, so when one of N endpoints leaves only its ~1/N of the keys move, and
    they come back when it returns. Points of an endpoint do not depend on the others, so
    the ring is stable as long as the size bounds do not force a rescale. Calls without a
    key land at a random point.
    """

    name = "ring_hash"

    def __init__(
        self,
        *,
        vnodes_per_weight: int = 256,
        min_ring_size: int = 1024,
        max_ring_size: int = 65536,
        stats: StatsTable | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(stats=stats, rng=rng)
        if not 1 <= min_ring_size <= max_ring_size:
            raise ValueError("need 1 <= min_ring_size <= max_ring_size")
        if vnodes_per_weight < 1:
            raise ValueError("vnodes_per_weight must be >= 1")
        self.vnodes_per_weight = vnodes_per_weight
        self.min_ring_size = min_ring_size
        self.max_ring_size = max_ring_size
        self._hashes: list[int] = []
        self._owners: list[Endpoint] = []
        self._cache: dict[str, list[int]] = {}

    def _points(self, ep: Endpoint, count: int) -> list[int]:
        # Memoised per address so that a resolver update does not rehash every endpoint.
        points = self._cache.get(ep.address)
        if points is None or len(points) < count:
            base = ep.address.encode()
            points = [hash_key(base + b"_" + str(i).encode()) for i in range(count)]
            self._cache[ep.address] = points
        return points[:count]

    def _rebuild(self) -> None:
        eps = self.endpoints
        self._cache = {
            ep.address: self._cache[ep.address] for ep in eps if ep.address in self._cache
        }
        total_weight = sum(ep.weight for ep in eps)
        if not total_weight:
            self._hashes, self._owners = [], []
            return
        scale = float(self.vnodes_per_weight)
        if scale * total_weight < self.min_ring_size:
            scale = self.min_ring_size / total_weight
        if scale * total_weight > self.max_ring_size:
            scale = self.max_ring_size / total_weight
        ring: list[tuple[int, int]] = []
        for idx, ep in enumerate(eps):
            count = max(1, math.ceil(scale * ep.weight))
            ring.extend((h, idx) for h in self._points(ep, count))
        ring.sort()
        self._hashes = [h for h, _ in ring]
        self._owners = [eps[idx] for _, idx in ring]

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        owners = self._owners
        if not owners:
            return None
        h = hash_key(key) if key is not None else self.rng.getrandbits(64)
        start = bisect.bisect_left(self._hashes, h)
        n = len(owners)
        stats = self.stats
        seen: set[str] = set()
        distinct = len(self.endpoints)
        for i in range(n):
            ep = owners[(start + i) % n]
            if stats.available(ep.address):
                return ep
            seen.add(ep.address)
            if len(seen) == distinct:
                break
        return None


class Weighted(Picker):
    """Smooth weighted round robin over the registry weights (nginx's algorithm).

    Over any window of ``sum(weights)`` picks each endpoint is chosen ``weight`` times,
    spread out rather than in bursts. Unavailable endpoints are skipped and the rest share
    their turns in proportion to their weights.
    """

    name = "weighted"

    def __init__(self, *, stats: StatsTable | None = None, rng: random.Random | None = None):
        super().__init__(stats=stats, rng=rng)
        self._current: dict[str, int] = {}

    def _rebuild(self) -> None:
        old = self._current
        self._current = {ep.address: old.get(ep.address, 0) for ep in self.endpoints}

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        current = self._current
        stats = self.stats
        best: Endpoint | None = None
        best_value = 0
        total = 0
        for ep in self.endpoints:
            if not stats.available(ep.address):
                continue
            value = current[ep.address] + ep.weight
            current[ep.address] = value
            total += ep.weight
            if best is None or value > best_value:
                best, best_value = ep, value
        if best is not None:
            current[best.address] -= total
        return best


_POLICIES: dict[str, Callable[..., Picker]] = {
    cls.name: cls for cls in (PickFirst, RoundRobin, LeastRequest, RingHash, Weighted)
}


def make_picker(
    policy: str, *, stats: StatsTable | None = None, rng: random.Random | None = None
) -> Picker:
    """A picker by policy name: pick_first, round_robin, least_request, ring_hash, weighted."""
    try:
        factory = _POLICIES[policy]
    except KeyError:
        raise ValueError(
            f"unknown load-balancing policy {policy!r}; choose one of {sorted(_POLICIES)}"
        ) from None
    return factory(stats=stats, rng=rng)

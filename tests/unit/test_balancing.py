"""Pickers, endpoint stats and outlier detection (pure code: no sockets, no clocks)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2mesh.balancing import (
    Balancer,
    Endpoint,
    FailurePercentageEjection,
    LeastRequest,
    OutlierDetection,
    PeakEwma,
    PickFirst,
    RingHash,
    RoundRobin,
    StatsTable,
    SuccessRateEjection,
    Weighted,
    make_picker,
)


def eps(n: int, weights: list[int] | None = None) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i}:80", (weights or [1] * n)[i]) for i in range(n)]


def test_endpoint_validates_and_splits() -> None:
    ep = Endpoint("[::1]:8080", 3, {"zone": "a"})
    assert (ep.host, ep.port, ep.weight) == ("::1", 8080, 3)
    assert ep == Endpoint("[::1]:8080", 3)  # metadata does not take part in equality
    with pytest.raises(ValueError):
        Endpoint("nohost")
    with pytest.raises(ValueError):
        Endpoint("h:1", weight=0)


def test_make_picker_by_name() -> None:
    for name in ("pick_first", "round_robin", "least_request", "ring_hash", "weighted"):
        assert make_picker(name).name == name
    with pytest.raises(ValueError, match="unknown load-balancing policy"):
        make_picker("random")


@pytest.mark.parametrize(
    "name", ["pick_first", "round_robin", "least_request", "ring_hash", "weighted"]
)
def test_empty_picker_returns_none(name: str) -> None:
    picker = make_picker(name)
    assert picker.pick(b"k") is None
    picker.update([])
    assert picker.pick(None) is None


def test_pick_first_falls_through_to_next_available() -> None:
    picker = PickFirst()
    picker.update(eps(3))
    assert picker.pick().address == "10.0.0.0:80"  # type: ignore[union-attr]
    picker.stats["10.0.0.0:80"].ejected_at = 0.0
    assert picker.pick().address == "10.0.0.1:80"  # type: ignore[union-attr]


def test_round_robin_cycles_evenly_and_skips_unavailable() -> None:
    picker = RoundRobin(rng=random.Random(1))
    picker.update(eps(4))
    counts = Counter(picker.pick().address for _ in range(400))  # type: ignore[union-attr]
    assert set(counts.values()) == {100}
    picker.stats["10.0.0.2:80"].ejected_at = 0.0
    picks = [picker.pick().address for _ in range(30)]  # type: ignore[union-attr]
    assert "10.0.0.2:80" not in picks
    assert len(set(picks)) == 3


def test_concurrency_limit_saturates_then_fails_fast() -> None:
    balancer = Balancer("round_robin", max_concurrency=2)
    balancer.update(eps(2))
    picked = []
    for _ in range(4):
        ep = balancer.pick()
        assert ep is not None
        balancer.started(ep)
        picked.append(ep)
    assert balancer.pick() is None
    assert "concurrency limit" in balancer.unavailable_reason()
    balancer.finished(picked[0], ok=True, latency=0.01, now=1.0)
    assert balancer.pick() == picked[0]


def test_balancer_reasons() -> None:
    balancer = Balancer("least_request")
    assert balancer.pick() is None
    assert "no endpoints" in balancer.unavailable_reason()
    balancer.update(eps(2))
    for ep in balancer.endpoints:
        balancer.stats[ep.address].ejected_at = 0.0
    assert balancer.pick() is None
    assert "ejected" in balancer.unavailable_reason()


def test_least_request_prefers_fewer_in_flight_then_lower_latency() -> None:
    stats = StatsTable()
    picker = LeastRequest(stats=stats, rng=random.Random(3))
    a, b = eps(2)
    picker.update([a, b])
    stats[a.address].in_flight = 5
    assert all(picker.pick() == b for _ in range(20))
    stats[a.address].in_flight = 0
    stats[a.address].latency.observe(0.5, now=0.0)
    stats[b.address].latency.observe(0.1, now=0.0)
    assert all(picker.pick() == b for _ in range(20))


def test_least_request_spreads_load() -> None:
    balancer = Balancer(LeastRequest(rng=random.Random(7)))
    balancer.update(eps(5))
    in_flight: list[Endpoint] = []
    for _ in range(50):
        ep = balancer.pick()
        assert ep is not None
        balancer.started(ep)
        in_flight.append(ep)
    loads = [balancer.stats[ep.address].in_flight for ep in balancer.endpoints]
    assert max(loads) - min(loads) <= 3, loads


@given(
    n=st.integers(2, 12),
    ejected=st.sets(st.integers(0, 11)),
    seed=st.integers(0, 2**32),
)
@settings(max_examples=200, deadline=None)
def test_p2c_never_picks_an_ejected_endpoint(n: int, ejected: set[int], seed: int) -> None:
    picker = LeastRequest(rng=random.Random(seed))
    endpoints = eps(n)
    picker.update(endpoints)
    bad = {endpoints[i].address for i in ejected if i < n}
    for address in bad:
        picker.stats[address].ejected_at = 0.0
    for _ in range(20):
        ep = picker.pick()
        if len(bad) == n:
            assert ep is None
        else:
            assert ep is not None and ep.address not in bad


def test_peak_ewma_jumps_up_and_decays_down() -> None:
    ewma = PeakEwma(decay=1.0)
    ewma.observe(0.1, now=0.0)
    ewma.observe(1.0, now=0.1)
    assert ewma.value == 1.0
    ewma.observe(0.1, now=10.0)  # long after: mostly the new sample
    assert ewma.value < 0.11


# -- ring hash ------------------------------------------------------------------------
KEYS = [f"user-{i}".encode() for i in range(10_000)]


def owners(picker: RingHash) -> list[str]:
    return [picker.pick(k).address for k in KEYS]  # type: ignore[union-attr]


def test_ring_hash_is_sticky_and_spread() -> None:
    picker = RingHash()
    picker.update(eps(5))
    first = owners(picker)
    assert first == owners(picker)
    share = Counter(first)
    assert len(share) == 5
    assert all(1200 < c < 2800 for c in share.values()), share


def test_ring_hash_removing_one_of_five_moves_only_its_keys() -> None:
    endpoints = eps(5)
    picker = RingHash()
    picker.update(endpoints)
    before = owners(picker)
    gone = endpoints[2].address
    picker.update([ep for ep in endpoints if ep.address != gone])
    after = owners(picker)
    moved = sum(1 for x, y in zip(before, after, strict=True) if x != y)
    assert moved <= 0.25 * len(KEYS)
    # Exactly the removed endpoint's keys moved.
    assert all(x == y for x, y in zip(before, after, strict=True) if x != gone)
    picker.update(endpoints)
    assert owners(picker) == before


def test_ring_hash_skips_ejected_clockwise_and_honours_size_bounds() -> None:
    picker = RingHash(min_ring_size=64, max_ring_size=128, vnodes_per_weight=1000)
    picker.update(eps(4))
    assert 64 <= len(picker._hashes) <= 132
    victim = picker.pick(b"k1")
    assert victim is not None
    picker.stats[victim.address].ejected_at = 0.0
    other = picker.pick(b"k1")
    assert other is not None and other != victim
    for ep in picker.endpoints:
        picker.stats[ep.address].ejected_at = 0.0
    assert picker.pick(b"k1") is None


def test_ring_hash_weights_shift_share() -> None:
    picker = RingHash()
    picker.update(eps(2, [1, 3]))
    share = Counter(owners(picker))
    assert 2.2 < share["10.0.0.1:80"] / share["10.0.0.0:80"] < 4.0


@given(n=st.integers(2, 8), drop=st.integers(0, 7))
@settings(max_examples=25, deadline=None)
def test_ring_hash_stability_property(n: int, drop: int) -> None:
    drop %= n
    endpoints = eps(n)
    # Small enough that the ring-size floor never forces a rescale (see RingHash).
    picker = RingHash(min_ring_size=256)
    picker.update(endpoints)
    keys = KEYS[:2000]
    before = [picker.pick(k) for k in keys]
    picker.update(endpoints[:drop] + endpoints[drop + 1 :])
    after = [picker.pick(k) for k in keys]
    for x, y in zip(before, after, strict=True):
        assert x == y or x == endpoints[drop]


# -- weighted -------------------------------------------------------------------------
def test_weighted_is_exact_and_smooth() -> None:
    picker = Weighted()
    a, b, c = eps(3, [5, 1, 1])
    picker.update([a, b, c])
    seq = [picker.pick() for _ in range(7)]
    assert Counter(seq) == {a: 5, b: 1, c: 1}
    # Smooth: the heavy endpoint never runs more than 3 picks in a row (5,1,1 -> a a b a c a a).
    run = longest = 0
    for ep in seq * 2:
        run = run + 1 if ep == a else 0
        longest = max(longest, run)
    assert longest <= 4
    picker.stats[a.address].ejected_at = 0.0
    assert Counter(picker.pick() for _ in range(10)) == {b: 5, c: 5}


# -- outlier detection ------------------------------------------------------------------
def feed(balancer: Balancer, address: str, ok: int, failed: int) -> None:
    stats = balancer.stats[address]
    for _ in range(ok):
        stats.started()
        stats.finished(True)
    for _ in range(failed):
        stats.started()
        stats.finished(False)


def test_failure_percentage_ejects_then_unejects_after_base_time() -> None:
    cfg = OutlierDetection(
        interval=10,
        base_ejection_time=30,
        max_ejection_percent=50,
        failure_percentage=FailurePercentageEjection(
            threshold=50, minimum_hosts=3, request_volume=10
        ),
    )
    balancer = Balancer("round_robin", outlier_detection=cfg)
    balancer.update(eps(4))
    bad = "10.0.0.3:80"
    for ep in balancer.endpoints:
        feed(balancer, ep.address, 20 if ep.address != bad else 5, 0 if ep.address != bad else 20)
    result = balancer.tick(now=10)
    assert result.ejected == [bad]
    assert all(balancer.pick() is not None and balancer.pick().address != bad for _ in range(20))  # type: ignore[union-attr]
    assert balancer.tick(now=20).unejected == []
    assert balancer.tick(now=39).unejected == []
    assert balancer.tick(now=40).unejected == [bad]
    assert not balancer.stats[bad].ejected


def test_ejection_time_grows_with_repeats_and_is_capped() -> None:
    cfg = OutlierDetection(
        interval=10,
        base_ejection_time=30,
        max_ejection_time=50,
        max_ejection_percent=50,
        failure_percentage=FailurePercentageEjection(
            threshold=50, minimum_hosts=2, request_volume=5
        ),
    )
    balancer = Balancer("round_robin", outlier_detection=cfg)
    balancer.update(eps(2))
    bad = "10.0.0.1:80"
    now = 0.0

    def round_(now: float) -> list[str]:
        feed(balancer, "10.0.0.0:80", 10, 0)
        feed(balancer, bad, 0, 10)
        return balancer.tick(now).ejected

    assert round_(now) == [bad]
    assert balancer.stats[bad].ejection_multiplier == 1
    assert balancer.tick(30).unejected == [bad]  # 30 s = base * 1
    assert round_(40) == [bad]
    assert balancer.stats[bad].ejection_multiplier == 2
    assert balancer.tick(89).unejected == []  # base * 2 = 60 capped at 50 -> 90
    assert balancer.tick(90).unejected == [bad]
    # Healthy intervals decay the multiplier one step each.
    for t in (100, 110):
        feed(balancer, bad, 10, 0)
        balancer.tick(t)
    assert balancer.stats[bad].ejection_multiplier == 0


def test_success_rate_ejects_the_low_outlier_only() -> None:
    cfg = OutlierDetection(
        max_ejection_percent=50,
        success_rate=SuccessRateEjection(stdev_factor=1000, minimum_hosts=5, request_volume=100),
    )
    balancer = Balancer("round_robin", outlier_detection=cfg)
    balancer.update(eps(6))
    for i, ep in enumerate(balancer.endpoints):
        feed(balancer, ep.address, 100 if i else 40, 0 if i else 60)
    assert balancer.tick(1).ejected == ["10.0.0.0:80"]


def test_minimum_hosts_and_request_volume_gate_ejection() -> None:
    cfg = OutlierDetection(
        max_ejection_percent=100,
        failure_percentage=FailurePercentageEjection(
            threshold=10, minimum_hosts=3, request_volume=50
        ),
        success_rate=SuccessRateEjection(minimum_hosts=3, request_volume=50),
    )
    balancer = Balancer("round_robin", outlier_detection=cfg)
    balancer.update(eps(3))
    for ep in balancer.endpoints:
        feed(balancer, ep.address, 0, 49)  # below request_volume
    assert balancer.tick(1).ejected == []
    balancer.update(eps(2))
    for ep in balancer.endpoints:
        feed(balancer, ep.address, 0, 100)  # enough volume, too few hosts
    assert balancer.tick(2).ejected == []


def test_no_algorithm_configured_never_ejects() -> None:
    balancer = Balancer("round_robin", outlier_detection=OutlierDetection())
    balancer.update(eps(3))
    for ep in balancer.endpoints:
        feed(balancer, ep.address, 0, 1000)
    assert balancer.tick(1).ejected == []


@given(
    failures=st.lists(st.integers(0, 100), min_size=1, max_size=20),
    max_pct=st.integers(0, 100),
    rounds=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
@settings(max_examples=200, deadline=None)
def test_ejection_never_exceeds_max_ejection_percent(
    failures: list[int], max_pct: int, rounds: int, seed: int
) -> None:
    cfg = OutlierDetection(
        base_ejection_time=100,
        max_ejection_percent=max_pct,
        failure_percentage=FailurePercentageEjection(
            threshold=20, minimum_hosts=1, request_volume=10
        ),
        success_rate=SuccessRateEjection(stdev_factor=500, minimum_hosts=2, request_volume=10),
    )
    balancer = Balancer("round_robin", outlier_detection=cfg, rng=random.Random(seed))
    endpoints = (
        eps(len(failures))
        if len(failures) <= 9
        else [Endpoint(f"h{i}:80") for i in range(len(failures))]
    )
    balancer.update(endpoints)
    for r in range(rounds):
        for ep, failed in zip(endpoints, failures, strict=True):
            feed(balancer, ep.address, 100 - failed, failed)
        balancer.tick(float(r))
        ejected = sum(1 for s in balancer.stats.values() if s.ejected)
        assert ejected * 100 <= max_pct * len(endpoints)

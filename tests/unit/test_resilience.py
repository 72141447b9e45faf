"""Retry, hedging and retry-throttling decisions (gRFC A6), with explicit time and randomness."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2mesh import Code
from h2mesh.resilience import (
    HedgingPolicy,
    HedgingState,
    HedgingVerdict,
    RetryPolicy,
    RetryState,
    RetryThrottle,
    parse_pushback,
)


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_pushback_parsing() -> None:
    assert parse_pushback(None) is None
    assert parse_pushback("250") == 0.25
    assert parse_pushback(b"0") == 0.0
    assert parse_pushback("-1") is False
    assert parse_pushback("soon") is False


def test_policy_validation_and_attempt_cap() -> None:
    assert RetryPolicy(max_attempts=9).attempts == 5
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=1)
    with pytest.raises(ValueError):
        RetryPolicy(retryable_codes=frozenset({Code.OK}))
    with pytest.raises(ValueError):
        HedgingPolicy(hedging_delay=-1)


def test_backoff_is_exponential_capped_with_full_jitter() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.1, max_backoff=0.3, backoff_multiplier=2)
    state = RetryState(policy, rng=FixedRandom(0.0))  # jitter draws 0 -> the full backoff
    delays = [state.on_failure(Code.UNAVAILABLE).delay for _ in range(4)]
    assert delays == pytest.approx([0.1, 0.2, 0.3, 0.3])
    last = state.on_failure(Code.UNAVAILABLE)
    assert not last.retry and "5 attempts" in last.reason
    jittered = RetryState(policy, rng=FixedRandom(0.5)).on_failure(Code.UNAVAILABLE)
    assert jittered.delay == pytest.approx(0.05)


def test_non_retryable_code_and_committed_response_stop() -> None:
    state = RetryState(RetryPolicy())
    assert not state.on_failure(Code.INVALID_ARGUMENT).retry
    assert not state.on_failure(Code.UNAVAILABLE, committed=True).retry
    assert state.on_failure(Code.UNAVAILABLE).retry


def test_pushback_sets_the_delay_and_resets_backoff() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.1, max_backoff=10, backoff_multiplier=3)
    state = RetryState(policy, rng=FixedRandom(0.0))
    assert state.on_failure(Code.UNAVAILABLE).delay == pytest.approx(0.1)
    assert state.on_failure(Code.UNAVAILABLE, pushback="1500").delay == pytest.approx(1.5)
    assert state.on_failure(Code.UNAVAILABLE).delay == pytest.approx(0.1)
    stop = state.on_failure(Code.UNAVAILABLE, pushback="-5")
    assert not stop.retry and "server" in stop.reason


def test_retry_respects_deadline() -> None:
    state = RetryState(RetryPolicy(initial_backoff=1.0), rng=FixedRandom(0.0))
    decision = state.on_failure(Code.UNAVAILABLE, time_remaining=0.5)
    assert not decision.retry and "deadline" in decision.reason


def test_throttle_blocks_retries_after_failures_and_recovers() -> None:
    throttle = RetryThrottle(max_tokens=4, token_ratio=0.5)
    policy = RetryPolicy(max_attempts=5)
    assert RetryState(policy, throttle=throttle).on_failure(Code.UNAVAILABLE).retry  # 3 tokens
    decision = RetryState(policy, throttle=throttle).on_failure(Code.UNAVAILABLE)  # 2 tokens
    assert not decision.retry and "throttled" in decision.reason
    for _ in range(2):
        RetryState(policy, throttle=throttle).on_success()
    assert throttle.tokens == 3 and throttle.allows_retry


@given(
    max_tokens=st.floats(0.5, 1000),
    ratio=st.floats(0.001, 5),
    events=st.lists(st.booleans(), max_size=300),
)
@settings(max_examples=200, deadline=None)
def test_token_bucket_stays_within_bounds(
    max_tokens: float, ratio: float, events: list[bool]
) -> None:
    throttle = RetryThrottle(max_tokens, ratio)
    for ok in events:
        if ok:
            throttle.record_success()
        else:
            throttle.record_failure()
        assert 0 <= throttle.tokens <= throttle.max_tokens
        assert throttle.allows_retry == (throttle.tokens > throttle.max_tokens / 2)


def test_hedging_sends_on_delay_and_commits_first_success() -> None:
    state = HedgingState(HedgingPolicy(max_attempts=3, hedging_delay=0.1))
    assert state.due(0.0)
    assert state.sent(0.0) == 1
    assert not state.due(0.05)
    assert state.due(0.1)
    assert state.sent(0.1) == 2
    assert state.next_send_at() == pytest.approx(0.2)
    outcome = state.on_result(2, Code.OK, now=0.15)
    assert outcome.verdict is HedgingVerdict.COMMIT and outcome.attempt == 2
    assert state.next_send_at() is None
    assert state.on_result(1, Code.OK, now=0.2).verdict is HedgingVerdict.WAIT


def test_hedging_non_fatal_releases_next_and_fatal_fails() -> None:
    state = HedgingState(HedgingPolicy(max_attempts=3, hedging_delay=5.0))
    state.sent(0.0)
    assert state.on_result(1, Code.UNAVAILABLE, now=1.0).verdict is HedgingVerdict.WAIT
    assert state.due(1.0)  # at once, not after the 5 s delay
    state.sent(1.0)
    outcome = state.on_result(2, Code.PERMISSION_DENIED, now=1.5)
    assert outcome.verdict is HedgingVerdict.FAIL and outcome.code is Code.PERMISSION_DENIED


def test_hedging_exhausted_fails_with_last_code_and_pushback_stops() -> None:
    state = HedgingState(HedgingPolicy(max_attempts=2, hedging_delay=0.0))
    state.sent(0.0)
    state.sent(0.0)
    assert state.on_result(1, Code.UNAVAILABLE, now=0.1).verdict is HedgingVerdict.WAIT
    assert state.on_result(2, Code.UNAVAILABLE, now=0.2).verdict is HedgingVerdict.FAIL

    pushed = HedgingState(HedgingPolicy(max_attempts=4, hedging_delay=0.0))
    pushed.sent(0.0)
    assert pushed.on_result(1, Code.UNAVAILABLE, now=0.1, pushback="-1").verdict is (
        HedgingVerdict.FAIL
    )
    delayed = HedgingState(HedgingPolicy(max_attempts=4, hedging_delay=0.0))
    delayed.sent(0.0)
    delayed.on_result(1, Code.UNAVAILABLE, now=1.0, pushback="300")
    assert delayed.next_send_at() == pytest.approx(1.3)


def test_hedging_is_throttled() -> None:
    throttle = RetryThrottle(max_tokens=2, token_ratio=0.1)
    state = HedgingState(HedgingPolicy(max_attempts=3, hedging_delay=0.0), throttle=throttle)
    state.sent(0.0)
    state.on_result(1, Code.UNAVAILABLE, now=0.0)  # tokens 1 -> not above 1: no more hedges
    assert state.next_send_at() is None and state.done

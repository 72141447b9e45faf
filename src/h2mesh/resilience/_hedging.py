"""Hedging policy (gRFC A6): send extra copies of a call and keep the first good answer.

``HedgingState`` follows one call: the channel asks ``next_send_at()`` when to send the
next copy, tells it ``sent(now)`` when it does, and reports each attempt's outcome with
``on_result``; the answer says whether to commit to an attempt, fail the call, or keep
waiting. Time is whatever the caller passes as ``now``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .._errors import Code
from ._retry import MAX_ATTEMPTS_CAP, parse_pushback
from ._throttle import RetryThrottle

__all__ = ["HedgingOutcome", "HedgingPolicy", "HedgingState", "HedgingVerdict"]


@dataclass(frozen=True, slots=True)
class HedgingPolicy:
    """Send up to ``max_attempts`` copies, ``hedging_delay`` seconds apart. A copy failing
    with a code in ``non_fatal_codes`` lets the next copy go at once; any other failure
    ends the call."""

    max_attempts: int = 2
    hedging_delay: float = 0.05
    non_fatal_codes: frozenset[Code] = frozenset({Code.UNAVAILABLE})

    def __post_init__(self) -> None:
        if self.max_attempts < 2:
            raise ValueError("max_attempts must be >= 2")
        if self.hedging_delay < 0:
            raise ValueError("hedging_delay must be >= 0")
        if Code.OK in self.non_fatal_codes:
            raise ValueError("non_fatal_codes must not contain OK")

    @property
    def attempts(self) -> int:
        return min(self.max_attempts, MAX_ATTEMPTS_CAP)


class HedgingVerdict(enum.Enum):
    COMMIT = "commit"  # pass this attempt's response on; cancel the others
    FAIL = "fail"  # end the call with this attempt's status; cancel the others
    WAIT = "wait"  # keep waiting for the attempts in flight / the next send


@dataclass(frozen=True, slots=True)
class HedgingOutcome:
    verdict: HedgingVerdict
    attempt: int
    code: Code


class HedgingState:
    """The hedging bookkeeping of one call."""

    def __init__(self, policy: HedgingPolicy, *, throttle: RetryThrottle | None = None) -> None:
        self.policy = policy
        self.throttle = throttle
        self.sent_count = 0
        self.in_flight: set[int] = set()
        self._next_at: float | None = None
        self._stopped = False  # no more copies (pushback said so, or a final outcome)
        self.done = False

    def next_send_at(self) -> float | None:
        """When the next copy should go (``None``: no more copies will be sent)."""
        if self.done or self._stopped or self.sent_count >= self.policy.attempts:
            return None
        if self.sent_count and self.throttle is not None and not self.throttle.allows_retry:
            return None
        if self.sent_count == 0:
            return float("-inf")
        return self._next_at

    def due(self, now: float) -> bool:
        at = self.next_send_at()
        return at is not None and now >= at

    def sent(self, now: float) -> int:
        """Record that a copy went out at ``now``; returns its attempt number (1-based)."""
        self.sent_count += 1
        self.in_flight.add(self.sent_count)
        self._next_at = now + self.policy.hedging_delay
        return self.sent_count

    def on_result(
        self, attempt: int, code: Code, *, now: float, pushback: str | bytes | None = None
    ) -> HedgingOutcome:
        """Decide after attempt ``attempt`` ended with ``code`` (``OK`` or response headers
        received count as success: the call commits to that attempt)."""
        self.in_flight.discard(attempt)
        if self.done:
            return HedgingOutcome(HedgingVerdict.WAIT, attempt, code)
        if code == Code.OK:
            if self.throttle is not None:
                self.throttle.record_success()
            self.done = True
            return HedgingOutcome(HedgingVerdict.COMMIT, attempt, code)
        non_fatal = code in self.policy.non_fatal_codes
        if self.throttle is not None and (non_fatal or pushback is not None):
            self.throttle.record_failure()
        if not non_fatal:
            self.done = True
            return HedgingOutcome(HedgingVerdict.FAIL, attempt, code)
        pushed = parse_pushback(pushback)
        if pushed is False:
            self._stopped = True
        elif isinstance(pushed, float):
            self._next_at = now + pushed
        else:
            self._next_at = now  # a non-fatal failure releases the next copy at once
        if not self.in_flight and self.next_send_at() is None:
            self.done = True
            return HedgingOutcome(HedgingVerdict.FAIL, attempt, code)
        return HedgingOutcome(HedgingVerdict.WAIT, attempt, code)

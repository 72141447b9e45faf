"""Retry policy (gRFC A6): when to try a failed call again, and after how long.

``RetryPolicy`` is the configuration; ``RetryState`` follows one call's attempts and
answers, after each failed attempt, whether to retry and after which delay. The random
source is injected, and the clock is the caller's: pass ``time_remaining`` so a retry
that cannot finish before the deadline is not started.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from .._errors import Code
from ._throttle import RetryThrottle

__all__ = ["MAX_ATTEMPTS_CAP", "RetryDecision", "RetryPolicy", "RetryState", "parse_pushback"]

#: A6 caps attempts at 5 whatever the configuration says.
MAX_ATTEMPTS_CAP: Final = 5


def parse_pushback(value: str | bytes | None) -> float | bool | None:
    """Read ``grpc-retry-pushback-ms``: seconds to wait, ``None`` if absent, ``False`` for
    "do not retry" (a negative or unparseable value)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    value = value.strip()
    if not value.isdigit():
        return False
    return int(value) / 1000.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a method is retried. ``jitter`` 1.0 is A6's full jitter: the n-th retry waits
    ``uniform(0, min(initial_backoff * multiplier**(n-1), max_backoff))``; 0 waits the
    full backoff."""

    max_attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 1.0
    backoff_multiplier: float = 2.0
    retryable_codes: frozenset[Code] = frozenset({Code.UNAVAILABLE})
    jitter: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 2:
            raise ValueError("max_attempts must be >= 2 (1 would never retry)")
        if self.initial_backoff <= 0 or self.max_backoff <= 0:
            raise ValueError("initial_backoff and max_backoff must be > 0")
        if self.backoff_multiplier <= 0:
            raise ValueError("backoff_multiplier must be > 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within 0..1")
        if not self.retryable_codes or Code.OK in self.retryable_codes:
            raise ValueError("retryable_codes must be non-empty and must not contain OK")

    @property
    def attempts(self) -> int:
        """``max_attempts`` after A6's cap."""
        return min(self.max_attempts, MAX_ATTEMPTS_CAP)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after an attempt: ``retry`` after ``delay`` seconds, or stop (``reason``)."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


class RetryState:
    """The retry bookkeeping of one call."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        throttle: RetryThrottle | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.throttle = throttle
        self.rng = rng if rng is not None else random.Random()
        self.attempts = 1  # the first attempt is under way when the state is made
        self._backoff_exponent = 0

    def _backoff(self) -> float:
        p = self.policy
        ceiling = min(
            p.initial_backoff * p.backoff_multiplier**self._backoff_exponent, p.max_backoff
        )
        self._backoff_exponent += 1
        return ceiling * (1.0 - p.jitter * self.rng.random())

    def on_success(self) -> None:
        if self.throttle is not None:
            self.throttle.record_success()

    def on_failure(
        self,
        code: Code,
        *,
        pushback: str | bytes | None = None,
        committed: bool = False,
        time_remaining: float | None = None,
    ) -> RetryDecision:
        """Decide after attempt ``attempts`` failed with ``code``.

        ``committed`` is true once the response has been passed on to the caller (headers
        or a message received), after which A6 forbids retrying.
        """
        pushed = parse_pushback(pushback)
        retryable = code in self.policy.retryable_codes
        if self.throttle is not None and (retryable or pushback is not None):
            self.throttle.record_failure()
        if not retryable:
            return RetryDecision(False, reason=f"{code.name} is not retryable")
        if committed:
            return RetryDecision(False, reason="the response was already committed")
        if pushed is False:
            return RetryDecision(False, reason="the server asked not to retry")
        if self.attempts >= self.policy.attempts:
            return RetryDecision(False, reason=f"{self.attempts} attempts made")
        if self.throttle is not None and not self.throttle.allows_retry:
            return RetryDecision(False, reason="retries are throttled")
        if isinstance(pushed, float):
            delay = pushed
            self._backoff_exponent = 0  # the next backoff starts over after pushback
        else:
            delay = self._backoff()
        if time_remaining is not None and delay >= time_remaining:
            return RetryDecision(False, reason="the deadline would pass before the retry")
        self.attempts += 1
        return RetryDecision(True, delay=delay)

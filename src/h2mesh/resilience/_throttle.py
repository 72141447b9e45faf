"""Retry throttling (gRFC A6): a token bucket shared by all calls to one server."""

from __future__ import annotations

__all__ = ["RetryThrottle"]


class RetryThrottle:
    """Stops retries and hedges while too many calls to a server fail.

    Tokens start at ``max_tokens``. Each failed call (a retryable or non-fatal status, or
    server pushback) takes one token; each success adds ``token_ratio``; the count stays
    within ``0..max_tokens``. Retries and hedges are allowed only while the count is above
    ``max_tokens / 2``.
    """

    __slots__ = ("max_tokens", "token_ratio", "tokens")

    def __init__(self, max_tokens: float = 10.0, token_ratio: float = 0.1) -> None:
        if not 0 < max_tokens <= 1000:
            raise ValueError("max_tokens must be within (0, 1000]")
        if token_ratio <= 0:
            raise ValueError("token_ratio must be > 0")
        self.max_tokens = float(max_tokens)
        # A6 keeps three decimal places of the ratio.
        self.token_ratio = round(token_ratio, 3) or 0.001
        self.tokens = self.max_tokens

    @property
    def allows_retry(self) -> bool:
        return self.tokens > self.max_tokens / 2

    def record_failure(self) -> None:
        self.tokens = max(self.tokens - 1.0, 0.0)

    def record_success(self) -> None:
        self.tokens = min(self.tokens + self.token_ratio, self.max_tokens)

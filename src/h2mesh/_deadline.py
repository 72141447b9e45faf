"""The deadline of the RPC being served, carried across awaits by a context variable.

A handler's task sets it; a client call made from inside the handler reads it, so the
outgoing call never outlives the incoming one (deadline propagation).
"""

from __future__ import annotations

import contextvars
import time

current_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "h2mesh_deadline", default=None
)


def effective_timeout(timeout: float | None) -> float | None:
    """``timeout`` shortened to what is left of the inherited deadline, if any."""
    deadline = current_deadline.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if timeout is None or remaining < timeout:
        return remaining
    return timeout

"""The bytes queued for peers across many connections (one server's), and who waits for room.

Each HTTP/2 connection counts the body bytes it has handed to its engine and the engine
has not yet framed (they stay queued while the peer's flow-control window is shut) into
its own ``queued`` and into the budget it shares with the other connections. A sender
finds room when its connection is under its own limit and the budget under its limit;
a connection with nothing queued always has room for one more write, so one peer that
never reads cannot stall another. Connections whose senders wait for the budget are
woken first come, first served when room comes back.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol


class _Waiting(Protocol):
    def wake_sender(self) -> None: ...


class SendBudget:
    """Queued body bytes shared by connections, with a limit above which senders wait."""

    __slots__ = ("limit", "queued", "waiting")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"send buffer limit must be at least 1 byte, not {limit}")
        self.limit = limit
        self.queued = 0
        #: Connections with a sender waiting for room in this budget, in order (made for
        #: the first: each client connection has a budget of its own, seldom waited for).
        self.waiting: deque[_Waiting] | None = None

    @property
    def full(self) -> bool:
        return self.queued >= self.limit

    def wait(self, conn: _Waiting) -> None:
        """Queue ``conn`` to be woken when room comes back (once, however often asked)."""
        waiting = self.waiting
        if waiting is None:
            waiting = self.waiting = deque()
        if conn not in waiting:
            waiting.append(conn)

    def forget(self, conn: _Waiting) -> None:
        """``conn`` no longer waits (it closed, or its senders went away)."""
        waiting = self.waiting
        if waiting and conn in waiting:
            waiting.remove(conn)

    def release(self) -> None:
        """Wake the waiting connections in the order they came, while there is room.

        Each one woken checks for room again when it runs and, finding none, queues up
        again behind those still waiting.
        """
        waiting = self.waiting
        while waiting and self.queued < self.limit:
            waiting.popleft().wake_sender()

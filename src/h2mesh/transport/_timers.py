"""The periodic checks of many connections on a few event-loop timers.

Each connection checks its idle timeout, keepalive and stalled streams every so often.
A loop timer each would cost every idle connection about 0.8 KiB (the handle, its
arguments, libuv's timer); instead the connections of one event loop share a
``TimerWheel``: a connection due ``delay`` seconds from now joins the *slot* that ends
at the next multiple of ``slot_width(delay)`` after that, and one loop timer per slot
calls back all its connections. A check thus runs up to one slot width late (at most
``MAX_SLOT`` seconds, a quarter of the delay if that is less), never early.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Protocol

#: The widest slot, in seconds: how late a connection's check may run.
MAX_SLOT = 1.0


class Ticking(Protocol):
    def on_timer(self) -> None: ...


def slot_width(delay: float) -> float:
    """The slot width for checks every ``delay`` seconds."""
    return min(MAX_SLOT, delay / 4)


class TimerWheel:
    """The pending checks of one event loop's connections, grouped by slot."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        # Slot end (loop time) -> the connections due then, in the order they joined.
        self._slots: dict[float, dict[Ticking, None]] = {}

    def schedule(
        self, loop: asyncio.AbstractEventLoop, who: Ticking, delay: float
    ) -> dict[Ticking, None]:
        """Call ``who.on_timer()`` in ``delay`` seconds (up to one slot width later).

        Returns the slot: ``slot.pop(who, None)`` cancels the call.
        """
        width = slot_width(delay)
        end = loop.time() + delay
        if width > 0:
            end = math.ceil(end / width) * width
        slot = self._slots.get(end)
        if slot is None:
            slot = self._slots[end] = {}
            loop.call_at(end, self._fire, loop, end)
        slot[who] = None
        return slot

    def _fire(self, loop: asyncio.AbstractEventLoop, end: float) -> None:
        slot = self._slots.pop(end, None)
        # Taken one at a time: a check may close (and so cancel) another of the slot.
        while slot:
            who, _ = slot.popitem()
            # One connection's failure must not cost the others their checks.
            try:
                who.on_timer()
            except Exception as exc:
                loop.call_exception_handler(
                    {"message": "connection timer failed", "exception": exc, "protocol": who}
                )


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerWheel] = (
    weakref.WeakKeyDictionary()
)


def wheel_of(loop: asyncio.AbstractEventLoop) -> TimerWheel:
    """The wheel shared by the connections of ``loop``."""
    wheel = _wheels.get(loop)
    if wheel is None:
        wheel = _wheels[loop] = TimerWheel()
    return wheel

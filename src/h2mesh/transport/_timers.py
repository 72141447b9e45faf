"""The periodic checks of many connections, and the deadlines of calls, on a few
event-loop timers.

Each connection checks its idle timeout, keepalive and stalled streams every so often.
A loop timer each would cost every idle connection about 0.8 KiB (the handle, its
arguments, libuv's timer); instead the connections of one event loop share a
``TimerWheel``: a connection due ``delay`` seconds from now joins the *slot* that ends
at the next multiple of ``slot_width(delay)`` after that, and one loop timer per slot
calls back all its connections. A check thus runs up to one slot width late (at most
``MAX_SLOT`` seconds, a quarter of the delay if that is less), never early.

A call's deadline uses the same wheel with narrower slots, ``deadline_width(timeout)``:
at most ``MAX_DEADLINE_SLOT`` (50 ms) late, a sixteenth of the timeout if that is less.
Joining a slot is a dict insert and leaving it a pop: about 2,800 instructions per call
under callgrind, where a loop timer of its own (``call_at`` and ``cancel``) cost 7,300.

"Never early" and "late by at most the width" hold for the time the wheel asks of the
loop (``call_at(end)``, ``due <= end <= due + width``); the loop's own clock resolution
comes on top, as it does for any ``call_at``: uvloop counts milliseconds and rounds a
delay to the nearest one.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Protocol

#: The widest slot, in seconds: how late a connection's check may run.
MAX_SLOT = 1.0
#: The widest slot of a deadline, in seconds: how late a call may be cancelled.
MAX_DEADLINE_SLOT = 0.05
# Slots narrower than this (in seconds) are not worth sharing: such a time is kept as it is.
_FINEST = 1e-6


class Ticking(Protocol):
    def on_timer(self) -> None: ...


def slot_width(delay: float) -> float:
    """The slot width for checks every ``delay`` seconds."""
    return min(MAX_SLOT, delay / 4)


def deadline_width(timeout: float) -> float:
    """The slot width for a deadline ``timeout`` seconds away."""
    width = timeout / 16
    # (Not min(): the builtin costs each call with a deadline about 900 instructions.)
    return width if width < MAX_DEADLINE_SLOT else MAX_DEADLINE_SLOT


class TimerWheel:
    """The pending checks of one event loop's connections and the deadlines of its
    calls, grouped by slot."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        # Slot end (loop time) -> the connections (or calls) due then.
        self._slots: dict[float, dict[Ticking, None]] = {}

    def schedule(
        self,
        loop: asyncio.AbstractEventLoop,
        who: Ticking,
        delay: float,
        width: float | None = None,
    ) -> dict[Ticking, None]:
        """Call ``who.on_timer()`` in ``delay`` seconds, up to ``width`` seconds later
        (``slot_width(delay)`` if not given), never earlier.

        Returns the slot: ``slot.pop(who, None)`` cancels the call.
        """
        return self.schedule_at(
            loop, who, loop.time() + delay, slot_width(delay) if width is None else width
        )

    def schedule_at(
        self, loop: asyncio.AbstractEventLoop, who: Ticking, when: float, width: float
    ) -> dict[Ticking, None]:
        """Call ``who.on_timer()`` at loop time ``when``, up to ``width`` seconds later,
        never earlier. Returns the slot, as ``schedule`` does."""
        end = when
        if width >= _FINEST:
            end = math.ceil(when / width) * width
            if end < when:  # the division rounded down to a whole number
                end += width
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

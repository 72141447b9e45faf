"""The timer wheel that the connections of one event loop share for their periodic checks,
and the calls for their deadlines. Under plain asyncio and uvloop: checks run on time
within one slot width, connections due together share a slot (one loop timer), a
cancelled check does not run, and one failing check does not cost the others theirs.
With a loop clock the test moves by hand: a deadline fires never early and at most
min(50 ms, a sixteenth of its timeout) late, and so does any ``width=`` given."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable, Coroutine
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from h2mesh.transport._timers import (
    MAX_DEADLINE_SLOT,
    MAX_SLOT,
    TimerWheel,
    deadline_width,
    slot_width,
    wheel_of,
)

Run = Callable[[Coroutine[Any, Any, Any]], Any]
# Scheduling slack on a loaded machine: how much later than its bound a check may run.
SLACK = 0.25


class Ticker:
    """Records when its check ran (loop time)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fail: bool = False) -> None:
        self.loop = loop
        self.fail = fail
        self.at: float | None = None
        self.ran = asyncio.Event()

    def on_timer(self) -> None:
        self.at = self.loop.time()
        self.ran.set()
        if self.fail:
            raise RuntimeError("check failed")


def test_slot_width_is_a_quarter_of_the_delay_up_to_max_slot() -> None:
    assert slot_width(0.2) == 0.05
    assert slot_width(2.0) == 0.5
    assert slot_width(20.0) == MAX_SLOT == 1.0
    assert slot_width(300.0) == MAX_SLOT


def test_a_check_runs_after_its_delay_and_within_one_slot_width(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel()
        delay = 0.4
        tickers = [Ticker(loop) for _ in range(5)]
        started = []
        for ticker in tickers:
            started.append(loop.time())
            wheel.schedule(loop, ticker, delay)
            await asyncio.sleep(0.013)  # spread over the slot: not all due at once
        bound = delay + slot_width(delay) + SLACK
        for ticker, start in zip(tickers, started, strict=True):
            await asyncio.wait_for(ticker.ran.wait(), bound)
            assert ticker.at is not None
            # Never early (uvloop's clock has millisecond steps).
            assert ticker.at - start >= delay - 0.002
            assert ticker.at - start <= bound

    run(main())


def test_connections_due_together_share_one_slot(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel()
        tickers = [Ticker(loop) for _ in range(200)]
        slots = {id(wheel.schedule(loop, ticker, 0.2)) for ticker in tickers}
        # Scheduled within microseconds of each other: one slot of 50 ms, at most two
        # if they straddled a slot's end.
        assert len(slots) <= 2
        await asyncio.wait_for(asyncio.gather(*(t.ran.wait() for t in tickers)), 2.0)

    run(main())


def test_a_cancelled_check_does_not_run(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel()
        kept, cancelled = Ticker(loop), Ticker(loop)
        slot = wheel.schedule(loop, cancelled, 0.2)
        wheel.schedule(loop, kept, 0.4)  # due slots after the cancelled one
        slot.pop(cancelled, None)
        await asyncio.wait_for(kept.ran.wait(), 2.0)
        assert not cancelled.ran.is_set()

    run(main())


def test_a_failing_check_is_reported_and_the_others_run(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        try:
            wheel = TimerWheel()
            tickers = [Ticker(loop, fail=i == 1) for i in range(3)]
            for ticker in tickers:
                wheel.schedule(loop, ticker, 0.2)
            await asyncio.wait_for(asyncio.gather(*(t.ran.wait() for t in tickers)), 2.0)
            assert len(reported) == 1
            assert isinstance(reported[0]["exception"], RuntimeError)
            assert reported[0]["protocol"] is tickers[1]
        finally:
            loop.set_exception_handler(None)

    run(main())


def test_a_check_may_schedule_the_next_one(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = wheel_of(loop)
        assert wheel_of(loop) is wheel
        times: list[float] = []
        done = asyncio.Event()

        class Again:
            def on_timer(self) -> None:
                times.append(loop.time())
                if len(times) < 3:
                    wheel.schedule(loop, self, 0.1)
                else:
                    done.set()

        start = loop.time()
        wheel.schedule(loop, Again(), 0.1)
        await asyncio.wait_for(done.wait(), 3 * (0.1 + slot_width(0.1)) + SLACK)
        assert times[0] - start >= 0.1 - 0.002
        assert all(b - a >= 0.1 - 0.002 for a, b in itertools.pairwise(times))

    run(main())


# -- with a loop clock moved by hand ---------------------------------------------------------
class FakeLoop:
    """The part of an event loop the wheel uses: a clock that only ``advance`` moves, and
    ``call_at``, which runs each callback when the clock reaches its time, not before."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._due: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._due, (when, next(self._order), callback, args))

    def advance(self, to: float) -> None:
        """Move the clock to ``to``, running what falls due on the way at its own time."""
        while self._due and self._due[0][0] <= to:
            when, _, callback, args = heapq.heappop(self._due)
            self.now = max(self.now, when)
            callback(*args)
        self.now = max(self.now, to)

    @property
    def timers(self) -> int:
        return len(self._due)


class Deadline:
    """Records the loop time its timer fired at."""

    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop
        self.at: float | None = None

    def on_timer(self) -> None:
        assert self.at is None, "fired twice"
        self.at = self.loop.time()


def _loop(fake: FakeLoop) -> asyncio.AbstractEventLoop:
    return cast(asyncio.AbstractEventLoop, fake)


def test_deadline_width_is_a_sixteenth_of_the_timeout_up_to_50_ms() -> None:
    assert deadline_width(0.16) == 0.01
    assert deadline_width(0.8) == MAX_DEADLINE_SLOT == 0.05
    assert deadline_width(5.0) == MAX_DEADLINE_SLOT
    assert deadline_width(0.0) == 0.0


def _fires_within(now: float, delay: float, width: float | None, bound: float) -> None:
    loop = FakeLoop(now)
    deadline = Deadline(loop)
    TimerWheel().schedule(_loop(loop), deadline, delay, width=width)
    due = now + delay
    loop.advance(math.nextafter(due, -math.inf))
    assert deadline.at is None, "fired early"
    loop.advance(due + bound)
    assert deadline.at is not None, "not fired within the bound"
    assert due <= deadline.at <= due + bound


@given(
    now=st.floats(0.0, 1e7),
    timeout=st.one_of(st.floats(0.0, 2.0), st.floats(0.0, 1e5)),
)
def test_a_deadline_fires_never_early_and_at_most_its_width_late(
    now: float, timeout: float
) -> None:
    _fires_within(now, timeout, deadline_width(timeout), min(0.05, timeout / 16))


@given(now=st.floats(0.0, 1e7), delay=st.floats(0.0, 1e4))
def test_a_check_without_a_width_keeps_a_quarter_of_its_delay_up_to_max_slot(
    now: float, delay: float
) -> None:
    _fires_within(now, delay, None, min(MAX_SLOT, delay / 4))


def test_a_deadline_on_a_slot_boundary_fires_there() -> None:
    # 100.0 s is a whole number of 50 ms slots: the deadline's own slot ends on it.
    loop = FakeLoop(95.0)
    deadline = Deadline(loop)
    TimerWheel().schedule(_loop(loop), deadline, 5.0, width=deadline_width(5.0))
    loop.advance(101.0)
    assert deadline.at == 100.0


def test_deadlines_a_second_apart_share_twenty_one_loop_timers() -> None:
    loop = FakeLoop(1000.0)
    wheel = TimerWheel()
    deadlines = []
    for _ in range(1000):  # a call every millisecond, each with a 5 s deadline
        deadline = Deadline(loop)
        deadlines.append((loop.time() + 5.0, deadline))
        wheel.schedule(_loop(loop), deadline, 5.0, width=deadline_width(5.0))
        loop.advance(loop.time() + 0.001)
    assert loop.timers <= 1.0 / 0.05 + 1
    loop.advance(1010.0)
    for due, deadline in deadlines:
        assert deadline.at is not None
        assert due <= deadline.at <= due + 0.05


def test_a_deadline_its_call_ended_before_does_not_fire() -> None:
    loop = FakeLoop(10.0)
    wheel = TimerWheel()
    ended, kept = Deadline(loop), Deadline(loop)
    slot = wheel.schedule_at(_loop(loop), ended, 10.3, deadline_width(0.3))
    wheel.schedule_at(_loop(loop), kept, 10.3, deadline_width(0.3))
    slot.pop(ended, None)
    loop.advance(11.0)
    assert ended.at is None
    assert kept.at is not None

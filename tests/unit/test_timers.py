"""The timer wheel that the connections of one event loop share for their periodic checks,
under plain asyncio and uvloop: checks run on time within one slot width, connections due
together share a slot (one loop timer), a cancelled check does not run, and one failing
check does not cost the others theirs."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from typing import Any

from h2mesh.transport._timers import MAX_SLOT, TimerWheel, slot_width, wheel_of

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

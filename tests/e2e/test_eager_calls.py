"""Calls that start at once, from the transport's event callback, and get a task only if
they wait (server/_eager.py): what a handler sees must be what it sees in a task.

Over real sockets, with the h2mesh client and curl, on plain asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import msgspec
import pytest
import uvloop

from h2mesh import Channel, Code, Context, RpcError, Server, Service, rpc

Run = Callable[[Coroutine[Any, Any, Any]], Any]
VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


class Msg(msgspec.Struct):
    text: str = ""


class Probe(Service, name="test.v1.Probe"):
    def __init__(self) -> None:
        self.seen: list[object] = []  # asyncio.current_task() of each Timed call
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()
        self.cancelled = asyncio.Event()

    @rpc
    async def timed(self, req: Msg) -> Msg:
        # asyncio.timeout() needs a current task, before the call has ever waited.
        async with asyncio.timeout(5):  # noqa: ASYNC100 - the point is entering it
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0
            self.seen.append(task)
            return Msg(text=f"timed {req.text}")

    @rpc
    async def grouped(self, req: Msg) -> Msg:
        async with asyncio.TaskGroup() as tg:  # needs a current task from its first line
            child = tg.create_task(asyncio.sleep(0, result=req.text))
        return Msg(text=f"grouped {child.result()}")

    @rpc
    async def sets_var(self, req: Msg) -> Msg:
        before = VAR.get()
        VAR.set(req.text)
        await asyncio.sleep(0)  # the rest runs in a task: same context
        return Msg(text=f"{before}->{VAR.get()}")

    @rpc
    async def peek(self, req: Msg) -> Msg:
        return Msg(text=VAR.get())  # nothing leaks from earlier calls

    @rpc
    async def waits(self, req: Msg, ctx: Context) -> Msg:
        self.waiting.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return Msg(text="released")

    @rpc
    async def fails(self, req: Msg) -> Msg:
        raise RpcError(Code.FAILED_PRECONDITION, f"no {req.text}")


@pytest.fixture(params=[asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    factory = request.param

    def run_(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro, 10.0))

    return run_


@contextlib.asynccontextmanager
async def serving(probe: Probe) -> AsyncIterator[Any]:
    """A stub of ``probe`` served on a free port, through the h2mesh client."""
    async with (
        Server([probe]) as server,
        Channel(f"http://127.0.0.1:{server.port}", codec="json") as ch,
    ):
        yield ch.stub(Probe)


def test_handlers_see_a_task_and_their_own_context(run: Run) -> None:
    async def main() -> None:
        probe = Probe()
        async with serving(probe) as stub:
            assert (await stub.timed(Msg(text="a"))).text == "timed a"
            if sys.version_info < (3, 12):  # it ran at once: no Task was made for it
                assert not isinstance(probe.seen[0], asyncio.Task)
            assert (await stub.grouped(Msg(text="b"))).text == "grouped b"
            got = await asyncio.gather(*(stub.sets_var(Msg(text=str(i))) for i in range(20)))
            assert [m.text for m in got] == [f"unset->{i}" for i in range(20)]
            assert (await stub.peek(Msg())).text == "unset"
            with pytest.raises(RpcError) as err:
                await stub.fails(Msg(text="way"))
            assert err.value.code is Code.FAILED_PRECONDITION
            assert err.value.message == "no way"

    run(main())


def test_a_call_that_waits_still_meets_its_deadline_and_cancellation(run: Run) -> None:
    async def main() -> None:
        probe = Probe()
        async with serving(probe) as stub:
            with pytest.raises(RpcError) as err:
                await stub.waits(Msg(), timeout=0.3)
            assert err.value.code is Code.DEADLINE_EXCEEDED
            await asyncio.wait_for(probe.cancelled.wait(), 5.0)  # the handler heard it
            probe.cancelled.clear()
            probe.waiting.clear()
            call = asyncio.ensure_future(stub.waits(Msg()))
            await asyncio.wait_for(probe.waiting.wait(), 5.0)
            call.cancel()  # the client resets the stream: the server's task is cancelled
            await asyncio.wait_for(probe.cancelled.wait(), 5.0)
            probe.release.set()
            assert (await stub.waits(Msg())).text == "released"

    run(main())


def test_curl_calls_a_handler_that_finishes_at_once(run: Run) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is not installed (scripts/setup.sh installs it)"

    async def main() -> None:
        async with Server([Probe()]) as server:
            url = f"http://127.0.0.1:{server.port}/test.v1.Probe/Timed"
            done = await asyncio.to_thread(
                subprocess.run,
                [curl, "-sS", "--http2-prior-knowledge", "-H", "content-type: application/json",
                 "-d", '{"text":"curl"}', url],
                capture_output=True, text=True, timeout=10, check=True,
            )  # fmt: skip
            assert json.loads(done.stdout) == {"text": "timed curl"}

    run(main())

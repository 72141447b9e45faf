"""Running a call's coroutine at once, from the transport's event callback.

Most unary handlers finish without ever waiting. Such a call needs no Task: no task
object, no turn of the event loop before it starts, no second flush after it ends.
``start(loop, coro)`` runs the coroutine right away, up to its first suspension, and
makes a Task only if there is one; the Task carries on exactly where the coroutine
stopped. This is what Python 3.12's eager tasks do (used there as they are); on 3.11
it is done by hand:

- the first step runs in its own copy of the context (as a Task's would), and the
  Task made later runs in that same copy, so context variables set before the first
  suspension are still set after it and never leak into the caller's context;
- while the first step runs, ``asyncio.current_task()`` is a stand-in (``_FirstStep``)
  that forwards to the Task once there is one, so ``asyncio.timeout()``,
  ``asyncio.TaskGroup`` and ``current_task().cancel()`` work from the first line of a
  handler.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["start"]

Coro = Coroutine[Any, Any, Any]


if sys.version_info >= (3, 12):

    def start(loop: asyncio.AbstractEventLoop, coro: Coro) -> asyncio.Task[Any] | None:
        """Run ``coro`` until it first suspends; the Task that goes on from there, or None
        if it finished."""
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        return None if task.done() else task

else:
    from asyncio import tasks as _tasks
    from asyncio.tasks import _enter_task, _leave_task

    # What asyncio.current_task(loop) reads, read without the call.
    _current_tasks: dict[Any, Any] = _tasks._current_tasks  # type: ignore[attr-defined]

    def start(loop: asyncio.AbstractEventLoop, coro: Coro) -> asyncio.Task[Any] | None:
        """Run ``coro`` until it first suspends; the Task that goes on from there, or None
        if it finished."""
        if _current_tasks.get(loop) is not None:
            # Called from inside a task (in-memory transports): no stand-in can take
            # its place as the current task, so the call gets a Task of its own.
            return loop.create_task(coro)
        context = contextvars.copy_context()
        # (Its fields set here, not by an __init__: a frame less on every call's path;
        # _result and _error are set once it finishes.)
        first = _FirstStep()
        first._loop = loop
        first._coro = coro
        first._task = None
        first._cancels = 0
        first._callbacks = None
        _enter_task(loop, first)  # type: ignore[arg-type]
        try:
            yielded = context.run(coro.send, None)
        except StopIteration as stop:
            if first._callbacks is None:  # the common case, inline
                first._result = stop.value
                first._error = None
                first._coro = None  # type: ignore[assignment]
            else:
                first._finish(stop.value, None, context)
            return None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            first._finish(None, exc, context)
            if not isinstance(exc, asyncio.CancelledError):
                loop.call_exception_handler(
                    {"message": "call failed in its first step", "exception": exc}
                )
            return None
        finally:
            _leave_task(loop, first)  # type: ignore[arg-type]
        task = loop.create_task(_resume(coro, yielded), context=context)
        first._handover(task)
        return task


@types.coroutine
def _resume(coro: Coro, yielded: Any) -> Generator[Any, Any, Any]:
    """Carry on with ``coro``, suspended on ``yielded``, inside a Task."""
    try:
        yield yielded  # the Task waits for what the coroutine was waiting for
    except BaseException as exc:  # cancelled meanwhile: the coroutine hears it
        try:
            yielded = coro.throw(exc)
        except StopIteration as stop:
            return stop.value
        return (yield from _resume(coro, yielded))
    return (yield from coro)


class _FirstStep:
    """``asyncio.current_task()`` while a coroutine runs its first step (Python 3.11).

    Cancellation asked for before the Task exists is handed to it; afterwards every
    method forwards to it.
    """

    __slots__ = ("_callbacks", "_cancels", "_coro", "_error", "_loop", "_result", "_task")

    _loop: asyncio.AbstractEventLoop
    _coro: Coro
    _task: asyncio.Task[Any] | None
    _cancels: int
    _callbacks: list[tuple[Callable[[Any], object], contextvars.Context | None]] | None
    # Set once the coroutine finished (while _coro is None).
    _result: Any
    _error: BaseException | None

    def _handover(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        for _ in range(self._cancels):
            task.cancel()
        if self._callbacks:
            for fn, context in self._callbacks:
                task.add_done_callback(fn, context=context)
            self._callbacks = None

    def _finish(
        self, result: Any, error: BaseException | None, context: contextvars.Context
    ) -> None:
        self._result, self._error = result, error
        if self._callbacks:
            for fn, cb_context in self._callbacks:
                self._loop.call_soon(fn, self, context=cb_context or context)
            self._callbacks = None
        self._coro = None  # type: ignore[assignment]

    # -- the part of asyncio.Task that code may use on its current task ---------------
    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def get_coro(self) -> Coro:
        return self._coro

    def get_name(self) -> str:
        return "h2mesh-call" if self._task is None else self._task.get_name()

    def cancel(self, msg: Any = None) -> bool:
        if self._task is not None:
            return self._task.cancel(msg)
        if self._coro is None:
            return False
        self._cancels += 1
        return True

    def cancelling(self) -> int:
        return self._cancels if self._task is None else self._task.cancelling()

    def uncancel(self) -> int:
        if self._task is not None:
            return self._task.uncancel()
        if self._cancels:
            self._cancels -= 1
        return self._cancels

    def done(self) -> bool:
        return self._coro is None if self._task is None else self._task.done()

    def cancelled(self) -> bool:
        if self._task is not None:
            return self._task.cancelled()
        return self._coro is None and isinstance(self._error, asyncio.CancelledError)

    def result(self) -> Any:
        if self._task is not None:
            return self._task.result()
        if self._coro is not None:
            raise asyncio.InvalidStateError("Result is not set.")
        if self._error is not None:
            raise self._error
        return self._result

    def exception(self) -> BaseException | None:
        if self._task is not None:
            return self._task.exception()
        if self._coro is not None:
            raise asyncio.InvalidStateError("Exception is not set.")
        return self._error

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        if self._task is not None:
            self._task.add_done_callback(fn, context=context)
        elif self._coro is None:
            self._loop.call_soon(fn, self, context=context)
        elif self._callbacks is None:
            self._callbacks = [(fn, context)]
        else:
            self._callbacks.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        if self._task is not None:
            return self._task.remove_done_callback(fn)
        callbacks = self._callbacks or []
        self._callbacks = [(f, c) for f, c in callbacks if f != fn]
        return len(callbacks) - len(self._callbacks)

    def __repr__(self) -> str:
        return f"<h2mesh call, first step of {self._coro!r}>"

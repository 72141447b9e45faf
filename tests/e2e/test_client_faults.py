"""Faults a client user runs into: servers that come back, loops that change, forks.

Real servers on 127.0.0.1 (in process, restarted on the same port), the real client.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from examples.greeter import Greeter, HelloRequest

from h2mesh import Channel, Code, RpcError, Server, SyncChannel
from h2mesh.resilience import RetryPolicy

Run = Callable[[Coroutine[Any, Any, Any]], Any]

HELLO = HelloRequest(name="x")


@pytest.fixture
def threaded_server() -> Iterator[Server]:
    """A server on a loop of its own thread, outliving the test's loops (and forks)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Server:
        server = Server([Greeter()])
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(0.1), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_retry_finds_a_restarted_server_at_once_and_resets_the_backoff(run: Run) -> None:
    async def main() -> None:
        server = Server([Greeter()])
        await server.start()
        port = server.port
        retry = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
        async with Channel(f"http://127.0.0.1:{port}", retry=retry) as ch:
            stub = ch.stub(Greeter)
            assert (await stub.say_hello(HELLO, timeout=2)).message == "Hello, x!"
            await server.stop(grace=0.1)
            for _ in range(4):  # failed connections in a row: the endpoint backs off
                with pytest.raises(RpcError) as info:
                    await stub.say_hello(HELLO, timeout=2)
                assert info.value.code is Code.UNAVAILABLE
            server = Server([Greeter()])
            await server.start(port=port)
            try:
                # The only endpoint is tried at once, not after its backoff.
                assert (await stub.say_hello(HELLO, timeout=2)).message == "Hello, x!"
                assert not ch.endpoints.down  # back in rotation
            finally:
                await server.stop(grace=0.1)
            # The success reset the backoff: the next outage starts again from 1 s.
            with pytest.raises(RpcError):
                await stub.say_hello(HELLO, timeout=2)
            loop = asyncio.get_running_loop()
            (timer,) = ch.endpoints.down.values()
            assert timer.when() - loop.time() <= 1.0

    run(main())


def test_channel_works_across_two_asyncio_runs(threaded_server: Server) -> None:
    ch = Channel(f"http://127.0.0.1:{threaded_server.port}")

    async def call() -> str:
        reply = await ch.stub(Greeter).say_hello(HELLO, timeout=2)
        return reply.message

    assert asyncio.run(call()) == "Hello, x!"
    assert asyncio.run(call()) == "Hello, x!"  # a new loop: new connections
    asyncio.run(ch.close())


def test_sync_channel_inside_a_running_loop_is_refused_with_a_clear_error(
    run: Run, threaded_server: Server
) -> None:
    with SyncChannel(f"http://127.0.0.1:{threaded_server.port}") as ch:

        async def main() -> None:
            # Blocking here would stall this loop (and deadlock a server running in it).
            with pytest.raises(RuntimeError, match="running event loop"):
                ch.stub(Greeter).say_hello(HELLO, timeout=2)

        run(main())
        assert ch.stub(Greeter).say_hello(HELLO, timeout=2).message == "Hello, x!"


@pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX")
def test_sync_channel_created_before_fork_works_in_the_child(threaded_server: Server) -> None:
    with SyncChannel(f"http://127.0.0.1:{threaded_server.port}") as ch:
        stub = ch.stub(Greeter)
        assert stub.say_hello(HELLO, timeout=2).message == "Hello, x!"
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child, as in gunicorn --preload or uWSGI workers
            code = 1
            try:
                message = ch.stub(Greeter).say_hello(HELLO, timeout=2).message
                os.write(write, message.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        deadline = time.monotonic() + 10.0
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung on its first call")
            time.sleep(0.02)
        assert os.waitstatus_to_exitcode(done[1]) == 0
        assert os.read(read, 100) == b"Hello, x!"
        os.close(read)
        # The parent's channel is untouched by the child.
        assert stub.say_hello(HELLO, timeout=2).message == "Hello, x!"

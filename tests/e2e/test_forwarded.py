"""``Context.peer`` behind a proxy: forwarding headers count only from trusted peers.

curl plays the proxy here (it connects from 127.0.0.1 and sends the headers a proxy
would add); tests/e2e/test_proxies.py does the same through real nginx and HAProxy.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import msgspec
import pytest

from h2mesh import Context, Service, rpc

from ..conftest import LiveServer


class Empty(msgspec.Struct):
    pass


class Peer(msgspec.Struct):
    host: str
    port: int
    socket_host: str


class Whoami(Service, name="test.v1.Whoami"):
    @rpc
    async def whoami(self, req: Empty, ctx: Context) -> Peer:
        return Peer(str(ctx.peer[0]), int(ctx.peer[1]), str(ctx.socket_peer[0]))


def serve(loop_kind: str, trust: str | None) -> LiveServer:
    live = LiveServer([Whoami()], loop_kind, forwarded_allow_ips=trust)
    live.start()
    return live


@pytest.fixture
def trusted(loop_kind: str) -> Iterator[LiveServer]:
    live = serve(loop_kind, "127.0.0.1,::1")
    yield live
    live.close()


@pytest.fixture
def untrusting(loop_kind: str) -> Iterator[LiveServer]:
    live = serve(loop_kind, "10.0.0.0/8")
    yield live
    live.close()


def whoami(curl: str, url: str, http: str, *headers: str) -> dict[str, object]:
    args = [curl, "-sS", http, "-H", "content-type: application/json", "-d", "{}"]
    for header in headers:
        args += ["-H", header]
    out = subprocess.run(
        [*args, f"{url}/test.v1.Whoami/Whoami"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    return dict(json.loads(out))


@pytest.mark.parametrize("http", ["--http1.1", "--http2-prior-knowledge"])
def test_trusted_proxy_sets_the_peer(curl: str, trusted: LiveServer, http: str) -> None:
    got = whoami(curl, trusted.url, http, "X-Forwarded-For: 198.51.100.1, 203.0.113.7")
    assert got == {"host": "203.0.113.7", "port": 0, "socket_host": "127.0.0.1"}
    got = whoami(curl, trusted.url, http, 'Forwarded: for="[2001:db8::5]:4711"')
    assert got == {"host": "2001:db8::5", "port": 4711, "socket_host": "127.0.0.1"}
    got = whoami(curl, trusted.url, http)
    assert got["host"] == "127.0.0.1" and got["port"] != 0


@pytest.mark.parametrize("http", ["--http1.1", "--http2-prior-knowledge"])
def test_untrusted_peer_cannot_forge_it(curl: str, untrusting: LiveServer, http: str) -> None:
    got = whoami(curl, untrusting.url, http, "X-Forwarded-For: 203.0.113.7")
    assert got["host"] == "127.0.0.1" and got["port"] != 0


async def client_app(scope: dict[str, object], receive: object, send: object) -> None:
    """A bare ASGI app that answers with ``scope["client"]``."""
    assert scope["type"] == "http"
    body = json.dumps(scope["client"]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": body})  # type: ignore[operator]


def test_hosted_asgi_app_sees_the_forwarded_client(curl: str, loop_kind: str) -> None:
    live = LiveServer([], loop_kind, app=client_app, lifespan="off")
    live.start()
    try:
        url = f"{live.url}/anything"
        args = [curl, "-sS", "-H", "X-Forwarded-For: 203.0.113.7", url]
        untrusted = json.loads(subprocess.run(args, capture_output=True, check=True).stdout)
        assert untrusted[0] == "127.0.0.1"
        assert live.server is not None
        live.server.forwarded_allow_ips = "127.0.0.1"  # as `h2mesh serve` sets it
        trusted = json.loads(subprocess.run(args, capture_output=True, check=True).stdout)
        assert trusted == ["203.0.113.7", 0]
    finally:
        live.close()


async def scheme_app(scope: dict[str, object], receive: object, send: object) -> None:
    """A bare ASGI app that answers with ``scope["scheme"]``."""
    body = str(scope["scheme"]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": body})  # type: ignore[operator]


@pytest.mark.parametrize("http", ["--http1.1", "--http2-prior-knowledge"])
def test_hosted_asgi_app_sees_the_forwarded_scheme(curl: str, loop_kind: str, http: str) -> None:
    """A TLS-terminating proxy in front says ``X-Forwarded-Proto: https`` (or
    ``Forwarded: proto=https``): the app's scope says https, but only from a trusted peer."""
    live = LiveServer([], loop_kind, app=scheme_app, lifespan="off")
    live.start()
    try:
        url = f"{live.url}/anything"

        def ask(*headers: str) -> str:
            args = [curl, "-sS", http]
            for header in headers:
                args += ["-H", header]
            out = subprocess.run([*args, url], capture_output=True, check=True, timeout=10)
            return out.stdout.decode()

        assert ask("X-Forwarded-Proto: https") == "http"  # nobody trusted yet
        assert live.server is not None
        live.server.forwarded_allow_ips = "127.0.0.1,::1"
        assert ask("X-Forwarded-Proto: https") == "https"
        assert ask("Forwarded: for=203.0.113.7;proto=https") == "https"
        assert ask() == "http"
    finally:
        live.close()

"""A hosted application behind TLS, with certificates made by openssl at test time.

ALPN picks the protocol: a client offering ``h2`` gets HTTP/2, one offering only
``http/1.1`` gets HTTP/1.1, and either way the application sees ``https`` (ASGI's
``scope["scheme"]``, WSGI's ``wsgi.url_scheme``). A typed service answers on the same
TLS port. Peers: httpx (HTTP/2 and HTTP/1.1), curl, and h2mesh's own ``Channel``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.greeter import Greeter, HelloRequest

from h2mesh import Channel, Server, server_ssl_context
from tests.conftest import require_binary
from tests.e2e.test_mtls import make_ca, make_cert

Run = Callable[[Coroutine[Any, Any, Any]], Any]
Scope = dict[str, Any]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate it signed, for localhost and 127.0.0.1."""
    require_binary("openssl")
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_cert(d, "server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth")
    return d


async def scheme_app(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with what the scope says about the request's scheme and protocol."""
    if scope["type"] != "http":
        return
    shown = {"scheme": scope["scheme"], "http_version": scope["http_version"]}
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(shown).encode()})


def wsgi_scheme_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    shown = {"scheme": environ["wsgi.url_scheme"], "protocol": environ["SERVER_PROTOCOL"]}
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(shown).encode()]


async def _serve_tls(app: Any, pki: Path, **options: Any) -> Server:
    server = Server(options.pop("services", []), app=app, **options)
    tls = server_ssl_context(str(pki / "server.pem"), str(pki / "server.key"))
    await server.start("127.0.0.1", 0, tls=tls)
    return server


def _trusting(pki: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki / "ca.pem"))


async def _curl(*args: str) -> tuple[bytes, str]:
    """Run curl; return the body and the HTTP version it used (``-w %{http_version}``)."""
    done = await asyncio.to_thread(
        subprocess.run,
        [require_binary("curl"), "-sS", "-w", "\n%{http_version}", *args],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()
    body, _, version = done.stdout.rpartition(b"\n")
    return body, version.decode()


def test_alpn_gives_an_asgi_app_http2_or_http1_and_the_https_scheme(run: Run, pki: Path) -> None:
    async def main() -> None:
        server = await _serve_tls(scheme_app, pki, services=[Greeter()])
        url = f"https://127.0.0.1:{server.port}"
        try:
            # Offering h2 (and http/1.1): HTTP/2 is chosen.
            async with httpx.AsyncClient(base_url=url, http2=True, verify=_trusting(pki)) as h2:
                r = await h2.get("/who")
                assert r.http_version == "HTTP/2"
                assert r.json() == {"scheme": "https", "http_version": "2"}
            # Offering only http/1.1: HTTP/1.1 over the same TLS port.
            async with httpx.AsyncClient(base_url=url, http2=False, verify=_trusting(pki)) as h1:
                r = await h1.get("/who")
                assert r.http_version == "HTTP/1.1"
                assert r.json() == {"scheme": "https", "http_version": "1.1"}
            # curl, verifying the server against the CA, both ways.
            cacert = str(pki / "ca.pem")
            for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
                body, used = await _curl("--cacert", cacert, flag, f"{url}/who")
                assert used == version
                assert json.loads(body) == {"scheme": "https", "http_version": version}
            # The typed service beside the application, on the same TLS port.
            async with Channel(url, ssl_context=_trusting(pki)) as channel:
                reply = await channel.stub(Greeter).say_hello(HelloRequest(name="tls"), timeout=5)
                assert reply.message == "Hello, tls!"
            body, used = await _curl(
                "--cacert", cacert, "--http1.1", "-H", "content-type: application/json",
                "-d", '{"name": "h1"}', f"{url}/demo.v1.Greeter/SayHello",
            )  # fmt: skip
            assert used == "1.1"
            assert json.loads(body) == {"message": "Hello, h1!"}
        finally:
            await server.stop(1.0)

    run(main())


@pytest.mark.parametrize("h2", [True, False], ids=["h2", "h1"])
def test_a_wsgi_app_behind_tls_sees_the_https_url_scheme(run: Run, pki: Path, h2: bool) -> None:
    async def main() -> None:
        server = await _serve_tls(wsgi_scheme_app, pki)
        try:
            async with httpx.AsyncClient(http2=h2, http1=not h2, verify=_trusting(pki)) as client:
                r = await client.get(f"https://127.0.0.1:{server.port}/who")
            assert r.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
            assert r.json() == {"scheme": "https", "protocol": "HTTP/2" if h2 else "HTTP/1.1"}
        finally:
            await server.stop(1.0)

    run(main())

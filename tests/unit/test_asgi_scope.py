"""The ASGI scope and the application kind, built without sockets."""

from __future__ import annotations

from typing import Any

import pytest

from h2mesh.server._app import detect_interface, host_app
from h2mesh.server._asgi import http_scope


def _h2_headers(*extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", b"/caf%C3%A9/x%2Fy?a=1&b=%20"),
        *extra,
    ]


def test_pseudo_headers_become_scope_keys() -> None:
    scope = http_scope(_h2_headers(), "2", ("10.0.0.1", 5000, 0, 0), ("::1", 443, 0, 0))
    assert scope["method"] == "POST"
    assert scope["scheme"] == "https"
    assert scope["path"] == "/café/x/y"
    assert scope["raw_path"] == b"/caf%C3%A9/x%2Fy"
    assert scope["query_string"] == b"a=1&b=%20"
    assert scope["client"] == ("10.0.0.1", 5000)
    assert scope["server"] == ("::1", 443)
    assert scope["headers"] == [(b"host", b"example.com")]
    assert scope["extensions"] == {}


def test_http2_cookie_fields_are_joined_and_host_is_kept() -> None:
    headers = _h2_headers((b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2"), (b"host", b"h"))
    scope = http_scope(headers, "2", None, None)
    assert scope["headers"] == [(b"cookie", b"a=1; b=2"), (b"x", b"y"), (b"host", b"h")]
    assert scope["client"] is None


def test_trailers_extension_for_streams_that_carry_them_or_te_trailers() -> None:
    assert (
        "http.response.trailers"
        in http_scope(_h2_headers(), "2", None, None, trailers=True)["extensions"]
    )
    te = http_scope(_h2_headers((b"te", b"Trailers")), "1.1", None, None)
    assert "http.response.trailers" in te["extensions"]


def test_state_is_a_shallow_copy() -> None:
    state: dict[str, Any] = {"pool": object()}
    scope = http_scope(_h2_headers(), "2", None, None, state=state)
    scope["state"]["new"] = 1
    assert "new" not in state and scope["state"]["pool"] is state["pool"]


class _AsgiObject:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


async def _asgi_function(scope: Any, receive: Any, send: Any) -> None: ...


def _wsgi_function(environ: Any, start_response: Any) -> list[bytes]:
    return []


def test_interfaces_are_told_apart() -> None:
    assert detect_interface(_AsgiObject()) == "asgi"
    assert detect_interface(_asgi_function) == "asgi"
    assert detect_interface(_wsgi_function) == "wsgi"
    with pytest.raises(TypeError):
        detect_interface(42)


def test_a_forced_interface_the_app_cannot_be_called_as_is_refused() -> None:
    from h2mesh import Server

    with pytest.raises(TypeError, match="interface=wsgi, but it is an ASGI application"):
        Server([], app=_AsgiObject(), interface="wsgi")
    with pytest.raises(TypeError, match=r"interface=asgi, but it takes \(environ, start"):
        Server([], app=_wsgi_function, interface="asgi")
    # What fits the forced interface's arguments is taken as forced.
    assert host_app(_wsgi_function, interface="wsgi").kind == "WSGI"
    assert host_app(_asgi_function, interface="asgi").kind == "ASGI"


def test_response_head_lowercases_drops_and_keeps_the_apps_own_fields() -> None:
    host = host_app(_asgi_function)
    head = host.response_head(200, [(b"content-type", b"text/plain"), (b"x-n", b"1")])
    assert head[:3] == [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-n", b"1")]
    assert head[3] == (b"server", b"h2mesh")
    assert head[4][0] == b"date" and head[4][1].endswith(b" GMT")
    fields = iter([(b"X-Up", b"a"), (bytearray(b"connection"), b"close"), (b"Server", b"app")])
    assert host.response_head(404, fields)[:3] == [
        (b":status", b"404"),
        (b"x-up", b"a"),
        (b"server", b"app"),
    ]
    assert host.response_head(200, [(bytearray(b"x"), bytearray(b"y"))])[1] == (b"x", b"y")
    bare = host_app(_asgi_function, server_header=False, date_header=False)
    assert bare.response_head(204, ()) == [(b":status", b"204")]
    assert bare.response_head(200, [(b"date", b"then")]) == [
        (b":status", b"200"),
        (b"date", b"then"),
    ]

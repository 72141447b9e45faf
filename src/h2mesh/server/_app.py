"""Mounting a web application on a ``Server``: ASGI or WSGI, told apart automatically.

``AppOptions`` is the one list of the options a mounted application takes (the keywords
of ``Server(app=...)``, ``Server.mount`` and ``host_app``, and what ``h2mesh serve``'s
flags set); ``check_app_options`` checks them and ``DEFAULTS`` holds their defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Final, TypedDict, Unpack, cast

from ._asgi import AsgiHost

__all__ = [
    "DEFAULTS",
    "AppOptions",
    "HostedApp",
    "check_app_options",
    "detect_interface",
    "host_app",
]

HostedApp = AsgiHost


class AppOptions(TypedDict, total=False):
    """How a mounted application is served (each optional; defaults in ``DEFAULTS``)."""

    #: The ASGI ``root_path`` (WSGI ``SCRIPT_NAME``) of the mount point.
    root_path: str
    #: ``"auto"``, ``"on"`` or ``"off"``: whether the ASGI lifespan protocol runs.
    lifespan: str
    #: Add ``server: h2mesh`` / ``date`` to responses that have none.
    server_header: bool
    date_header: bool
    #: Threads that run a WSGI application.
    wsgi_threads: int
    #: Largest WebSocket message taken (bytes); a larger one closes with 1009.
    ws_max_size: int
    #: Seconds between keepalive pings on a WebSocket (None or 0: no pings), and how long
    #: the client may then stay silent before the connection is failed (None or 0: forever).
    ws_ping_interval: float | None
    ws_ping_timeout: float | None
    #: Compress WebSocket messages (permessage-deflate, RFC 7692) when the client offers it.
    ws_per_message_deflate: bool


DEFAULTS: Final[AppOptions] = {
    "root_path": "",
    "lifespan": "auto",
    "server_header": True,
    "date_header": True,
    "wsgi_threads": 40,
    "ws_max_size": 16 * 1024 * 1024,
    "ws_ping_interval": 20.0,
    "ws_ping_timeout": 20.0,
    "ws_per_message_deflate": True,
}


def check_app_options(options: Mapping[str, Any], where: str = "Server()") -> AppOptions:
    """``options`` checked (an unknown name is a ``TypeError``, a bad WebSocket value a
    ``ValueError``) and completed with ``DEFAULTS``; a ping interval or timeout of 0
    becomes None (off), as the command line's ``none`` does."""
    unknown = sorted(options.keys() - DEFAULTS.keys())
    if unknown:
        raise TypeError(f"{where} got an unexpected keyword argument {unknown[0]!r}")
    merged = cast(AppOptions, {**DEFAULTS, **options})
    size = merged["ws_max_size"]
    if size < 1:
        raise ValueError(f"ws_max_size must be a positive number of bytes, not {size}")
    interval, timeout = merged["ws_ping_interval"], merged["ws_ping_timeout"]
    for name, value in (("ws_ping_interval", interval), ("ws_ping_timeout", timeout)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be a number of seconds (0 or None: off), not {value}")
    merged["ws_ping_interval"] = interval or None
    merged["ws_ping_timeout"] = timeout or None
    return merged


# The positional arguments each interface calls an application with.
_ARGUMENTS = {"asgi": ("scope", "receive", "send"), "wsgi": ("environ", "start_response")}


def check_interface(app: Any, interface: str) -> None:
    """A ``TypeError`` if ``app`` certainly cannot be called as ``interface`` ("asgi" or
    "wsgi"), rather than a 500 on every request: a coroutine function is never a WSGI
    application, and a callable whose signature cannot take the interface's arguments is
    not one of its applications. (A plain function may still return a coroutine, so it
    may be ASGI; a callable with no signature to read passes.)"""
    names = _ARGUMENTS.get(interface)
    if names is None:
        return
    if interface == "wsgi" and detect_interface(app) == "asgi":
        raise TypeError("wsgi, but it is an ASGI application (an async callable)")
    try:
        # What is called, not what a functools.wraps wrapper says it wraps.
        signature = inspect.signature(app, follow_wrapped=False)
    except (TypeError, ValueError):
        return  # (some builtins): the first request will tell
    try:
        signature.bind(*names)
    except TypeError:
        params = [p.replace(annotation=p.empty) for p in signature.parameters.values()]
        takes = signature.replace(parameters=params, return_annotation=signature.empty)
        raise TypeError(
            f"{interface}, but it takes {takes}, not the "
            f"{interface.upper()} arguments ({', '.join(names)})"
        ) from None


def detect_interface(app: Any) -> str:
    """``"asgi"`` for an ASGI 3 application (a coroutine function, or an object whose
    ``__call__`` is one), ``"wsgi"`` for any other callable."""
    if not callable(app):
        raise TypeError(f"{app!r} is not an ASGI or WSGI application (not callable)")
    if inspect.iscoroutinefunction(app):
        return "asgi"
    call = getattr(app, "__call__", None)  # noqa: B004 - the method itself is inspected
    if call is not None and inspect.iscoroutinefunction(call):
        return "asgi"
    return "wsgi"


def host_app(app: Any, *, interface: str = "auto", **options: Unpack[AppOptions]) -> AsgiHost:
    """The host that serves ``app`` for a ``Server``.

    A WSGI application runs in a pool of ``wsgi_threads`` threads behind h2mesh's own
    WSGI-to-ASGI adapter (WSGI has no lifespan, nor WebSockets).
    """
    opts = check_app_options(options, "host_app()")
    if interface == "auto":
        interface = detect_interface(app)
    else:
        try:
            check_interface(app, interface)
        except TypeError as exc:
            raise TypeError(f"{app!r} cannot be served as interface={exc}") from None
    # AsgiHost takes every option but the thread count, which is the WSGI adapter's.
    host: dict[str, Any] = {k: v for k, v in opts.items() if k != "wsgi_threads"}
    if interface == "wsgi":
        from ._wsgi import WsgiAdapter

        host["lifespan"] = "off"
        return AsgiHost(WsgiAdapter(app, threads=opts["wsgi_threads"]), kind="WSGI", **host)
    if interface != "asgi":
        raise ValueError(f"interface must be 'asgi', 'wsgi' or 'auto', not {interface!r}")
    return AsgiHost(app, **host)

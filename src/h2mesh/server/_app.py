"""Mounting a web application on a ``Server``: ASGI or WSGI, told apart automatically."""

from __future__ import annotations

import inspect
from typing import Any

from ._asgi import AsgiHost

__all__ = ["HostedApp", "detect_interface", "host_app"]

HostedApp = AsgiHost


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


def host_app(
    app: Any,
    *,
    interface: str = "auto",
    root_path: str = "",
    lifespan: str = "auto",
    server_header: bool = True,
    date_header: bool = True,
    wsgi_threads: int = 40,
    ws_max_size: int = 16 * 1024 * 1024,
    ws_ping_interval: float | None = 20.0,
    ws_ping_timeout: float | None = 20.0,
) -> AsgiHost:
    """The host that serves ``app`` for a ``Server``.

    A WSGI application runs in a pool of ``wsgi_threads`` threads behind h2mesh's own
    WSGI-to-ASGI adapter (WSGI has no lifespan).
    """
    if interface == "auto":
        interface = detect_interface(app)
    if interface == "wsgi":
        from ._wsgi import WsgiAdapter

        return AsgiHost(
            WsgiAdapter(app, threads=wsgi_threads),
            root_path=root_path,
            lifespan="off",
            kind="WSGI",
            server_header=server_header,
            date_header=date_header,
        )
    if interface != "asgi":
        raise ValueError(f"interface must be 'asgi', 'wsgi' or 'auto', not {interface!r}")
    return AsgiHost(
        app,
        root_path=root_path,
        lifespan=lifespan,
        server_header=server_header,
        date_header=date_header,
        ws_max_size=ws_max_size,
        ws_ping_interval=ws_ping_interval,
        ws_ping_timeout=ws_ping_timeout,
    )

"""A ``Server`` that mounts the WebSocket test app with options of its own."""

from __future__ import annotations

from h2mesh import Server

from .ws_apps import fastapi_app

server = Server([], app=fastapi_app, ws_ping_interval=5.0, ws_max_size=1024)

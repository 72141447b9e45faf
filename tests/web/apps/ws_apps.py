"""WebSocket echo endpoints written for FastAPI and Starlette."""

from __future__ import annotations

import threading

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket as StarletteWebSocket

fastapi_app = FastAPI()
#: Close codes the endpoints saw, in order.
CLOSES: list[int] = []
#: Set each time an endpoint saw the client close.
CLOSED = threading.Event()


@fastapi_app.websocket("/echo")
async def fastapi_echo(ws: WebSocket) -> None:
    await ws.accept(subprotocol="echo.v1" if "echo.v1" in ws.scope["subprotocols"] else None)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                CLOSES.append(message["code"])
                CLOSED.set()
                return
            if message.get("text") == "close-me":
                await ws.close(code=4000, reason="asked to")
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect as exc:
        CLOSES.append(exc.code)
        CLOSED.set()


#: What ``/flood`` saw end its sending (set once it did).
FLOOD_ENDED: list[str] = []
FLOOD_DONE = threading.Event()


@fastapi_app.websocket("/flood")
async def fastapi_flood(ws: WebSocket) -> None:
    """Sends until sending fails: against a client that reads nothing, a send waits."""
    await ws.accept()
    try:
        while True:
            await ws.send_bytes(b"x" * 65536)
    except WebSocketDisconnect as exc:  # (Starlette's name for the send's OSError)
        FLOOD_ENDED.append(f"WebSocketDisconnect {exc.code}")
    except (OSError, RuntimeError) as exc:
        FLOOD_ENDED.append(type(exc).__name__)
    finally:
        FLOOD_DONE.set()


@fastapi_app.websocket("/refuse")
async def fastapi_refuse(ws: WebSocket) -> None:
    await ws.close()


@fastapi_app.websocket("/boom-before")
async def fastapi_boom_before(ws: WebSocket) -> None:
    raise RuntimeError("before accept")


@fastapi_app.websocket("/boom-after")
async def fastapi_boom_after(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    raise RuntimeError("after accept")


async def starlette_echo(ws: StarletteWebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)


starlette_app = Starlette(routes=[WebSocketRoute("/echo", starlette_echo)])

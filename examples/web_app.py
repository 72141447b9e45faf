"""A FastAPI app served beside the typed Greeter service, on one port:

    h2mesh serve examples.greeter:Greeter examples.web_app:app --port 8080

``/demo.v1.Greeter/*`` goes to the service (Connect, gRPC, gRPC-Web); every other path,
``/docs`` and ``/openapi.json`` included, goes to FastAPI.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(title="web beside Greeter")


@app.get("/hello/{name}")
async def hello(name: str) -> dict[str, str]:
    return {"message": f"Hello from FastAPI, {name}!"}

"""The FastAPI peer of the benchmark: ``granian --interface asgi benchmarks.fastapi_app:app``.

JSON bodies; Stream answers NDJSON lines; Collect counts the NDJSON lines it receives.
(No ``from __future__ import annotations`` here: FastAPI reads the annotations at run time.)
"""

from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

SERVICE = "bench.v1.Bench"


class JsonMsg(BaseModel):
    name: str = ""
    data: str = ""
    count: int = 0


app = FastAPI()


@app.post(f"/{SERVICE}/Echo")
async def echo(msg: JsonMsg) -> JsonMsg:
    return msg


@app.post(f"/{SERVICE}/Stream")
async def stream(msg: JsonMsg) -> StreamingResponse:
    line = JsonMsg(name=msg.name).model_dump_json(exclude_defaults=True).encode() + b"\n"

    async def lines() -> AsyncIterator[bytes]:
        for _ in range(msg.count):
            yield line

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@app.post(f"/{SERVICE}/Collect")
async def collect(request: Request) -> JsonMsg:
    n = 0
    async for chunk in request.stream():
        n += chunk.count(b"\n")
    return JsonMsg(count=n)

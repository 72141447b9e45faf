"""The endpoint of the routes benchmark, three ways: an h2mesh method with an HTTP route
(``Items``; also reachable as a Connect POST), and the same endpoint in FastAPI
(``app``, served by granian and by uvicorn).

``GET /v1/items/{id}?verbose=true`` answers ``{"id": 7, "name": "item-7", "tags": [...]}``.
(No ``from __future__ import annotations``: FastAPI reads the annotations at run time.)
"""

import msgspec
from fastapi import FastAPI
from pydantic import BaseModel

from h2mesh import Service, rpc


class GetItem(msgspec.Struct):
    id: int
    verbose: bool = False


class Item(msgspec.Struct):
    id: int
    name: str
    tags: list[str] = []


class Items(Service, name="bench.v1.Items"):
    @rpc(http="GET /v1/items/{id}", idempotent=True)
    async def get_item(self, req: GetItem) -> Item:
        return Item(req.id, f"item-{req.id}", ["a", "b"] if req.verbose else [])


class ItemModel(BaseModel):
    id: int
    name: str
    tags: list[str] = []


app = FastAPI()


@app.get("/v1/items/{item_id}")
async def get_item(item_id: int, verbose: bool = False) -> ItemModel:
    return ItemModel(id=item_id, name=f"item-{item_id}", tags=["a", "b"] if verbose else [])

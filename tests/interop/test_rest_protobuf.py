"""REST routes on a service typed with generated protobuf classes (grpc.testing's
messages): path and query values by proto field name or JSON name, the canonical JSON
mapping out, and a valid OpenAPI document from the descriptors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from h2mesh import Service, rpc

from ._protos import messages_pb2

SimpleRequest: Any = messages_pb2.SimpleRequest
SimpleResponse: Any = messages_pb2.SimpleResponse


class Simple(Service, name="t.Simple"):
    @rpc(http="GET /v1/simple/{response_size}")
    async def get(self, req: SimpleRequest) -> SimpleResponse:
        return SimpleResponse(username=f"{req.response_size}:{req.fill_username}")

    @rpc(http="POST /v1/simple")
    async def post(self, req: SimpleRequest) -> SimpleResponse:
        return SimpleResponse(username=f"{req.response_size}")


@pytest.fixture
def server_services() -> list[Service]:
    return [Simple()]


def test_routes_bind_protobuf_messages(server_url: str) -> None:
    with httpx.Client(base_url=server_url) as client:
        assert client.get("/v1/simple/5?fill_username=true").json() == {"username": "5:True"}
        assert client.get("/v1/simple/6?fillUsername=true").json() == {"username": "6:True"}
        assert client.post("/v1/simple", json={"responseSize": 3}).json() == {"username": "3"}
        r = client.get("/v1/simple/x")
        assert r.status_code == 400
        assert "field `response_size`: expected an integer" in r.json()["message"]
        doc = client.get("/openapi.json").json()
    validate(doc)
    params = doc["paths"]["/v1/simple/{response_size}"]["get"]["parameters"]
    names = [p["name"] for p in params]
    assert names[0] == "response_size" and "responseSize" not in names
    assert "fillUsername" in names
    assert doc["components"]["schemas"]["grpc.testing.SimpleRequest"]["type"] == "object"

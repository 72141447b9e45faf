"""A service that answers with the metadata it received (for the CLI tests)."""

from __future__ import annotations

import msgspec

from h2mesh import Context, Service, rpc


class Empty(msgspec.Struct):
    pass


class Headers(msgspec.Struct):
    values: dict[str, str]


class Echo(Service, name="test.v1.Echo"):
    @rpc
    async def headers(self, req: Empty, ctx: Context) -> Headers:
        return Headers(values=dict(ctx.request_headers))

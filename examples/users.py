"""One service, REST and RPC: resource-style HTTP routes on the same methods that
Connect, gRPC and gRPC-Web clients call. Used by the README, docs/routes.md and the tests.

::

    h2mesh serve examples.users:Users --port 8080
    curl localhost:8080/v1/users/1
    curl -X POST localhost:8080/v1/users -d '{"name": "Ada", "tags": ["math"]}'
    curl 'localhost:8080/v1/users?tag=math&page.size=5'
    curl -H 'content-type: application/json' -d '{"id": 1}' \
        localhost:8080/demo.users.v1.Users/GetUser
    open http://localhost:8080/docs
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec

from h2mesh import Code, RpcError, Service, rpc

# Kept bounded: the oldest users go first when the table is full.
MAX_USERS = 1000


class Address(msgspec.Struct):
    city: str = ""
    country: str = ""


class User(msgspec.Struct):
    id: int = 0
    name: str = ""
    email: str = ""
    tags: list[str] = []
    address: Address | None = None


class NewUser(msgspec.Struct):
    name: str
    email: str = ""
    tags: list[str] = []
    address: Address | None = None


class UserId(msgspec.Struct):
    id: int


NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class Page(msgspec.Struct):
    size: Annotated[int, msgspec.Meta(ge=0, le=100)] = 20
    offset: NonNegative = 0


class ListUsersRequest(msgspec.Struct):
    tag: list[str] = []
    city: str = ""
    page: Page = msgspec.field(default_factory=Page)


class UserList(msgspec.Struct):
    users: list[User]
    total: int


class ReplaceUserRequest(msgspec.Struct):
    id: int
    user: NewUser


class PatchUserRequest(msgspec.Struct):
    id: int
    name: str | None = None
    email: str | None = None
    tags: list[str] = []  # replaces the tags when not empty


class OrgUsersRequest(msgspec.Struct):
    name: str
    page: Page = msgspec.field(default_factory=Page)


class WatchRequest(msgspec.Struct):
    count: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3
    interval: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0


class Deleted(msgspec.Struct):
    id: int
    deleted: bool = True


class Users(Service, name="demo.users.v1.Users"):
    """A user directory, served as REST routes and as RPC methods."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._users: OrderedDict[int, User] = OrderedDict()
        for name, tags, city in (
            ("Ada", ["math"], "London"),
            ("Grace", ["navy", "cobol"], "Arlington"),
            ("Linus", ["kernel"], "Portland"),
        ):
            self._add(NewUser(name=name, tags=tags, address=Address(city=city)))

    def _add(self, new: NewUser, user_id: int | None = None) -> User:
        uid = next(self._ids) if user_id is None else user_id
        user = User(uid, new.name, new.email, list(new.tags), new.address)
        self._users[uid] = user
        while len(self._users) > MAX_USERS:
            self._users.popitem(last=False)
        return user

    def _get(self, user_id: int) -> User:
        user = self._users.get(user_id)
        if user is None:
            raise RpcError(Code.NOT_FOUND, f"no user with id {user_id}")
        return user

    @rpc(http="GET /v1/users/{id}", idempotent=True)
    async def get_user(self, req: UserId) -> User:
        """Get one user by id.

        Answers `not_found` (404) for an id that was never created or was deleted.
        """
        return self._get(req.id)

    @rpc(http=["GET /v1/users", "GET /v1/people"], idempotent=True)
    async def list_users(self, req: ListUsersRequest) -> UserList:
        """List users, filtered by tags (all must match) and city, a page at a time."""
        found = [
            u
            for u in self._users.values()
            if all(t in u.tags for t in req.tag)
            and (not req.city or (u.address is not None and u.address.city == req.city))
        ]
        start = min(req.page.offset, len(found))
        return UserList(found[start : start + req.page.size], len(found))

    @rpc(http="GET /v1/{name=orgs/*}/users", idempotent=True)
    async def list_org_users(self, req: OrgUsersRequest) -> UserList:
        """List the users of an organisation (its resource name is ``orgs/<id>``)."""
        org = req.name.removeprefix("orgs/")
        found = [u for u in self._users.values() if org in u.tags]
        return UserList(found[: req.page.size], len(found))

    @rpc(http="POST /v1/users")
    async def create_user(self, req: NewUser) -> User:
        """Create a user; the server picks its id."""
        return self._add(req)

    @rpc(http="PUT /v1/users/{id}", body="user")
    async def replace_user(self, req: ReplaceUserRequest) -> User:
        """Replace a user: the body is the new user, the path names which."""
        self._get(req.id)
        return self._add(req.user, req.id)

    @rpc(http="PATCH /v1/users/{id}")
    async def update_user(self, req: PatchUserRequest) -> User:
        """Change some fields of a user; fields left out keep their value."""
        user = self._get(req.id)
        changes = {
            k: v
            for k, v in (("name", req.name), ("email", req.email), ("tags", req.tags or None))
            if v is not None
        }
        user = msgspec.structs.replace(user, **changes)
        self._users[req.id] = user
        return user

    @rpc(http="DELETE /v1/users/{id}")
    async def delete_user(self, req: UserId) -> Deleted:
        """Delete a user."""
        self._get(req.id)
        del self._users[req.id]
        return Deleted(req.id)

    @rpc(http="GET /v1/users:watch")
    async def watch_users(self, req: WatchRequest) -> AsyncIterator[User]:
        """Stream the users, one message each (NDJSON, or SSE with
        ``accept: text/event-stream``), ``count`` of them at most."""
        for user in list(self._users.values())[: req.count]:
            if req.interval:
                await asyncio.sleep(req.interval)
            yield user

"""The wire-neutral RPC error and the one table that maps its codes.

Error tree::

    Exception
    └── RpcError                 an RPC failed with a status code (any protocol)
        └── UnprocessedError     UNAVAILABLE, and the server never saw the call
    TransportError (transport/)  a connection-level failure, translated to RpcError
                                 (Code.UNAVAILABLE) at the client boundary
"""

from __future__ import annotations

import enum
from typing import Any


class Code(enum.IntEnum):
    """The 17 status codes shared by gRPC and Connect (``OK`` included)."""

    OK = 0
    CANCELED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    # gRPC spells it with two Ls; accept both.
    CANCELLED = 1

    @property
    def wire_name(self) -> str:
        """The Connect spelling: ``not_found``, ``canceled``..."""
        return _WIRE_NAMES[self]

    @property
    def http_status(self) -> int:
        """The HTTP status Connect uses for a unary error with this code."""
        return _HTTP_STATUS[self]

    @classmethod
    def from_wire_name(cls, name: str) -> Code:
        """The code for a Connect name; unknown names map to ``UNKNOWN``."""
        return _BY_WIRE_NAME.get(name, cls.UNKNOWN)

    @classmethod
    def from_http_status(cls, status: int) -> Code:
        """The code a client infers from an HTTP status with no error body."""
        return _FROM_HTTP.get(status, cls.UNKNOWN)


_WIRE_NAMES: dict[Code, str] = {
    code: ("canceled" if code == Code.CANCELED else code.name.lower()) for code in Code
}
_BY_WIRE_NAME: dict[str, Code] = {name: code for code, name in _WIRE_NAMES.items()}
_BY_WIRE_NAME["cancelled"] = Code.CANCELED

_HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}

# Connect spec: codes inferred from HTTP status when the body is not a Connect error.
_FROM_HTTP: dict[int, Code] = {
    400: Code.INTERNAL,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.UNIMPLEMENTED,
    429: Code.UNAVAILABLE,
    502: Code.UNAVAILABLE,
    503: Code.UNAVAILABLE,
    504: Code.UNAVAILABLE,
}


class RpcError(Exception):
    """An RPC ended with a non-OK status.

    Raise it from a handler to send ``code`` and ``message`` to the caller; a client
    raises it when a call fails. ``details`` are JSON-compatible values (for Connect,
    objects with ``type`` and ``value``); ``metadata`` holds the response headers and
    trailers that came with the error, on the client side.
    """

    __slots__ = ("code", "details", "message", "metadata")

    def __init__(
        self,
        code: Code,
        message: str = "",
        details: list[Any] | tuple[Any, ...] = (),
        *,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = Code(code)
        self.message = message
        self.details: list[Any] = list(details)
        self.metadata: dict[str, str] = metadata if metadata is not None else {}

    def __str__(self) -> str:
        return f"{self.code.wire_name}: {self.message}" if self.message else self.code.wire_name

    def __repr__(self) -> str:
        return f"RpcError({self.code.name}, {self.message!r})"

    def to_json(self) -> dict[str, Any]:
        """The Connect error object: ``{"code", "message"?, "details"?}``."""
        out: dict[str, Any] = {"code": self.code.wire_name}
        if self.message:
            out["message"] = self.message
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_json(cls, obj: Any, http_status: int = 500) -> RpcError:
        """Parse a Connect error object; falls back to the HTTP status mapping."""
        if isinstance(obj, dict) and isinstance(obj.get("code"), str):
            message = obj.get("message")
            details = obj.get("details")
            return cls(
                Code.from_wire_name(obj["code"]),
                message if isinstance(message, str) else "",
                details if isinstance(details, list) else (),
            )
        return cls(Code.from_http_status(http_status), f"HTTP status {http_status}")


class UnprocessedError(RpcError):
    """``UNAVAILABLE`` for a call the server never saw: no connection could be made, or
    the stream was refused (REFUSED_STREAM, or past a GOAWAY's last stream id).

    Such a call is safe to send again, to any endpoint, whatever the method.
    """

    __slots__ = ()

    def __init__(self, message: str) -> None:
        super().__init__(Code.UNAVAILABLE, message)

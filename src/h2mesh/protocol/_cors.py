"""CORS (fetch.spec.whatwg.org): which browser origins may call, for every protocol.

One policy answers the preflight (``OPTIONS`` with ``access-control-request-method``)
and decorates the actual responses, so the two always agree. Pure functions of the
request headers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["CorsPolicy"]

_DEFAULT_EXPOSE = (
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-encoding",
    "connect-content-encoding",
    "content-encoding",
)
_DEFAULT_ALLOW_HEADERS = (
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
)
RPC_METHODS = ("POST", "GET", "OPTIONS")


class CorsPolicy:
    """Which origins may call from a browser, and what their scripts may see.

    ``origins``: exact origins (``"https://app.example"``), or ``"*"`` for any. The
    allowed origin is echoed (with ``vary: origin``) rather than ``*``, so that
    ``allow_credentials=True`` works too. ``allow_headers`` None echoes what the
    preflight asks for; ``expose_headers`` are added to the protocol headers a client
    library reads (``grpc-status``...).
    """

    __slots__ = (
        "_any",
        "_expose",
        "_origins",
        "allow_credentials",
        "allow_headers",
        "max_age",
    )

    def __init__(
        self,
        origins: str | Iterable[str] = "*",
        *,
        allow_headers: Sequence[str] | None = None,
        expose_headers: Sequence[str] = (),
        allow_credentials: bool = False,
        max_age: int = 86400,
    ) -> None:
        items = [origins] if isinstance(origins, str) else list(origins)
        self._any = "*" in items
        self._origins = frozenset(o.rstrip("/").lower().encode("latin-1") for o in items)
        self.allow_headers = allow_headers
        self._expose = ", ".join([*_DEFAULT_EXPOSE, *(h.lower() for h in expose_headers)])
        self.allow_credentials = allow_credentials
        self.max_age = max_age

    def allows(self, origin: bytes) -> bool:
        return self._any or origin.lower() in self._origins

    def response_headers(self, origin: bytes | None) -> dict[str, str] | None:
        """Headers for an actual response to a request from ``origin`` (None: none)."""
        if origin is None or not self.allows(origin):
            return None
        out = {
            "access-control-allow-origin": origin.decode("latin-1"),
            "access-control-expose-headers": self._expose,
            "vary": "origin",
        }
        if self.allow_credentials:
            out["access-control-allow-credentials"] = "true"
        return out

    def preflight(
        self, request: dict[bytes, bytes], methods: Sequence[str] = RPC_METHODS
    ) -> list[tuple[bytes, bytes]]:
        """The ``204`` answer to an ``OPTIONS`` request for a resource allowing
        ``methods``."""
        allow = ", ".join(methods).encode()
        out = [(b":status", b"204"), (b"allow", allow)]
        origin = request.get(b"origin")
        wanted = request.get(b"access-control-request-method")
        if origin is None or wanted is None or not self.allows(origin):
            return out
        if wanted.decode("latin-1").upper() not in methods:
            return out  # the browser sees no grant and refuses the call
        asked = request.get(b"access-control-request-headers")
        if self.allow_headers is not None:
            headers = ", ".join(self.allow_headers).encode()
        else:
            headers = asked or ", ".join(_DEFAULT_ALLOW_HEADERS).encode()
        out += [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", allow),
            (b"access-control-allow-headers", headers),
            (b"access-control-expose-headers", self._expose.encode()),
            (b"access-control-max-age", str(self.max_age).encode()),
            (b"vary", b"origin, access-control-request-method, access-control-request-headers"),
        ]
        if self.allow_credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out

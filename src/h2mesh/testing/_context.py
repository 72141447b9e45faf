"""``make_context``: the Context a handler receives, for calling the handler directly."""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from ..server import Context
from ..service import MethodDescriptor, Service, service_methods
from ..transport import Stream

__all__ = ["make_context"]


class _Transport:
    """Answers the one question a Context asks a transport: the client's certificate."""

    def __init__(self, peer_certificate: dict[str, Any] | None) -> None:
        self._cert = peer_certificate

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._cert if name == "peercert" else default


class _RequestStream(Stream):
    """The request side of a call that never touched the network."""

    __slots__ = ("_conn", "ended_local", "headers", "http_version", "supports_trailers", "trailers")

    def __init__(self, headers: list[tuple[bytes, bytes]], conn: SimpleNamespace) -> None:
        self.task = None
        self.headers = headers
        self.trailers = None
        self.ended_local = False
        self.http_version = "2"
        self.supports_trailers = True
        self._conn = conn


def make_context(
    target: Any,
    method: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
    protocol: str = "connect",
    peer: Any = ("127.0.0.1", 50000),
    peer_certificate: dict[str, Any] | None = None,
) -> Context:
    """A :class:`~h2mesh.Context` for calling a handler as a coroutine.

    ``target`` is a bound handler (``make_context(greeter.say_hello)``), a service (class
    or instance) with the Python name of the method, or a ``MethodDescriptor``.
    ``headers`` become the caller's metadata, ``timeout`` (seconds) the deadline, and
    ``peer`` / ``peer_certificate`` what ``ctx.peer`` and ``ctx.peer_subject`` report.
    After the call, ``ctx.response_headers`` and ``ctx.response_trailers`` hold what the
    handler set.
    """
    descriptor = _descriptor(target, method)
    raw = [(b":method", b"POST"), (b":path", descriptor.path.encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    conn = SimpleNamespace(
        peer=peer, sockname=("127.0.0.1", 0), transport=_Transport(peer_certificate)
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    return Context(_RequestStream(raw, conn), descriptor, protocol, deadline)


def _descriptor(target: Any, method: str | None) -> MethodDescriptor:
    if isinstance(target, MethodDescriptor):
        return target
    owner = getattr(target, "__self__", None)
    if method is None and isinstance(owner, Service):
        target, method = owner, target.__name__
    if method is None or not (
        isinstance(target, Service) or (isinstance(target, type) and issubclass(target, Service))
    ):
        raise TypeError(
            "make_context takes a bound handler, a service and a method name, or a "
            f"MethodDescriptor; got {target!r}"
        )
    methods = service_methods(target)
    if method not in methods:
        cls = target if isinstance(target, type) else type(target)
        known = ", ".join(sorted(methods))
        raise ValueError(f"{cls.__name__} has no RPC method {method!r}; it has {known}")
    return methods[method]

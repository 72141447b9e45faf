"""The per-call context a handler receives."""

from __future__ import annotations

import time
from typing import Any

from .._errors import Code
from ..protocol import Metadata, metadata_from_headers
from ..service import MethodDescriptor
from ..transport import Stream
from ._forwarded import ProxyTrust, forwarded_client

_OK = Code.OK  # (an enum member looked up on its class costs about 0.25 µs on 3.11)


class Context:
    """What a handler knows about its call, and how it shapes the response metadata.

    Headers are plain ``dict[str, str]`` with lower-case names. ``response_headers`` go
    out before the first message; ``response_trailers`` after the last one.
    """

    __slots__ = (
        "_request_headers",
        "_response_headers",
        "_response_trailers",
        "_stream",
        "_trust",
        "code",
        "deadline",
        "method",
        "protocol",
        "timed_out",
    )

    def __init__(
        self,
        stream: Stream,
        method: MethodDescriptor,
        protocol: str,
        deadline: float | None,
        response_headers: Metadata | None = None,
    ) -> None:
        self._stream = stream
        self.method = method
        self.protocol = protocol
        #: ``time.monotonic()`` value past which the call is cancelled, or None.
        self.deadline = deadline
        self.timed_out = False
        #: How the call ended (``Code.OK`` until it fails); observers read it afterwards.
        self.code = _OK
        self._request_headers: Metadata | None = None
        # (The server passes the CORS headers of the response, if any.)
        self._response_headers = response_headers
        self._response_trailers: Metadata | None = None
        self._trust: ProxyTrust | None = None  # set by the server when it trusts proxies

    @property
    def request_headers(self) -> Metadata:
        """The caller's metadata (protocol and pseudo-headers removed)."""
        if self._request_headers is None:
            self._request_headers = metadata_from_headers(self._stream.headers or [])
        return self._request_headers

    @property
    def response_headers(self) -> Metadata:
        """Headers to send with the response; set them before the first message."""
        if self._response_headers is None:
            self._response_headers = {}
        return self._response_headers

    @property
    def response_trailers(self) -> Metadata:
        """Trailers to send when the call ends."""
        if self._response_trailers is None:
            self._response_trailers = {}
        return self._response_trailers

    @property
    def peer(self) -> Any:
        """The caller's address, e.g. ``("127.0.0.1", 50312)``.

        Behind a trusted proxy (``Server(forwarded_allow_ips=...)``), the client's address
        from ``Forwarded`` / ``X-Forwarded-For`` (port 0 if the proxy did not pass it on).
        """
        if self._trust is None:
            return self._stream.peer
        return forwarded_client(self._stream.headers or (), self._stream.peer, self._trust)

    @property
    def socket_peer(self) -> Any:
        """The address of the connection's other end (the proxy, behind one)."""
        return self._stream.peer

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        """The caller's verified TLS client certificate (mutual TLS), decoded as
        ``ssl.SSLSocket.getpeercert()`` does, or None."""
        return self._stream.peer_certificate

    @property
    def peer_subject(self) -> str | None:
        """The client certificate's subject as an RFC 4514 string, e.g.
        ``"CN=client-1,O=Example"``, or None without one."""
        cert = self.peer_certificate
        return None if not cert else distinguished_name(cert.get("subject", ()))

    @property
    def peer_sans(self) -> list[str]:
        """The client certificate's subject alternative names, e.g.
        ``["DNS:client-1.example", "URI:spiffe://example/c1", "IP:10.0.0.7"]``."""
        cert = self.peer_certificate
        if not cert:
            return []
        return [f"{_SAN_KINDS.get(k, k)}:{v}" for k, v in cert.get("subjectAltName", ())]

    @property
    def http_version(self) -> str:
        return self._stream.http_version

    def time_remaining(self) -> float | None:
        """Seconds until the deadline, or None if the call has none."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def cancelled(self) -> bool:
        """True once the caller cancelled the call or its deadline passed."""
        task = self._stream.task
        return self.timed_out or (task is not None and task.cancelling() > 0)

    def __repr__(self) -> str:
        return f"<Context {self.method.path} via {self.protocol}>"


_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_SAN_KINDS = {"IP Address": "IP"}


def _escape(value: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;=' else c for c in value)
    if out[:1] in ("#", " "):
        out = "\\" + out
    if out.endswith(" "):
        out = out[:-1] + "\\ "
    return out


def distinguished_name(rdns: Any) -> str:
    """``getpeercert()``'s subject as RFC 4514 text: most specific first, as nginx's
    ``$ssl_client_s_dn`` shows it."""
    parts = [
        "+".join(f"{_SHORT_NAMES.get(k, k)}={_escape(str(v))}" for k, v in rdn)
        for rdn in reversed(rdns)
    ]
    return ",".join(parts)

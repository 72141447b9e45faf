"""Accepting connections: pick HTTP/2 or HTTP/1.1 from ALPN or the first bytes."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast

from .._http2 import ErrorCode
from ..transport import H2Connection
from ..transport._h1 import H1Connection
from ._limits import ConnectionLimits

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HTTP1_VERSIONS = (b" HTTP/1.1", b" HTTP/1.0")
# A request line longer than this goes to the HTTP/1.1 parser, which answers 414 or 400.
_MAX_FIRST_LINE = 8192
_DEBUG = b"invalid connection preface"
# GOAWAY (type 0x7, no flags, stream 0): last stream 0, PROTOCOL_ERROR, and why.
_GOAWAY_PROTOCOL_ERROR = (
    ((8 + len(_DEBUG)).to_bytes(3, "big") + b"\x07\x00" + bytes(4) + bytes(4))
    + ErrorCode.PROTOCOL_ERROR.to_bytes(4, "big")
    + _DEBUG
)


def server_ssl_context(
    certfile: str, keyfile: str, *, client_ca: str | None = None
) -> ssl.SSLContext:
    """A TLS server context offering ALPN ``h2`` and ``http/1.1``.

    With ``client_ca`` (a PEM file of CA certificates), every client must present a
    certificate signed by one of them (mutual TLS); others fail the handshake. Only those
    CAs are trusted for clients, never the system's.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=client_ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Sniffer(asyncio.Protocol):
    """The first protocol of every accepted connection; hands it to HTTP/2 or HTTP/1.1.

    With TLS, ALPN decides. In cleartext, HTTP/2 with prior knowledge starts with the
    connection preface and an HTTP/1.x request line ends with its version; anything else
    (a broken preface) gets an HTTP/2 GOAWAY PROTOCOL_ERROR and is closed.
    """

    __slots__ = (
        "_buf",
        "_counted",
        "_limits",
        "_make_h1",
        "_make_h2",
        "_scheme",
        "_timeout",
        "_timer",
        "_transport",
    )

    def __init__(
        self,
        make_h2: Callable[[], H2Connection],
        make_h1: Callable[[bytes], H1Connection],
        scheme: bytes,
        timeout: float = 10.0,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self._make_h2 = make_h2
        self._make_h1 = make_h1
        self._scheme = scheme
        self._timeout = timeout
        self._limits = limits
        self._counted = False
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limits = self._limits
        if limits is not None:
            if not limits.admit(transport.get_extra_info("peername")):
                # Over the connection cap: refused before a byte is read.
                cast(asyncio.Transport, transport).abort()
                return
            self._counted = True  # released by the connection's close (Server._on_close)
        self._transport = transport  # type: ignore[assignment]
        # A peer that connects and never says which protocol it speaks is dropped.
        self._timer = asyncio.get_running_loop().call_later(self._timeout, transport.close)
        sslobj = transport.get_extra_info("ssl_object")
        alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
        if alpn == "h2":
            self._switch(self._make_h2(), b"")
        elif alpn == "http/1.1":
            self._switch(self._make_h1(self._scheme), b"")

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        n = min(len(buf), len(_PREFACE))
        if buf[:n] == _PREFACE[:n]:
            if n < len(_PREFACE):
                self._buf = buf  # wait for the rest of the preface
                return
            self._switch(self._make_h2(), buf)
            return
        line_end = buf.find(b"\n", 0, _MAX_FIRST_LINE)
        if line_end < 0 and len(buf) < _MAX_FIRST_LINE:
            self._buf = buf  # wait for the request line
            return
        line = buf[:line_end].rstrip(b"\r") if line_end >= 0 else b""
        if line_end >= 0 and not line.endswith(_HTTP1_VERSIONS):
            # Neither an HTTP/1.x request line nor the HTTP/2 preface: a broken preface
            # is an HTTP/2 connection error (RFC 9113 3.4), and an HTTP/1.1 answer would
            # mean nothing to a client that sent it.
            self._refuse_preface()
            return
        self._switch(self._make_h1(self._scheme), buf)

    def _refuse_preface(self) -> None:
        transport = self._transport
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if transport is not None:
            transport.write(_GOAWAY_PROTOCOL_ERROR)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        # (Only for connections that closed before being handed over.)
        if self._counted and self._limits is not None and self._transport is not None:
            self._limits.release(self._transport.get_extra_info("peername"))
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()

    def _switch(self, proto: H2Connection | H1Connection, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport.set_protocol(proto)
        proto.connection_made(transport)
        if data:
            proto.data_received(data)

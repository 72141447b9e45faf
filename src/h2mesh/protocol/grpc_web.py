"""gRPC-Web (grpc/doc/PROTOCOL-WEB.md): gRPC for peers without HTTP trailers.

The same calls and envelopes as gRPC, with ``content-type: application/grpc-web[+proto|
+json]``; the status goes in a last envelope with flag 0x80 whose payload is
``name: value\\r\\n`` lines, so it works over HTTP/1.1 too. ``application/grpc-web-text``
carries the whole body base64-encoded (each response envelope is encoded on its own,
with padding; requests may be one base64 text or padded pieces one after another).

Browsers call across origins: a request with an ``origin`` header gets
``access-control-allow-origin`` and ``access-control-expose-headers`` on its response,
and ``CORS_PREFLIGHT`` answers ``OPTIONS`` preflight requests with ``204``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import Code, RpcError
from ..codec import PROTO, Codec
from ..service import MethodDescriptor
from ..transport import Stream
from ._base import ServerCall, ServerProtocol
from ._cors import RPC_METHODS, CorsPolicy
from ._envelope import encode_envelope
from .grpc import FLAG_TRAILERS, IDENTITY_FRAMING, Framing, GrpcClient, GrpcServer

__all__ = [
    "CORS_PREFLIGHT",
    "GRPC_WEB",
    "GRPC_WEB_TEXT",
    "Base64Framing",
    "CorsPreflight",
    "GrpcWebClient",
    "GrpcWebServer",
    "encode_trailer_block",
]

_EXPOSE = b"grpc-status, grpc-message, grpc-status-details-bin, grpc-encoding"


def encode_trailer_block(fields: list[tuple[bytes, bytes]]) -> bytes:
    """The payload of a gRPC-Web trailer frame: ``name: value\\r\\n`` lines."""
    return b"".join(name.lower() + b": " + value + b"\r\n" for name, value in fields)


class Base64Framing(Framing):
    """grpc-web-text: base64 decoded incrementally, in whole 4-character groups.

    Padding may appear in the middle (pieces encoded one by one and concatenated): a
    group holding ``=`` ends a piece and is decoded on its own.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def decode(self, chunk: bytes) -> bytes:
        buf = self._buf + chunk
        if b"\r" in buf or b"\n" in buf or b" " in buf:
            buf = b"".join(buf.split())
        whole = len(buf) - len(buf) % 4
        self._buf = buf[whole:]
        return _decode_groups(buf[:whole])

    def decode_end(self) -> bytes:
        rest, self._buf = self._buf, b""
        if not rest:
            return b""
        if len(rest) == 1:
            raise RpcError(Code.INTERNAL, "body is not valid base64 (truncated)")
        return _decode_groups(rest + b"=" * (-len(rest) % 4))

    def encode(self, data: bytes) -> bytes:
        return base64.b64encode(data)


def _decode_groups(data: bytes) -> bytes:
    out = []
    try:
        while data:
            pad = data.find(b"=")
            if pad < 0:
                out.append(binascii.a2b_base64(data, strict_mode=True))
                break
            end = pad - pad % 4 + 4
            out.append(binascii.a2b_base64(data[:end], strict_mode=True))
            data = data[end:]
    except binascii.Error as exc:
        raise RpcError(Code.INTERNAL, f"body is not valid base64: {exc}") from None
    return b"".join(out)


def _cors_headers(request: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    origin = request.get(b"origin")
    if origin is None:
        return []
    return [
        (b"access-control-allow-origin", origin),
        (b"access-control-expose-headers", _EXPOSE),
        (b"vary", b"origin"),
    ]


class GrpcWebServer(GrpcServer):
    """gRPC-Web, server side (binary or text), over HTTP/1.1 or HTTP/2."""

    name = "grpc-web"
    http_trailers = False  # gRPC-Web needs no trailers: that is what it is for

    def __init__(self, text: bool = False) -> None:
        self.text = text
        self.content_type = b"application/grpc-web-text" if text else b"application/grpc-web"

    def reject_headers(self, request: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        # Calls get their CORS headers from the server's policy; an error answered
        # before a call echoes the origin, so the browser can read the status.
        return _cors_headers(request)

    def framing(self) -> Framing:
        return Base64Framing() if self.text else IDENTITY_FRAMING

    async def send_trailers(
        self, stream: Stream, framing: Framing, fields: list[tuple[bytes, bytes]]
    ) -> None:
        frame = encode_envelope(encode_trailer_block(fields), FLAG_TRAILERS)
        await stream.send_data(framing.encode(frame), end_stream=True)


GRPC_WEB = GrpcWebServer()
GRPC_WEB_TEXT = GrpcWebServer(text=True)


class CorsPreflight(ServerProtocol):
    """Answers CORS preflight (``OPTIONS``) requests, for gRPC-Web and every other
    protocol, from one ``CorsPolicy`` (see ``_cors``).

    It never becomes a call: ``server_call`` declines and ``reject`` sends the ``204``.
    ``methods_for(path)`` (from the server) says which HTTP methods a path serves.
    """

    name = "cors"

    def __init__(
        self,
        policy: CorsPolicy | None = None,
        methods_for: Callable[[bytes], Sequence[str]] | None = None,
    ) -> None:
        self.policy = policy if policy is not None else CorsPolicy("*")
        self.methods_for = methods_for
        self.enabled = policy is not None or methods_for is None

    def accepts(self, method: bytes | None, content_type: bytes | None) -> bool:
        return method == b"OPTIONS"

    def server_call(
        self,
        stream: Stream,
        method: MethodDescriptor,
        request: dict[bytes, bytes],
        max_size: int,
    ) -> ServerCall:
        raise RpcError(Code.UNIMPLEMENTED, "OPTIONS is answered as a CORS preflight")

    async def reject(self, stream: Stream, request: dict[bytes, bytes], error: RpcError) -> None:
        methods: tuple[str, ...] = RPC_METHODS
        if self.methods_for is not None:
            served = self.methods_for(request.get(b":path", b""))
            if served:
                methods = (*served, "OPTIONS")
        if not self.enabled:
            stream.send_headers(
                [(b":status", b"204"), (b"allow", ", ".join(methods).encode())], end_stream=True
            )
            return
        stream.send_headers(self.policy.preflight(request, methods), end_stream=True)


CORS_PREFLIGHT = CorsPreflight()


class GrpcWebClient(GrpcClient):
    """gRPC-Web, client side: ``Channel(url, protocol="grpc-web")``; ``text=True`` for
    ``application/grpc-web-text``."""

    name = "grpc-web"

    def __init__(
        self, codec: Codec = PROTO, compression: str | None = None, *, text: bool = False
    ) -> None:
        self.content_type = b"application/grpc-web-text" if text else b"application/grpc-web"
        self.text = text
        super().__init__(codec, compression)

    def protocol_headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-grpc-web", b"1")]

    def framing(self) -> Framing:
        return Base64Framing() if self.text else IDENTITY_FRAMING

    def frame(self, message: Any) -> bytes:
        frame = super().frame(message)
        return base64.b64encode(frame) if self.text else frame

"""The Connect protocol (connectrpc.com/docs/protocol), server and client.

Unary calls are plain HTTP: ``POST /pkg.Service/Method`` with a JSON (``application/json``)
or MessagePack (``application/msgpack``) body, answered by ``200`` and the message or by
an HTTP error status and ``{"code", "message", "details"}``. Methods marked idempotent
may also be called with ``GET ?encoding=json&message=...``. Streams use
``application/connect+json|+msgpack``: enveloped messages, closed by an end-stream
envelope (flag 0x02) that carries the error and trailers as JSON.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qs

import msgspec

from .._errors import Code, RpcError
from ..codec import JSON, Codec, DecodeFn, codec_for
from ..compression import Compressor, compressor_for, supported_names
from ..service import MethodDescriptor, MethodKind
from ..transport import Stream
from ._base import (
    CallMaker,
    ClientProtocol,
    EnvelopedServerCall,
    HttpStatusError,
    Metadata,
    ResponseMetadata,
    ServerCall,
    ServerProtocol,
    encode_metadata,
    error_status_headers,
    method_not_allowed,
)
from ._envelope import (
    FLAG_COMPRESSED,
    FLAG_END_STREAM,
    MessageReader,
    encode_envelope,
    pack_prefix,
)

__all__ = ["CONNECT", "ConnectClient", "ConnectServer"]

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode

_STATUS_200 = (b":status", b"200")
_CT_ERROR = (b"content-type", b"application/json")
_STATUS_BYTES = {code: str(code.http_status).encode() for code in Code}

_UNARY_CT = {
    "json": b"application/json",
    "msgpack": b"application/msgpack",
    "proto": b"application/proto",
}
_STREAM_CT = {
    "json": b"application/connect+json",
    "msgpack": b"application/connect+msgpack",
    "proto": b"application/connect+proto",
}
_UNARY_CT_HEADER = {k: (b"content-type", v) for k, v in _UNARY_CT.items()}
_STREAM_CT_HEADER = {k: (b"content-type", v) for k, v in _STREAM_CT.items()}

_UNARY = MethodKind.UNARY  # (an enum member looked up on its class costs about 0.3 µs)
_MAX_TIMEOUT_DIGITS = 10
_PROTOCOL_VERSION = (b"connect-protocol-version", b"1")
_USER_AGENT = (b"user-agent", b"h2mesh-python/0.1")


_CT_CACHE: dict[bytes, tuple[bool, Codec | None]] = {}


def parse_content_type(ct: bytes) -> tuple[bool, Codec | None]:
    """``(is_stream, codec)`` for a Connect content type; codec None if unknown."""
    hit = _CT_CACHE.get(ct)
    if hit is not None:
        return hit
    base = ct.split(b";", 1)[0].strip().lower()
    if base.startswith(b"application/connect+"):
        result = True, codec_for(base[20:].decode("latin-1"))
    elif base.startswith(b"application/"):
        result = False, codec_for(base[12:].decode("latin-1"))
    else:
        result = False, None
    if result[1] is not None and len(_CT_CACHE) < 64:
        _CT_CACHE[ct] = result
    return result


def _parse_timeout(value: bytes | None) -> float | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > _MAX_TIMEOUT_DIGITS:
        raise RpcError(Code.INVALID_ARGUMENT, f"invalid connect-timeout-ms: {value!r}")
    return int(value) / 1000.0


def _request_compressor(request: dict[bytes, bytes], header: bytes) -> Compressor | None:
    """The compressor the request body (or its messages) uses; None for identity."""
    enc = request.get(header)
    if enc is None or enc in (b"identity", b""):
        return None
    name = enc.decode("latin-1").strip().lower()
    comp = compressor_for(name)
    if comp is None:
        supported = ", ".join(supported_names())
        raise RpcError(
            Code.UNIMPLEMENTED, f"unsupported compression {name!r}; supported: {supported}"
        )
    return comp


def _response_compressor(
    request: dict[bytes, bytes], header: bytes, used: Compressor | None
) -> Compressor | None:
    """Compress responses only when the caller compressed its request with an encoding
    it also accepts back: compression costs CPU that a fast network rarely repays."""
    if used is None:
        return None
    accepted = request.get(header)
    if accepted is None:
        return None
    names = {a.split(b";", 1)[0].strip().lower() for a in accepted.split(b",")}
    return used if used.name.encode() in names else None


def _end_stream_payload(error: RpcError | None, trailers: Metadata | None) -> bytes:
    end: dict[str, Any] = {}
    if error is not None:
        end["error"] = error.to_json()
    if trailers:
        end["metadata"] = {k: [v] for k, v in trailers.items()}
    return _json_encode(end)


def allowed_methods(method: MethodDescriptor) -> list[str]:
    """The HTTP methods a Connect endpoint answers: POST, and GET when idempotent."""
    if method.kind is MethodKind.UNARY and method.idempotent:
        return ["GET", "POST"]
    return ["POST"]


def _status_headers(code: Code) -> list[tuple[bytes, bytes]]:
    return [(b":status", _STATUS_BYTES[code]), _CT_ERROR]


# ---------------------------------------------------------------------------------
# server side
# ---------------------------------------------------------------------------------
class _UnaryCall(ServerCall):
    __slots__ = ("_body", "_compress", "_decompress", "_sent")

    def __init__(
        self,
        stream: Stream,
        method: MethodDescriptor,
        codec: Codec,
        decode: DecodeFn,
        timeout: float | None,
        max_size: int,
        body: bytes | None,
        decompress: Compressor | None = None,
        compress: Compressor | None = None,
    ) -> None:
        # Fields set here rather than through super().__init__: one call less per request.
        self.stream = stream
        self.method = method
        self.codec = codec
        self.decode = decode
        self.timeout = timeout
        self.max_size = max_size
        self._body = body
        self._decompress = decompress
        self._compress = compress
        self._sent = False

    @property
    def headers_sent(self) -> bool:
        return self._sent

    async def receive(self) -> Any:
        body = self._body
        if body is None:
            body = self.stream.take_body(self.max_size)
            if body is None:
                body = await self.stream.read_all(self.max_size)
        if self._decompress is not None:
            body = self._decompress.decompress(body, self.max_size)
        return self.decode(body)

    async def send_unary(
        self, message: Any, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        body = self.codec.encode(message)
        out = [_STATUS_200, _UNARY_CT_HEADER[self.codec.name]]
        if self._compress is not None:
            body = self._compress.compress(body)
            out.append((b"content-encoding", self._compress.name.encode()))
        if headers:
            out += encode_metadata(headers)
        if trailers:
            out += encode_metadata(trailers, "trailer-")
        self._sent = True
        stream = self.stream
        if not stream.try_respond(out, body):
            stream.send_headers(out)
            await stream.send_data(body, end_stream=True)

    async def finish(
        self, error: RpcError | None, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        if error is None:  # pragma: no cover - unary calls end through send_unary
            raise RuntimeError("a unary Connect call ends with a message or an error")
        out = _status_headers(error.code)
        if headers:
            out += encode_metadata(headers)
        if trailers:
            out += encode_metadata(trailers, "trailer-")
        self._sent = True
        self.stream.send_headers(out)
        await self.stream.send_data(_json_encode(error.to_json()), end_stream=True)


class _StreamCall(EnvelopedServerCall):
    __slots__ = ("_compress", "_decompress")

    def __init__(
        self,
        stream: Stream,
        method: MethodDescriptor,
        codec: Codec,
        decode: DecodeFn,
        timeout: float | None,
        max_size: int,
        decompress: Compressor | None = None,
        compress: Compressor | None = None,
    ) -> None:
        super().__init__(stream, method, codec, timeout, max_size, decode)
        self._reader = None
        self._decompress = decompress
        self._compress = compress
        self._sent = False

    def _new_reader(self) -> MessageReader:
        return MessageReader(
            self.stream, self.max_size, self._decompress, truncated_code=Code.INVALID_ARGUMENT
        )

    def _send_headers(self, headers: Metadata | None) -> None:
        out = [_STATUS_200, _STREAM_CT_HEADER[self.codec.name]]
        if self._compress is not None:
            out.append((b"connect-content-encoding", self._compress.name.encode()))
        if headers:
            out += encode_metadata(headers)
        self._sent = True
        self.stream.send_headers(out)

    async def send_message(self, message: Any, headers: Metadata | None) -> None:
        if not self._sent:
            self._send_headers(headers)
        payload = self.codec.encode(message)
        if self._compress is not None:
            envelope = encode_envelope(self._compress.compress(payload), FLAG_COMPRESSED)
        else:
            envelope = pack_prefix(0, len(payload)) + payload  # (encode_envelope inline)
        await self.stream.send_data(envelope)

    async def send_unary(
        self, message: Any, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        await self.send_message(message, headers)
        await self.finish(None, headers, trailers)

    async def finish(
        self, error: RpcError | None, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        if not self._sent:
            self._send_headers(headers)
        payload = _end_stream_payload(error, trailers)
        await self.stream.send_data(encode_envelope(payload, FLAG_END_STREAM), end_stream=True)


class ConnectServer(ServerProtocol):
    """Connect, server side."""

    name = "connect"

    def accepts(self, method: bytes | None, content_type: bytes | None) -> bool:
        if content_type is None:
            return method == b"GET"
        return parse_content_type(content_type)[1] is not None

    def server_call(
        self,
        stream: Stream,
        method: MethodDescriptor,
        request: dict[bytes, bytes],
        max_size: int,
    ) -> ServerCall:
        http_method = request.get(b":method")
        if http_method == b"GET":
            return self._get_call(stream, method, request, max_size)
        if http_method != b"POST":
            raise method_not_allowed(
                method.path, (http_method or b"").decode("latin-1"), allowed_methods(method)
            )
        return self.bind(method, request.get(b"content-type", b""))(stream, request, max_size)

    def bind(self, method: MethodDescriptor, content_type: bytes) -> CallMaker:
        is_stream, codec = parse_content_type(content_type)
        if codec is None:
            raise RpcError(Code.INTERNAL, "unsupported content type")
        decode = method.request_decoder(codec)
        if is_stream:
            if method.kind is _UNARY:
                raise RpcError(Code.UNIMPLEMENTED, f"{method.path} is unary; use application/json")

            def make_stream(
                stream: Stream, request: dict[bytes, bytes], max_size: int
            ) -> ServerCall:
                timeout = _parse_timeout(request.get(b"connect-timeout-ms"))
                used = _request_compressor(request, b"connect-content-encoding")
                back = _response_compressor(request, b"connect-accept-encoding", used)
                return _StreamCall(stream, method, codec, decode, timeout, max_size, used, back)

            return make_stream
        if method.kind is not _UNARY:
            raise RpcError(
                Code.UNIMPLEMENTED,
                f"{method.path} is a stream; use application/connect+{codec.name}",
            )

        def make_unary(stream: Stream, request: dict[bytes, bytes], max_size: int) -> ServerCall:
            timeout_ms = request.get(b"connect-timeout-ms")
            timeout = None if timeout_ms is None else _parse_timeout(timeout_ms)
            if b"content-encoding" not in request:
                return _UnaryCall(stream, method, codec, decode, timeout, max_size, None)
            used = _request_compressor(request, b"content-encoding")
            back = _response_compressor(request, b"accept-encoding", used)
            return _UnaryCall(stream, method, codec, decode, timeout, max_size, None, used, back)

        return make_unary

    def _get_call(
        self,
        stream: Stream,
        method: MethodDescriptor,
        request: dict[bytes, bytes],
        max_size: int,
    ) -> ServerCall:
        if method.kind is not MethodKind.UNARY or not method.idempotent:
            raise HttpStatusError(
                Code.UNIMPLEMENTED,
                f"GET is not allowed on {method.path}: the method is not marked idempotent",
                405,
                [(b"allow", b"POST")],
            )
        path = request.get(b":path", b"")
        query = parse_qs(path.partition(b"?")[2].decode("latin-1"), keep_blank_values=True)
        codec = codec_for(query.get("encoding", [""])[0])
        if codec is None:
            raise RpcError(Code.INVALID_ARGUMENT, "GET needs encoding=json or encoding=msgpack")
        compression = query.get("compression", ["identity"])[0]
        decompress = _request_compressor({b"c": compression.encode("latin-1")}, b"c")
        raw = query.get("message", [""])[0]
        if query.get("base64", ["0"])[0] == "1":
            try:
                body = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            except (binascii.Error, ValueError):
                raise RpcError(Code.INVALID_ARGUMENT, "message is not valid base64") from None
        else:
            body = raw.encode("utf-8", "surrogateescape")
        if len(body) > max_size:
            raise RpcError(Code.RESOURCE_EXHAUSTED, f"message larger than {max_size} bytes")
        timeout = _parse_timeout(request.get(b"connect-timeout-ms"))
        back = _response_compressor(request, b"accept-encoding", decompress)
        decode = method.request_decoder(codec)
        return _UnaryCall(stream, method, codec, decode, timeout, max_size, body, decompress, back)

    async def reject(self, stream: Stream, request: dict[bytes, bytes], error: RpcError) -> None:
        is_stream, codec = parse_content_type(request.get(b"content-type", b""))
        if is_stream and codec is not None and request.get(b":method") == b"POST":
            stream.send_headers([_STATUS_200, _STREAM_CT_HEADER[codec.name]])
            payload = _end_stream_payload(error, None)
            await stream.send_data(encode_envelope(payload, FLAG_END_STREAM), end_stream=True)
            return
        stream.send_headers(error_status_headers(error, b"application/json"))
        await stream.send_data(_json_encode(error.to_json()), end_stream=True)


CONNECT = ConnectServer()


# ---------------------------------------------------------------------------------
# client side
# ---------------------------------------------------------------------------------
def _decode_headers(headers: list[tuple[bytes, bytes]], md: ResponseMetadata | None) -> int:
    if md is None and headers and headers[0][0] == b":status":
        # HTTP/2 puts the (one) response pseudo-header first: nothing else to look at.
        return int(headers[0][1])
    status = 0
    for name, value in headers:
        if name == b":status":
            status = int(value)
        elif md is not None and name[:1] != b":":
            key = name.decode("latin-1")
            if key.startswith("trailer-"):
                md.trailers[key[8:]] = value.decode("latin-1")
            else:
                md.headers[key] = value.decode("latin-1")
    return status


def _error_from_end(end: Any, md: ResponseMetadata | None) -> RpcError | None:
    if not isinstance(end, dict):
        return RpcError(Code.INTERNAL, "malformed end-of-stream message")
    meta = end.get("metadata")
    if md is not None and isinstance(meta, dict):
        for k, v in meta.items():
            if isinstance(v, list) and v:
                md.trailers[str(k)] = str(v[-1])
    err = end.get("error")
    if err is None:
        return None
    error = RpcError.from_json(err)
    if md is not None:
        error.metadata = {**md.headers, **md.trailers}
    return error


class ConnectClient(ClientProtocol):
    """Connect, client side."""

    name = "connect"
    bare_unary = True
    end_flags = FLAG_END_STREAM

    def __init__(
        self, codec: Codec = JSON, *, use_get: bool = False, compression: str | None = None
    ) -> None:
        self.codec = codec
        self.use_get = use_get
        self._unary_ct = _UNARY_CT_HEADER[codec.name]
        self._stream_ct = _STREAM_CT_HEADER[codec.name]
        self.compressor: Compressor | None = None
        if compression not in (None, "identity"):
            self.compressor = compressor_for(compression)
            if self.compressor is None:
                supported = ", ".join(supported_names())
                raise ValueError(f"unknown compression {compression!r}; supported: {supported}")

    def _decompressor(self, headers: list[tuple[bytes, bytes]], name: bytes) -> Compressor | None:
        """The compressor a response declares in header ``name`` (None: identity)."""
        for key, value in headers:
            if key == name and value not in (b"identity", b""):
                comp = compressor_for(value.decode("latin-1").strip().lower())
                if comp is None:
                    raise RpcError(
                        Code.INTERNAL, f"response uses unsupported compression {value!r}"
                    )
                return comp
        return None

    def _headers(
        self,
        base: list[tuple[bytes, bytes]],
        path: bytes,
        ct: tuple[bytes, bytes],
        timeout: float | None,
        metadata: Metadata | None,
    ) -> list[tuple[bytes, bytes]]:
        out = [*base, (b":path", path), ct, _PROTOCOL_VERSION, _USER_AGENT]
        if timeout is not None:
            out.append((b"connect-timeout-ms", str(max(1, int(timeout * 1000))).encode()))
        if metadata:
            out += encode_metadata(metadata)
        return out

    # -- unary calls: one plain body each way --------------------------------------------
    def unary_request(
        self,
        base: list[tuple[bytes, bytes]],
        method: MethodDescriptor,
        request: Any,
        timeout: float | None,
        metadata: Metadata | None,
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        body = self.codec.encode(request)
        comp = self.compressor
        if comp is not None:
            body = comp.compress(body)
        if not (self.use_get and method.idempotent):
            headers = self._headers(base, method.path_bytes, self._unary_ct, timeout, metadata)
            if comp is not None:
                name = comp.name.encode()
                headers += [(b"content-encoding", name), (b"accept-encoding", name)]
            return headers, body
        query = "?encoding=" + self.codec.name + "&base64=1&connect=v1&message="
        query += base64.urlsafe_b64encode(body).rstrip(b"=").decode()
        if comp is not None:
            query += "&compression=" + comp.name
        path = method.path_bytes + query.encode()
        headers = self._headers(base, path, self._unary_ct, timeout, metadata)
        headers[0] = (b":method", b"GET")
        return [h for h in headers if h[0] != b"content-type"], None

    def unary_response(
        self,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        method: MethodDescriptor,
        response_md: ResponseMetadata | None,
        max_size: int,
    ) -> Any:
        status = _decode_headers(headers, response_md)
        if status == 200:
            if self.compressor is not None:
                used = self._decompressor(headers, b"content-encoding")
                if used is not None:
                    body = used.decompress(body, max_size)
            return method.response_decoder(self.codec)(body)
        error = _error_from_body(body, status)
        if response_md is not None:
            error.metadata = {**response_md.headers, **response_md.trailers}
        raise error

    # -- streams: enveloped messages, closed by an end-stream envelope -------------------
    def request_headers(
        self,
        base: list[tuple[bytes, bytes]],
        method: MethodDescriptor,
        timeout: float | None,
        metadata: Metadata | None,
    ) -> list[tuple[bytes, bytes]]:
        headers = self._headers(base, method.path_bytes, self._stream_ct, timeout, metadata)
        if self.compressor is not None:
            name = self.compressor.name.encode()
            headers += [(b"connect-content-encoding", name), (b"connect-accept-encoding", name)]
        return headers

    def frame(self, message: Any) -> bytes:
        payload = self.codec.encode(message)
        if self.compressor is None:
            return pack_prefix(0, len(payload)) + payload  # (encode_envelope inline)
        return encode_envelope(self.compressor.compress(payload), FLAG_COMPRESSED)

    def open_response(
        self,
        stream: Stream,
        headers: list[tuple[bytes, bytes]],
        response_md: ResponseMetadata | None,
        max_size: int,
    ) -> MessageReader | None:
        status = _decode_headers(headers, response_md)
        if status != 200:
            body = stream.take_body(max_size)
            if body is None:  # not all here yet: reading the messages raises the error
                return _ErrorBodyReader(stream, max_size, status)
            raise _error_from_body(body, status)
        used = self._decompressor(headers, b"connect-content-encoding")
        return MessageReader(stream, max_size, used, side="response")

    def finish(
        self, stream: Stream, end: bytes | None, response_md: ResponseMetadata | None
    ) -> None:
        if end is None:
            raise RpcError(Code.INTERNAL, "stream ended without an end-of-stream message")
        try:
            message = _json_decode(end)
        except msgspec.DecodeError:
            raise RpcError(Code.INTERNAL, "malformed end-of-stream message") from None
        error = _error_from_end(message, response_md)
        if error is not None:
            raise error


class _ErrorBodyReader(MessageReader):
    """The messages of a stream answered with an HTTP error status: the first read waits
    for the whole body and raises the error it holds."""

    __slots__ = ("_status",)

    def __init__(self, stream: Stream, max_size: int, status: int) -> None:
        super().__init__(stream, max_size, side="response")
        self._status = status

    def take_single(self) -> bytes | None:
        return None

    async def next(self) -> bytes | None:
        raise _error_from_body(await self._stream.read_all(self.max_size), self._status)


def _error_from_body(body: bytes, status: int) -> RpcError:
    """The error of a unary call answered with HTTP ``status`` (a JSON error, if any)."""
    try:
        obj = _json_decode(body) if body else None
    except msgspec.DecodeError:
        obj = None
    return RpcError.from_json(obj, status)

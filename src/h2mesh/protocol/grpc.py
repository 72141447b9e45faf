"""gRPC over HTTP/2 (grpc/doc/PROTOCOL-HTTP2.md), server and client.

A call is ``POST /pkg.Service/Method`` with ``content-type: application/grpc[+proto|+json|
+msgpack]`` and ``te: trailers``; both bodies are length-prefixed messages (the 5-byte
envelope shared with Connect, flag 0x01 = compressed with the ``grpc-encoding``). The
status travels in HTTP/2 trailers: ``grpc-status``, ``grpc-message`` (percent-encoded
UTF-8) and ``grpc-status-details-bin`` (a ``google.rpc.Status``); an error before any
message is a trailers-only response (everything in the headers, then end of stream).

Metadata: ordinary values are ``str``. Binary metadata (names ending in ``-bin``) travel
base64-encoded; handlers and callers see the decoded bytes as a ``str`` decoded with
latin-1 (one character per byte: ``value.encode("latin-1")`` gives the bytes back),
and may set them as such a ``str`` or as ``bytes``.

``GrpcServer``/``GrpcClient`` have small hooks (content types, how trailers and body
bytes go on the wire) that gRPC-Web overrides.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable
from operator import methodcaller
from typing import Any

from .._errors import Code, RpcError
from ..codec import PROTO, Codec, DecodeFn, codec_for
from ..compression import Compressor, compressor_for, supported_names
from ..service import MethodDescriptor
from ..transport import Stream
from ._base import (
    CallMaker,
    ClientProtocol,
    EnvelopedServerCall,
    Metadata,
    ResponseMetadata,
    ServerCall,
    ServerProtocol,
)
from ._envelope import FLAG_COMPRESSED, MessageReader, encode_envelope, pack_prefix

__all__ = [
    "FLAG_TRAILERS",
    "GRPC",
    "IDENTITY_FRAMING",
    "Framing",
    "GrpcClient",
    "GrpcServer",
    "decode_status_details",
    "encode_grpc_metadata",
    "encode_status_details",
    "encode_timeout",
    "parse_timeout",
    "parse_trailer_block",
    "percent_decode",
    "percent_encode",
]

_STATUS_200 = (b":status", b"200")
_USER_AGENT = (b"user-agent", b"h2mesh-python/0.1 grpc")
_TE = (b"te", b"trailers")
_ACCEPT_ENCODING = ", ".join(supported_names()).encode()
_ACCEPT_ENCODING_HEADER = (b"grpc-accept-encoding", _ACCEPT_ENCODING)

# Headers that are part of the gRPC protocol or HTTP, never user metadata.
_NOT_METADATA = frozenset(
    {
        b"content-type",
        b"content-length",
        b"te",
        b"user-agent",
        b"host",
        b"connection",
        b"transfer-encoding",
        b"keep-alive",
        b"upgrade",
        b"accept-encoding",
        b"content-encoding",
    }
)

# -- grpc-timeout --------------------------------------------------------------------
_TIMEOUT_UNITS = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}
_ENCODE_UNITS = (
    (b"n", 1e9),
    (b"u", 1e6),
    (b"m", 1e3),
    (b"S", 1.0),
    (b"M", 1 / 60),
    (b"H", 1 / 3600),
)


def parse_timeout(value: bytes) -> float:
    """Seconds from a ``grpc-timeout`` value: 1 to 8 digits and a unit (H M S m u n)."""
    if not 2 <= len(value) <= 9 or value[-1] not in _TIMEOUT_UNITS or not value[:-1].isdigit():
        raise RpcError(Code.INVALID_ARGUMENT, f"invalid grpc-timeout: {value!r}")
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


def encode_timeout(seconds: float) -> bytes:
    """A ``grpc-timeout`` value for ``seconds``, in the finest unit that fits 8 digits."""
    seconds = max(0.0, seconds)
    for unit, per_second in _ENCODE_UNITS:
        amount = math.ceil(seconds * per_second)
        if amount <= 99_999_999:
            return str(amount).encode() + unit
    return b"99999999H"


# -- grpc-message --------------------------------------------------------------------
_UNRESERVED = frozenset(range(0x20, 0x7F)) - {ord("%")}


def percent_encode(message: str) -> bytes:
    """``grpc-message`` encoding: UTF-8, then ``%XX`` for bytes outside 0x20-0x7E and ``%``."""
    raw = message.encode("utf-8", "surrogatepass")
    if all(b in _UNRESERVED for b in raw):
        return raw
    return b"".join(bytes((b,)) if b in _UNRESERVED else b"%%%02X" % b for b in raw)


def percent_decode(value: bytes) -> str:
    """Inverse of ``percent_encode``; malformed escapes are kept as they are."""
    if b"%" not in value:
        return value.decode("utf-8", "replace")
    out = bytearray()
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == 0x25 and _is_hex(value[i + 1 : i + 3]):
            out.append(int(value[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return out.decode("utf-8", "replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


# -- grpc-status-details-bin: google.rpc.Status, written by hand (no protobuf needed) --
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _b64decode(text: str | bytes) -> bytes:
    raw = text.encode("latin-1") if isinstance(text, str) else text
    raw = raw.strip()
    return base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=False)


def encode_status_details(error: RpcError) -> bytes:
    """``google.rpc.Status`` bytes for an error with details (Connect-style ``type``/``value``)."""
    out = bytearray()
    if error.code:
        out += _varint(1 << 3) + _varint(int(error.code))
    if error.message:
        out += _field(2, error.message.encode("utf-8", "surrogatepass"))
    for detail in error.details:
        if isinstance(detail, dict) and isinstance(detail.get("type"), str):
            type_url = detail["type"]
            if "/" not in type_url:
                type_url = "type.googleapis.com/" + type_url
            value = _b64decode(str(detail.get("value", "")))
            out += _field(3, _field(1, type_url.encode()) + _field(2, value))
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterable[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            yield number, data[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def decode_status_details(data: bytes) -> list[dict[str, str]]:
    """The details of a ``google.rpc.Status`` as Connect-style ``{"type", "value"}`` dicts."""
    details = []
    try:
        for number, value in _fields(data):
            if number == 3 and isinstance(value, bytes):
                type_url, payload = "", b""
                for n, v in _fields(value):
                    if n == 1 and isinstance(v, bytes):
                        type_url = v.decode("utf-8", "replace")
                    elif n == 2 and isinstance(v, bytes):
                        payload = v
                details.append(
                    {
                        "type": type_url.rpartition("/")[2],
                        "value": base64.b64encode(payload).rstrip(b"=").decode(),
                    }
                )
    except ValueError:
        return []
    return details


# -- metadata ------------------------------------------------------------------------
def encode_grpc_metadata(md: Metadata | None) -> list[tuple[bytes, bytes]]:
    """Metadata as header fields; ``-bin`` values base64-encoded (unpadded)."""
    if not md:
        return []
    out = []
    for key, value in md.items():
        name = key.lower().encode("latin-1")
        if name.startswith(b"grpc-") or name in _NOT_METADATA:
            continue  # reserved for the protocol
        if name.endswith(b"-bin"):
            raw = value if isinstance(value, bytes) else str(value).encode("latin-1")
            out.append((name, base64.b64encode(raw).rstrip(b"=")))
        else:
            out.append((name, str(value).encode("latin-1")))
    return out


_IS_BINARY = methodcaller("endswith", b"-bin")  # (map/any over it run in C)


def _decode_bin_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Headers with every ``-bin`` value base64-decoded (padded or not)."""
    out = []
    for name, value in headers:
        if name.endswith(b"-bin"):
            try:
                value = _b64decode(value)
            except (binascii.Error, ValueError):
                raise RpcError(
                    Code.INVALID_ARGUMENT, f"metadata {name.decode('latin-1')} is not base64"
                ) from None
        out.append((name, value))
    return out


def _metadata_into(headers: list[tuple[bytes, bytes]], into: Metadata) -> None:
    for name, value in headers:
        if name[:1] == b":" or name.startswith(b"grpc-") or name in _NOT_METADATA:
            continue
        if name.endswith(b"-bin"):
            try:
                value = _b64decode(value)
            except (binascii.Error, ValueError):
                continue
        into[name.decode("latin-1")] = value.decode("latin-1")


_STATUS_OK = (b"grpc-status", b"0")


def _status_fields(error: RpcError | None) -> list[tuple[bytes, bytes]]:
    if error is None:
        return [_STATUS_OK]
    out = [(b"grpc-status", str(int(error.code)).encode())]
    if error.message:
        out.append((b"grpc-message", percent_encode(error.message)))
    if error.details:
        out.append(
            (
                b"grpc-status-details-bin",
                base64.b64encode(encode_status_details(error)).rstrip(b"="),
            )
        )
    return out


def _error_from_fields(fields: dict[bytes, bytes]) -> RpcError | None:
    """The call's outcome from trailers (or a trailers-only response); None if OK."""
    raw = fields.get(b"grpc-status")
    if raw == b"0":
        return None  # (the common case, without Code(int(raw)): that costs a µs on 3.11)
    if raw is None:
        return RpcError(Code.UNKNOWN, "response has no grpc-status")
    try:
        code = Code(int(raw))
    except ValueError:
        return RpcError(Code.UNKNOWN, f"invalid grpc-status {raw!r}")
    if code is Code.OK:
        return None
    message = percent_decode(fields.get(b"grpc-message", b""))
    details: list[Any] = []
    bin_details = fields.get(b"grpc-status-details-bin")
    if bin_details:
        try:
            details = decode_status_details(_b64decode(bin_details))
        except (binascii.Error, ValueError):
            details = []
    return RpcError(code, message, details)


# -- content types -------------------------------------------------------------------
_CT_CACHE: dict[bytes, Codec | None] = {}


def _parse_content_type(ct: bytes | None, prefix: bytes) -> Codec | None:
    """The codec of ``prefix``, ``prefix+proto``, ``prefix+json``... or None."""
    if ct is None:
        return None
    key = prefix + b"|" + ct
    if key in _CT_CACHE:
        return _CT_CACHE[key]
    base = ct.split(b";", 1)[0].strip().lower()
    codec: Codec | None = None
    if base == prefix:
        codec = PROTO
    elif base.startswith(prefix + b"+"):
        codec = codec_for(base[len(prefix) + 1 :].decode("latin-1"))
    if len(_CT_CACHE) < 64:
        _CT_CACHE[key] = codec
    return codec


def _pick_compressors(
    request: dict[bytes, bytes],
) -> tuple[Compressor | None, Compressor | None]:
    """(request decompressor, response compressor) from grpc-encoding/grpc-accept-encoding."""
    enc = request.get(b"grpc-encoding")
    if enc is None or enc == b"identity":
        return None, None
    name = enc.decode("latin-1").strip()
    comp = compressor_for(name)
    if comp is None:
        raise RpcError(
            Code.UNIMPLEMENTED,
            f"unsupported grpc-encoding {name!r}; supported: {_ACCEPT_ENCODING.decode()}",
        )
    accepted = request.get(b"grpc-accept-encoding", b"")
    accepts = {a.strip() for a in accepted.decode("latin-1").split(",")}
    return comp, (comp if name in accepts else None)


class Framing:
    """Body bytes <-> envelope bytes. gRPC sends envelopes as they are; gRPC-Web-text
    base64-encodes them, and needs one instance per call for the partial input."""

    __slots__ = ()

    def decode(self, chunk: bytes) -> bytes:
        return chunk

    def decode_end(self) -> bytes:
        """Whatever is left when the body ends (raises if the body was cut short)."""
        return b""

    def encode(self, data: bytes) -> bytes:
        return data


IDENTITY_FRAMING = Framing()
FLAG_TRAILERS = 0x80


# ---------------------------------------------------------------------------------
# server side
# ---------------------------------------------------------------------------------
class GrpcCall(EnvelopedServerCall):
    """One gRPC call on the server."""

    __slots__ = (
        "_decompressor",
        "_framing",
        "_head_fields",
        "_proto",
        "_response_comp",
    )

    def __init__(
        self,
        proto: GrpcServer,
        framing: Framing,
        stream: Stream,
        method: MethodDescriptor,
        codec: Codec,
        decode: DecodeFn,
        head: tuple[tuple[bytes, bytes], ...],
        timeout: float | None,
        max_size: int,
        decompressor: Compressor | None,
        response_comp: Compressor | None,
    ) -> None:
        # Fields set here rather than through super().__init__: one call less per request.
        self.stream = stream
        self.method = method
        self.codec = codec
        self.decode = decode
        self.timeout = timeout
        self.max_size = max_size
        self._proto = proto
        self._framing = framing
        self._head_fields = head
        self._decompressor = decompressor
        self._response_comp = response_comp
        self._sent = False
        # A unary request that came whole needs no reader; one framed (base64, gRPC-Web
        # text) is read through the framing.
        self._reader = None if framing is IDENTITY_FRAMING else self._new_reader()

    def _new_reader(self) -> MessageReader:
        framing = self._framing
        # (Identity framing is no framing: the reader then takes a whole body at once.)
        return MessageReader(
            self.stream,
            self.max_size,
            self._decompressor,
            None if framing is IDENTITY_FRAMING else framing,
        )

    def _head(self, headers: Metadata | None) -> list[tuple[bytes, bytes]]:
        out = [*self._head_fields]
        if self._response_comp is not None:
            out.append((b"grpc-encoding", self._response_comp.name.encode()))
        if headers:
            out += encode_grpc_metadata(headers)
        return out

    async def send_message(self, message: Any, headers: Metadata | None) -> None:
        await self.stream.send_data(self._message_frame(message, headers))

    def _message_frame(self, message: Any, headers: Metadata | None) -> bytes:
        """The body bytes of one response message (the response headers go first)."""
        if not self._sent:
            self._sent = True
            if headers or self._response_comp is not None:
                self.stream.send_headers(self._head(headers))
            else:
                self.stream.send_headers(self._head_fields)  # (most calls: as bound)
        return self._frame(message)

    def _frame(self, message: Any) -> bytes:
        """One response message, enveloped (and compressed, and framed) for the body."""
        payload = self.codec.encode(message)
        if len(payload) > self.max_size:
            raise RpcError(
                Code.RESOURCE_EXHAUSTED, f"response message larger than {self.max_size} bytes"
            )
        comp = self._response_comp
        if comp is not None:
            frame = encode_envelope(comp.compress(payload), FLAG_COMPRESSED)
        else:
            frame = pack_prefix(0, len(payload)) + payload  # (encode_envelope inline)
        framing = self._framing
        return frame if framing is IDENTITY_FRAMING else framing.encode(frame)

    async def send_unary(
        self, message: Any, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        # send_message and finish in one: this runs for every unary call.
        stream = self.stream
        fields = [_STATUS_OK]
        if trailers:
            fields += encode_grpc_metadata(trailers)
        if self._proto.http_trailers and not self._sent:
            # The common call: head, message and trailers at once, if there is room.
            frame = self._frame(message)
            head = self._head(headers) if headers or self._response_comp else self._head_fields
            if stream.try_respond(head, frame, fields):
                self._sent = True
                return
            self._sent = True
            stream.send_headers(head)
            await stream.send_data(frame)
            stream.send_trailers(fields)
            return
        await stream.send_data(self._message_frame(message, headers))
        if self._proto.http_trailers:
            stream.send_trailers(fields)
        else:
            await self._proto.send_trailers(stream, self._framing, fields)

    async def finish(
        self, error: RpcError | None, headers: Metadata | None, trailers: Metadata | None
    ) -> None:
        fields = _status_fields(error)
        if trailers:
            fields += encode_grpc_metadata(trailers)
        if not self._sent:
            # Trailers-only: no message was sent, so everything goes in one header block.
            self._sent = True
            self.stream.send_headers(self._head(headers) + fields, end_stream=True)
        elif self._proto.http_trailers:
            self.stream.send_trailers(fields)
        else:
            await self._proto.send_trailers(self.stream, self._framing, fields)


class GrpcServer(ServerProtocol):
    """gRPC, server side."""

    name = "grpc"
    content_type = b"application/grpc"
    # A gRPC-Web body ends with a trailer envelope; plain gRPC sends trailers instead.
    end_flags = FLAG_TRAILERS
    #: The status goes in HTTP trailers (so the call needs HTTP/2); gRPC-Web, which has
    #: none, sends it with ``send_trailers`` at the end of the body instead.
    http_trailers = True

    def accepts(self, method: bytes | None, content_type: bytes | None) -> bool:
        return _parse_content_type(content_type, self.content_type) is not None

    # -- hooks gRPC-Web overrides --------------------------------------------------------
    def content_type_header(self, codec: Codec) -> tuple[bytes, bytes]:
        if codec is PROTO:
            return (b"content-type", self.content_type)
        return (b"content-type", self.content_type + b"+" + codec.name.encode())

    def reject_headers(self, request: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        return []

    def framing(self) -> Framing:
        """How body bytes map to envelope bytes for one call (identity for gRPC)."""
        return IDENTITY_FRAMING

    async def send_trailers(
        self, stream: Stream, framing: Framing, fields: list[tuple[bytes, bytes]]
    ) -> None:
        """(Without ``http_trailers``) End the body with the status ``fields``."""
        raise NotImplementedError

    # -- ServerProtocol --------------------------------------------------------------
    def server_call(
        self,
        stream: Stream,
        method: MethodDescriptor,
        request: dict[bytes, bytes],
        max_size: int,
    ) -> ServerCall:
        if request.get(b":method") != b"POST":
            raise RpcError(Code.UNIMPLEMENTED, "gRPC calls use POST")
        return self.bind(method, request.get(b"content-type", b""))(stream, request, max_size)

    def bind(self, method: MethodDescriptor, content_type: bytes) -> CallMaker:
        codec = _parse_content_type(content_type, self.content_type)
        if codec is None:  # pragma: no cover - negotiate only routes known content types
            raise RpcError(Code.INTERNAL, "unsupported content type")
        decode = method.request_decoder(codec)
        head = (_STATUS_200, self.content_type_header(codec), _ACCEPT_ENCODING_HEADER)
        # A framing with no state of its own (identity) serves every call.
        framing: Framing | None = self.framing()
        if framing is not IDENTITY_FRAMING:
            framing = None
        needs_trailers = self.http_trailers

        def make(stream: Stream, request: dict[bytes, bytes], max_size: int) -> ServerCall:
            if needs_trailers and not stream.supports_trailers:
                raise RpcError(
                    Code.INTERNAL, "gRPC needs HTTP/2 (trailers); use gRPC-Web over HTTP/1.1"
                )
            raw_timeout = request.get(b"grpc-timeout")
            timeout = parse_timeout(raw_timeout) if raw_timeout is not None else None
            decompressor = response_comp = None
            if b"grpc-encoding" in request:
                decompressor, response_comp = _pick_compressors(request)
            headers = stream.headers
            # (Names hold no spaces: the joined names are a cheap first look for "-bin".)
            if (
                headers is not None
                and b"-bin" in b" ".join(request)
                and any(map(_IS_BINARY, request))
            ):
                # Handlers see binary metadata decoded (as latin-1 text, one char per byte).
                headers[:] = _decode_bin_headers(headers)
            return GrpcCall(
                self,
                framing or self.framing(),
                stream,
                method,
                codec,
                decode,
                head,
                timeout,
                max_size,
                decompressor,
                response_comp,
            )

        return make

    async def reject(self, stream: Stream, request: dict[bytes, bytes], error: RpcError) -> None:
        codec = _parse_content_type(request.get(b"content-type"), self.content_type) or PROTO
        out = [_STATUS_200, self.content_type_header(codec), _ACCEPT_ENCODING_HEADER]
        out += self.reject_headers(request)
        out += _status_fields(error)
        stream.send_headers(out, end_stream=True)


GRPC = GrpcServer()


# ---------------------------------------------------------------------------------
# client side
# ---------------------------------------------------------------------------------
class GrpcClient(ClientProtocol):
    """gRPC, client side: ``Channel(url, protocol="grpc", codec="proto")``."""

    name = "grpc"
    content_type = b"application/grpc"
    # A gRPC-Web body ends with a trailer envelope; plain gRPC sends trailers instead.
    end_flags = FLAG_TRAILERS

    def __init__(self, codec: Codec = PROTO, compression: str | None = None) -> None:
        self.codec = codec
        if codec is PROTO:
            self._ct = (b"content-type", self.content_type)
        else:
            self._ct = (b"content-type", self.content_type + b"+" + codec.name.encode())
        self.compressor: Compressor | None = None
        if compression is not None and compression != "identity":
            self.compressor = compressor_for(compression)
            if self.compressor is None:
                raise ValueError(
                    f"unknown compression {compression!r}; known: {', '.join(supported_names())}"
                )

    # -- hooks gRPC-Web overrides --------------------------------------------------------
    def protocol_headers(self) -> list[tuple[bytes, bytes]]:
        return [_TE]

    def framing(self) -> Framing:
        return IDENTITY_FRAMING

    # -- the call-flow hooks ----------------------------------------------------------
    def request_headers(
        self,
        base: list[tuple[bytes, bytes]],
        method: MethodDescriptor,
        timeout: float | None,
        metadata: Metadata | None,
    ) -> list[tuple[bytes, bytes]]:
        out = [*base, (b":path", method.path_bytes), self._ct, *self.protocol_headers()]
        out += [_USER_AGENT, _ACCEPT_ENCODING_HEADER]
        if self.compressor is not None:
            out.append((b"grpc-encoding", self.compressor.name.encode()))
        if timeout is not None:
            out.append((b"grpc-timeout", encode_timeout(timeout)))
        if metadata:
            out += encode_grpc_metadata(metadata)
        return out

    def frame(self, message: Any) -> bytes:
        payload = self.codec.encode(message)
        if self.compressor is not None:
            return encode_envelope(self.compressor.compress(payload), FLAG_COMPRESSED)
        return pack_prefix(0, len(payload)) + payload  # (encode_envelope inline)

    def open_response(
        self,
        stream: Stream,
        headers: list[tuple[bytes, bytes]],
        response_md: ResponseMetadata | None,
        max_size: int,
    ) -> MessageReader | None:
        fields = dict(headers)
        if response_md is not None:
            _metadata_into(headers, response_md.headers)
        status = fields.get(b":status", b"")
        if status != b"200":
            raise _http_error(status)
        if b"grpc-status" in fields:
            # Trailers-only response.
            error = _error_from_fields(fields)
            if error is not None:
                error.metadata = dict(response_md.headers) if response_md else {}
                raise error
            return None
        decompressor: Compressor | None = None
        enc = fields.get(b"grpc-encoding")
        if enc is not None and enc != b"identity":
            decompressor = compressor_for(enc.decode("latin-1"))
            if decompressor is None:
                raise RpcError(Code.INTERNAL, f"server used unknown grpc-encoding {enc!r}")
        framing = self.framing()
        return MessageReader(
            stream,
            max_size,
            decompressor,
            None if framing is IDENTITY_FRAMING else framing,
            side="response",
        )

    def finish(
        self, stream: Stream, end: bytes | None, response_md: ResponseMetadata | None
    ) -> None:
        trailers = parse_trailer_block(end) if end is not None else (stream.trailers or [])
        if response_md is not None:
            _metadata_into(trailers, response_md.trailers)
        error = _error_from_fields(dict(trailers))
        if error is not None:
            if response_md is not None:
                error.metadata = {**response_md.headers, **response_md.trailers}
            raise error


def parse_trailer_block(payload: bytes) -> list[tuple[bytes, bytes]]:
    """``name: value\\r\\n`` lines of a gRPC-Web trailer frame, names lower-cased."""
    out = []
    for line in payload.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            out.append((name.strip().lower(), value.strip()))
    return out


def _http_error(status: bytes) -> RpcError:
    try:
        code = int(status)
    except ValueError:
        code = 0
    return RpcError(Code.from_http_status(code), f"HTTP status {code}")

"""The protobuf codec, and protobuf support for the JSON codec.

Services whose message types are generated protobuf classes (``messages_pb2.X``) speak
``proto`` (binary) and ``json`` (the canonical protobuf JSON mapping). Python-first
services (Structs, dataclasses, TypedDicts) speak ``proto`` too, through message classes
built from their schema (``h2mesh.schema``): slower than generated code, but wire
compatible with the ``.proto`` that ``h2mesh proto`` writes. ``protobuf`` is an optional
dependency (``pip install h2mesh[proto]``): nothing here imports it until ``proto`` or a
protobuf message type is actually used.
"""

from __future__ import annotations

from typing import Any

from .._errors import Code, RpcError
from .._protobuf import is_message_type

__all__ = [
    "PROTO",
    "is_message_type",
    "json_decoder",
    "json_encode",
    "msgpack_decoder",
    "to_plain",
]


def _proto_decoder(tp: Any) -> Any:
    from google.protobuf.message import DecodeError

    parse = tp.FromString

    def decode(data: bytes | memoryview) -> Any:
        try:
            return parse(bytes(data))
        except (DecodeError, ValueError, TypeError) as exc:
            raise RpcError(
                Code.INVALID_ARGUMENT, f"malformed protobuf {tp.__name__}: {exc}"
            ) from None

    return decode


def json_decoder(tp: Any) -> Any:
    """Decode protobuf JSON into a message of class ``tp``."""
    from google.protobuf import json_format

    def decode(data: bytes | memoryview) -> Any:
        try:
            return json_format.Parse(bytes(data), tp(), ignore_unknown_fields=False)
        except (json_format.ParseError, ValueError, TypeError) as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"invalid JSON {tp.__name__}: {exc}") from None

    return decode


def msgpack_decoder(tp: Any) -> Any:
    """Decode MessagePack (a map shaped as the protobuf JSON mapping) into a ``tp``."""
    import msgspec
    from google.protobuf import json_format

    def decode(data: bytes | memoryview) -> Any:
        try:
            plain = msgspec.msgpack.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"malformed MessagePack: {exc}") from None
        try:
            return json_format.ParseDict(plain, tp(), ignore_unknown_fields=False)
        except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
            raise RpcError(
                Code.INVALID_ARGUMENT, f"invalid MessagePack {tp.__name__}: {exc}"
            ) from None

    return decode


def to_plain(message: Any) -> Any:
    """A protobuf message as plain values (dicts, lists, strings), shaped as its JSON."""
    from google.protobuf import json_format

    return json_format.MessageToDict(message)


def json_encode(message: Any) -> bytes:
    """A protobuf message as compact protobuf JSON."""
    from google.protobuf import json_format

    text: str = json_format.MessageToJson(message, indent=None)
    return text.encode()


def _refuse(tp: Any, reason: str) -> Any:
    def decode(data: bytes | memoryview) -> Any:
        raise RpcError(
            Code.INTERNAL, f"{getattr(tp, '__name__', tp)!s} cannot travel as protobuf: {reason}"
        )

    return decode


def _schema_decoder(tp: Any) -> Any:
    """Decode protobuf bytes into a Python-first type, through its schema."""
    import msgspec

    from ..schema import SchemaError, message_codec

    try:
        _, parse = message_codec(tp)
    except SchemaError as exc:
        return _refuse(tp, str(exc))
    except ImportError:
        return _refuse(tp, "the protobuf package is not installed (pip install h2mesh[proto])")
    from google.protobuf.message import DecodeError

    name = getattr(tp, "__name__", str(tp))

    def decode(data: bytes | memoryview) -> Any:
        try:
            return parse(bytes(data))
        except msgspec.ValidationError as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"invalid protobuf {name}: {exc}") from None
        except (DecodeError, ValueError, TypeError) as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"malformed protobuf {name}: {exc}") from None

    return decode


def _schema_encode(value: Any) -> bytes:
    from ..schema import SchemaError, message_codec

    try:
        encode, _ = message_codec(type(value))
    except SchemaError as exc:
        raise TypeError(f"cannot encode {type(value).__name__} as protobuf: {exc}") from None
    return encode(value)


class _ProtoCodec:
    name = "proto"

    def encode(self, value: Any) -> bytes:
        serialize = getattr(value, "SerializeToString", None)
        if serialize is None:
            # A Python-first message: its type picks the schema (so TypedDict values,
            # plain dicts at run time, cannot be encoded; Structs and dataclasses can).
            return _schema_encode(value)
        return serialize()  # type: ignore[no-any-return]

    def decoder(self, tp: Any) -> Any:
        if is_message_type(tp):
            return _proto_decoder(tp)
        return _schema_decoder(tp)

    def __repr__(self) -> str:
        return "<codec proto>"


PROTO = _ProtoCodec()

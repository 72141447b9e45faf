"""Message codecs: tiny objects that turn Python values into bytes and back.

A codec has a ``name`` (the suffix used in content types: ``json``, ``msgpack``), an
``encode`` function and a ``decoder(type)`` factory. Decoders are built once per
message type and cached by the method descriptor, so the hot path only calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from .. import _pydantic
from .._errors import Code, RpcError
from .proto import PROTO as _PROTO
from .proto import is_message_type, json_decoder, msgpack_decoder

__all__ = ["JSON", "MSGPACK", "PROTO", "Codec", "DecodeFn", "codec_for", "is_message_type"]

DecodeFn = Callable[[bytes | memoryview], Any]


class Codec(Protocol):
    """What every message codec provides."""

    name: str

    def encode(self, value: Any) -> bytes: ...

    def decoder(self, tp: Any) -> DecodeFn: ...


def _is_message(value: Any) -> bool:
    return hasattr(value, "DESCRIPTOR") and hasattr(value, "SerializeToString")


def _json_enc_hook(value: Any) -> Any:
    if _is_message(value):
        from .proto import json_encode

        # A protobuf message: its canonical JSON, as a raw fragment.
        return msgspec.Raw(json_encode(value))
    if _pydantic.is_pydantic_model(type(value)):
        # pydantic's own (compiled) JSON serializer, with the aliases it reads.
        return msgspec.Raw(value.model_dump_json(by_alias=True))
    return _enc_hook(value)


def _enc_hook(value: Any) -> Any:
    if _is_message(value):
        from .proto import to_plain

        # A protobuf message: the values of its canonical JSON, as MessagePack. (A JSON
        # fragment spliced into MessagePack output would corrupt it.)
        return to_plain(value)
    # Objects exposing a dict view (pydantic models, simple records) encode as that.
    if _pydantic.is_pydantic_model(type(value)):
        return value.model_dump(mode="json", by_alias=True)
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    raise TypeError(f"cannot encode objects of type {type(value).__name__}")


def _wrap(decode: Callable[[Any], Any], label: str) -> DecodeFn:
    def decode_or_raise(data: bytes | memoryview) -> Any:
        try:
            return decode(data)
        except msgspec.ValidationError as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"invalid {label} message: {exc}") from None
        except msgspec.DecodeError as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"malformed {label}: {exc}") from None
        except UnicodeDecodeError as exc:
            # msgspec's MessagePack decoder raises this for a str that is not UTF-8.
            raise RpcError(
                Code.INVALID_ARGUMENT, f"malformed {label}: a string is not UTF-8 ({exc.reason})"
            ) from None

    return decode_or_raise


def _integral_floats(value: Any) -> tuple[Any, bool]:
    """``value`` with every float that has no fractional part made an int, and whether
    any was."""
    if isinstance(value, float):
        if value.is_integer():
            return int(value), True
        return value, False
    if isinstance(value, list):
        changed = False
        for i, item in enumerate(value):
            value[i], hit = _integral_floats(item)
            changed |= hit
        return value, changed
    if isinstance(value, dict):
        changed = False
        for key, item in value.items():
            value[key], hit = _integral_floats(item)
            changed |= hit
        return value, changed
    return value, False


def _json_decoder(tp: Any) -> DecodeFn:
    decode = msgspec.json.Decoder(tp).decode
    strict = _wrap(decode, "JSON")

    def decode_or_raise(data: bytes | memoryview) -> Any:
        try:
            return decode(data)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise RpcError(Code.INVALID_ARGUMENT, f"invalid JSON message: {exc}") from None
        except msgspec.DecodeError as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"malformed JSON: {exc}") from None
        except UnicodeDecodeError as exc:  # (msgspec's answer to a string that is not UTF-8)
            raise RpcError(
                Code.INVALID_ARGUMENT, f"malformed JSON: a string is not UTF-8 ({exc.reason})"
            ) from None
        # JSON has one number type: 3.0 is an integer to JSON Schema (and to JavaScript),
        # so an int field takes it. Only this rare path pays for a second decode.
        try:
            plain = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:  # (the typed decode stopped before seeing it)
            raise RpcError(Code.INVALID_ARGUMENT, f"malformed JSON: {exc}") from None
        fixed, changed = _integral_floats(plain)
        if not changed:
            return strict(data)
        return strict(msgspec.json.encode(fixed))

    return decode_or_raise


class _JsonCodec:
    name = "json"

    def __init__(self) -> None:
        self.encode = msgspec.json.Encoder(enc_hook=_json_enc_hook).encode

    def decoder(self, tp: Any) -> DecodeFn:
        if is_message_type(tp):
            return json_decoder(tp)  # type: ignore[no-any-return]
        if _pydantic.is_pydantic_model(tp):
            return _pydantic.json_decoder(tp)
        return _json_decoder(tp)

    def __repr__(self) -> str:
        return "<codec json>"


class _MsgpackCodec:
    name = "msgpack"

    def __init__(self) -> None:
        self.encode = msgspec.msgpack.Encoder(enc_hook=_enc_hook).encode

    def decoder(self, tp: Any) -> DecodeFn:
        if is_message_type(tp):
            return msgpack_decoder(tp)  # type: ignore[no-any-return]
        if _pydantic.is_pydantic_model(tp):
            return _pydantic.msgpack_decoder(tp)
        return _wrap(msgspec.msgpack.Decoder(tp).decode, "MessagePack")

    def __repr__(self) -> str:
        return "<codec msgpack>"


JSON: Codec = _JsonCodec()
MSGPACK: Codec = _MsgpackCodec()
PROTO: Codec = _PROTO

_CODECS: dict[str, Codec] = {"json": JSON, "msgpack": MSGPACK, "proto": PROTO}


def codec_for(name: str) -> Codec | None:
    """The codec registered under ``name`` (``json``, ``msgpack``, ``proto``), or None."""
    return _CODECS.get(name)

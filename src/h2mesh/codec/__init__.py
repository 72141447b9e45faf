"""Message codecs: tiny objects that turn Python values into bytes and back.

A codec has a ``name`` (the suffix used in content types: ``json``, ``msgpack``), an
``encode`` function and a ``decoder(type)`` factory. Decoders are built once per
message type and cached by the method descriptor, so the hot path only calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from .._errors import Code, RpcError
from .proto import PROTO as _PROTO
from .proto import is_message_type, json_decoder, msgpack_decoder

__all__ = ["JSON", "MSGPACK", "PROTO", "Codec", "DecodeFn", "codec_for"]

DecodeFn = Callable[[bytes | memoryview], Any]


class Codec(Protocol):
    """What every message codec provides."""

    name: str

    def encode(self, value: Any) -> bytes: ...

    def decoder(self, tp: Any) -> DecodeFn: ...


def _is_message(value: Any) -> bool:
    return hasattr(value, "DESCRIPTOR") and hasattr(value, "SerializeToString")


def _enc_hook(value: Any) -> Any:
    if _is_message(value):
        from .proto import json_encode

        # A protobuf message: its canonical JSON, as a raw fragment.
        return msgspec.Raw(json_encode(value))
    return _plain_hook(value)


def _msgpack_enc_hook(value: Any) -> Any:
    if _is_message(value):
        from .proto import to_plain

        # A protobuf message: the values of its canonical JSON, as MessagePack. (A JSON
        # fragment spliced into MessagePack output would corrupt it.)
        return to_plain(value)
    return _plain_hook(value)


def _plain_hook(value: Any) -> Any:
    # Objects exposing a dict view (pydantic models, simple records) encode as that.
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

    return decode_or_raise


class _JsonCodec:
    name = "json"

    def __init__(self) -> None:
        self.encode = msgspec.json.Encoder(enc_hook=_enc_hook).encode

    def decoder(self, tp: Any) -> DecodeFn:
        if is_message_type(tp):
            return json_decoder(tp)  # type: ignore[no-any-return]
        return _wrap(msgspec.json.Decoder(tp).decode, "JSON")

    def __repr__(self) -> str:
        return "<codec json>"


class _MsgpackCodec:
    name = "msgpack"

    def __init__(self) -> None:
        self.encode = msgspec.msgpack.Encoder(enc_hook=_msgpack_enc_hook).encode

    def decoder(self, tp: Any) -> DecodeFn:
        if is_message_type(tp):
            return msgpack_decoder(tp)  # type: ignore[no-any-return]
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

"""pydantic v2 models as message types (``pip install h2mesh[pydantic]``).

Nothing here imports pydantic unless a model is in use: a class can only be a pydantic
model once pydantic has been imported by the program that defined it. It sits below both
``codec/`` (which decodes models) and ``schema/`` (which describes them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import msgspec

from ._errors import Code, RpcError

__all__ = ["describe_errors", "is_pydantic_model", "json_decoder", "msgpack_decoder"]

_MAX_REPORTED = 5


def is_pydantic_model(tp: Any) -> bool:
    """True if ``tp`` is a pydantic ``BaseModel`` subclass."""
    if "pydantic" not in sys.modules or not isinstance(tp, type):
        return False
    from pydantic import BaseModel

    return issubclass(tp, BaseModel)


def describe_errors(exc: Any) -> str:
    """A pydantic ``ValidationError`` as one line naming each field path."""
    parts = []
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    for err in errors[:_MAX_REPORTED]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", "invalid")
        parts.append(f"{msg} - at `$.{loc}`" if loc else msg)
    if len(errors) > _MAX_REPORTED:
        parts.append(f"and {len(errors) - _MAX_REPORTED} more")
    return "; ".join(parts)


def _validated(validate: Callable[[Any], Any], label: str) -> Callable[[Any], Any]:
    from pydantic import ValidationError

    def decode(data: Any) -> Any:
        try:
            return validate(data)
        except ValidationError as exc:
            if exc.title and any(e.get("type") == "json_invalid" for e in exc.errors()):
                raise RpcError(Code.INVALID_ARGUMENT, f"malformed {label}") from None
            raise RpcError(
                Code.INVALID_ARGUMENT, f"invalid {label} message: {describe_errors(exc)}"
            ) from None

    return decode


def json_decoder(tp: Any) -> Callable[[bytes | memoryview], Any]:
    validate_json = tp.model_validate_json

    def parse(data: bytes | memoryview) -> Any:
        return validate_json(bytes(data) if isinstance(data, memoryview) else data)

    return _validated(parse, "JSON")


def msgpack_decoder(tp: Any) -> Callable[[bytes | memoryview], Any]:
    validate = tp.model_validate
    decode = msgspec.msgpack.Decoder().decode

    def parse(data: bytes | memoryview) -> Any:
        try:
            obj = decode(data)
        except msgspec.DecodeError as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"malformed MessagePack: {exc}") from None
        except UnicodeDecodeError as exc:  # (msgspec's answer to a str that is not UTF-8)
            raise RpcError(
                Code.INVALID_ARGUMENT,
                f"malformed MessagePack: a string is not UTF-8 ({exc.reason})",
            ) from None
        return validate(obj)

    return _validated(parse, "MessagePack")


def builtins_validator(tp: Any) -> Callable[[Any], Any]:
    """``validate(obj)`` for builtins (dicts, lists...), raising ``msgspec.ValidationError``
    so that callers handle pydantic and msgspec failures alike."""
    from pydantic import ValidationError

    validate = tp.model_validate

    def convert(obj: Any) -> Any:
        try:
            return validate(obj)
        except ValidationError as exc:
            raise msgspec.ValidationError(describe_errors(exc)) from None

    return convert

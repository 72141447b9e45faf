"""JSON Schemas of message types, with shared components (as OpenAPI wants them).

msgspec generates the schemas of Structs, dataclasses and TypedDicts; pydantic those of
its models (in validation mode for requests, serialization mode for responses);
generated protobuf classes get theirs from their descriptor (the canonical JSON
mapping). Every named type becomes one component under ``#/components/schemas/``.
The same schemas tell the REST binding which fields are repeated and what type a path
or query value must parse to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from .._protobuf import is_message_type
from .._pydantic import is_pydantic_model

__all__ = ["REF_PREFIX", "JsonSchemas", "lower_camel"]

REF_PREFIX = "#/components/schemas/"

Schema = dict[str, Any]


class JsonSchemas:
    """The schemas of a set of types: ``add`` them all, then ``build`` once."""

    def __init__(self) -> None:
        self._types: dict[tuple[Any, str], None] = {}
        self._schemas: dict[tuple[Any, str], Schema] = {}
        self.components: dict[str, Schema] = {}
        self._built = False

    def add(self, tp: Any, mode: str = "validation") -> None:
        """Include ``tp`` (``mode`` "validation" for requests, "serialization" for
        responses; it matters to pydantic models only)."""
        key = (tp, mode if is_pydantic_model(tp) else "validation")
        if key not in self._types:
            self._types[key] = None
            self._built = False

    def build(self) -> None:
        if self._built:
            return
        self.components = {}
        self._schemas = {}
        plain = [key for key in self._types if not is_pydantic_model(key[0])]
        models = [key for key in self._types if is_pydantic_model(key[0])]
        native = [key for key in plain if not is_message_type(key[0])]
        protos = [key for key in plain if is_message_type(key[0])]
        if native:
            schemas, components = msgspec.json.schema_components(
                [tp for tp, _ in native], ref_template=REF_PREFIX + "{name}"
            )
            self._merge(components)
            self._schemas.update(zip(native, schemas, strict=True))
        if models:
            from pydantic.json_schema import models_json_schema

            mapping, defs = models_json_schema(
                [(tp, mode) for tp, mode in models],  # type: ignore[misc]
                ref_template=REF_PREFIX + "{model}",
            )
            self._merge(defs.get("$defs", {}))
            for key in models:
                self._schemas[key] = dict(mapping[key])  # type: ignore[index]
        for key in protos:
            self._schemas[key] = _proto_schema(key[0].DESCRIPTOR, self.components)
        self._built = True

    def _merge(self, components: dict[str, Schema]) -> None:
        for name, schema in components.items():
            other = self.components.get(name)
            if other is not None and other != schema:
                raise ValueError(
                    f"two message types have the JSON Schema name {name!r}; rename one"
                )
            self.components[name] = schema

    def schema(self, tp: Any, mode: str = "validation") -> Schema:
        """The schema of ``tp`` (usually a ``$ref`` to its component)."""
        self.build()
        key = (tp, mode if is_pydantic_model(tp) else "validation")
        if key not in self._schemas:
            self.add(tp, mode)
            self.build()
        return self._schemas[key]

    def resolve(self, schema: Schema) -> Schema:
        """Follow ``$ref`` (and an optional's ``anyOf [T, null]``) to the schema itself."""
        for _ in range(32):
            ref = schema.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF_PREFIX):
                schema = self.components.get(ref[len(REF_PREFIX) :], {})
                continue
            members = schema.get("anyOf") or schema.get("oneOf")
            if isinstance(members, list):
                real = [m for m in members if m.get("type") != "null"]
                if len(real) == 1:
                    schema = real[0]
                    continue
            return schema
        return schema

    def field(
        self, tp: Any, path: tuple[str, ...], mode: str = "validation", *, resolve: bool = True
    ) -> Schema | None:
        """The schema of the field at ``path`` (JSON names) inside ``tp``; None if absent.

        ``resolve=False`` keeps the field's own schema (a ``$ref``) as it is.
        """
        schema = self.resolve(self.schema(tp, mode))
        for i, name in enumerate(path):
            props = schema.get("properties")
            if not isinstance(props, dict):
                return None
            if name not in props:
                # Protobuf's JSON names are lowerCamelCase; routes name proto fields.
                name = lower_camel(name)
                if name not in props:
                    return None
            last = i == len(path) - 1
            schema = props[name] if last and not resolve else self.resolve(props[name])
        return schema

    def is_repeated(self, schema: Schema | None) -> bool:
        return schema is not None and _types_of(schema) == {"array"}


def _types_of(schema: Schema) -> set[str]:
    tp = schema.get("type")
    if isinstance(tp, str):
        return {tp}
    if isinstance(tp, list):
        return {t for t in tp if isinstance(t, str)} - {"null"}
    return set()


class ScalarError(ValueError):
    """A path or query value that does not parse as its field's type."""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ScalarError("expected an integer") from None


def _int_or_number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return _float(text)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ScalarError("expected a number") from None


_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _bool(text: str) -> bool:
    value = _BOOLS.get(text)
    if value is None:
        raise ScalarError("expected true or false")
    return value


def _json_value(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        raise ScalarError("expected a JSON value") from None


def _text(text: str) -> str:
    return text


def scalar_parser(schema: Schema | None, schemas: JsonSchemas) -> Callable[[str], Any]:
    """A function from a path or query parameter's text to the JSON value its field's
    schema wants; raises ``ScalarError`` saying what was expected."""
    if schema is None:
        return _text
    schema = schemas.resolve(schema)
    kinds = _types_of(schema)
    enum = schema.get("enum")
    if isinstance(enum, list) and "string" not in kinds:
        table: dict[str, Any] = {}
        for value in enum:
            table[str(value)] = value
            if isinstance(value, str):
                table[value] = value
        choices = ", ".join(map(str, enum))

        def parse_enum(text: str) -> Any:
            if text in table:
                return table[text]
            raise ScalarError(f"expected one of {choices}")

        return parse_enum
    if "integer" in kinds:
        return _int_or_number if "number" in kinds else _int
    if "number" in kinds:
        return _float
    if "boolean" in kinds:
        return _bool
    if kinds & {"object", "array"} and "string" not in kinds:
        return _json_value
    return _text


def parse_scalar(text: str, schema: Schema | None, schemas: JsonSchemas) -> Any:
    """``scalar_parser(schema, schemas)(text)``."""
    return scalar_parser(schema, schemas)(text)


# -- generated protobuf classes: the canonical JSON mapping -----------------------------
_PROTO_SCALARS: dict[int, Schema] = {
    1: {"type": "number"},  # double
    2: {"type": "number"},  # float
    3: {"type": ["integer", "string"]},  # int64 (JSON: string or number)
    4: {"type": ["integer", "string"]},  # uint64
    5: {"type": "integer"},  # int32
    6: {"type": ["integer", "string"]},  # fixed64
    7: {"type": "integer"},  # fixed32
    8: {"type": "boolean"},
    9: {"type": "string"},
    12: {"type": "string", "contentEncoding": "base64"},
    13: {"type": "integer"},  # uint32
    15: {"type": "integer"},  # sfixed32
    16: {"type": ["integer", "string"]},  # sfixed64
    17: {"type": "integer"},  # sint32
    18: {"type": ["integer", "string"]},  # sint64
}
_TYPE_MESSAGE, _TYPE_ENUM, _LABEL_REPEATED = 11, 14, 3


def _proto_schema(desc: Any, components: dict[str, Schema]) -> Schema:
    name = desc.full_name
    if name not in components:
        components[name] = {}  # placeholder: recursive messages refer to themselves
        props: Schema = {}
        for fd in desc.fields:
            props[fd.json_name] = _proto_field(fd, components)
        components[name] = {"title": desc.name, "type": "object", "properties": props}
    return {"$ref": REF_PREFIX + name}


def _proto_value(fd: Any, components: dict[str, Schema]) -> Schema:
    if fd.type == _TYPE_MESSAGE:
        return _proto_schema(fd.message_type, components)
    if fd.type == _TYPE_ENUM:
        return {"enum": [v.name for v in fd.enum_type.values]}
    return dict(_PROTO_SCALARS.get(fd.type, {}))


def lower_camel(name: str) -> str:
    """``user_id`` -> ``userId``: protobuf's JSON name of a field."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _is_repeated(fd: Any) -> bool:
    repeated = getattr(fd, "is_repeated", None)  # protobuf >= 6; older ones have label
    if repeated is not None:
        return bool(repeated)
    return bool(fd.label == _LABEL_REPEATED)


def _proto_field(fd: Any, components: dict[str, Schema]) -> Schema:
    if _is_repeated(fd):
        msg = fd.message_type
        if msg is not None and msg.GetOptions().map_entry:
            value = _proto_value(msg.fields_by_name["value"], components)
            return {"type": "object", "additionalProperties": value}
        return {"type": "array", "items": _proto_value(fd, components)}
    return _proto_value(fd, components)

"""The protobuf schema of Python types: a small model, and the mapping that builds it.

A Python-first service (msgspec Structs, dataclasses, TypedDicts, builtins) maps onto
proto3 as follows; anything else is refused with a :class:`SchemaError` naming the field:

=================================  ==============================================
Python                             proto3
=================================  ==============================================
``int`` / ``float`` / ``bool``     ``int64`` / ``double`` / ``bool``
``str`` / ``bytes``                ``string`` / ``bytes``
``list[T]`` (tuple, set, ...)      ``repeated T``
``dict[K, T]`` (K str/int/bool)    ``map<K, T>``
Struct / dataclass / TypedDict     ``message`` (fields numbered 1, 2, ... in order)
pydantic model                     ``message`` (the same way)
``T | None``                       ``optional T`` (messages: plain, they have presence)
``enum.Enum`` (int or str values)  ``enum`` (int: the values; str: 0, 1, ... in order)
``datetime.datetime``              ``google.protobuf.Timestamp``
a generated protobuf class         that message (its file is imported)
=================================  ==============================================

``Annotated[T, msgspec.Meta(extra={"proto": 7})]`` pins a field number and
``extra={"proto_type": "int32"}`` picks another scalar of the same kind (``sint64``,
``fixed32``, ``float``...). A class defined inside a message class nests in it.
This module never imports ``protobuf``: the model renders as ``.proto`` text without it;
descriptors and message classes (``_descriptor``) need the package.

One module because it is one mapping from Python types to the model; most of its length is
the ``_Collector`` walk, whose cases share the naming and numbering state of one file.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import re
import types
import typing
from typing import Any

import msgspec

from .._protobuf import is_message_type
from .._pydantic import is_pydantic_model

__all__ = [
    "EnumModel",
    "External",
    "FieldModel",
    "FileModel",
    "MessageModel",
    "MethodModel",
    "SchemaError",
    "ServiceModel",
    "build_file",
    "service_file",
]


class SchemaError(TypeError):
    """A Python type (or service) that has no protobuf equivalent."""


# -- the model --------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class External:
    """A message defined in another .proto file (a generated class, or a well-known type)."""

    full_name: str
    file: Any  # google.protobuf.descriptor.FileDescriptor
    py_type: Any


@dataclasses.dataclass(eq=False)
class EnumModel:
    py_type: type[enum.Enum]
    name: str
    values: list[tuple[str, int, enum.Enum]]
    parent: MessageModel | None = None
    full_name: str = ""


@dataclasses.dataclass(eq=False)
class FieldModel:
    name: str  # the proto field name (the Python attribute name)
    key: str  # the key of the field in a dict form of the value (msgspec's encode name)
    number: int
    label: str  # "single", "optional", "repeated" or "map"
    type: str | EnumModel | MessageModel | External  # str: a scalar type name
    key_type: str = ""  # map key scalar type
    nullable: bool = False  # the Python type allows None (optional, or a message | None)


@dataclasses.dataclass(eq=False)
class MessageModel:
    py_type: Any
    name: str
    kind: str  # "struct", "dataclass", "typeddict" or "pydantic"
    fields: list[FieldModel] = dataclasses.field(default_factory=list)
    parent: MessageModel | None = None
    full_name: str = ""
    nested_messages: list[MessageModel] = dataclasses.field(default_factory=list)
    nested_enums: list[EnumModel] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class MethodModel:
    name: str
    input: MessageModel | External
    output: MessageModel | External
    client_streaming: bool
    server_streaming: bool
    http: tuple[Any, ...] = ()  # the method's HttpRules: its google.api.http option


@dataclasses.dataclass(eq=False)
class ServiceModel:
    name: str
    methods: list[MethodModel]


@dataclasses.dataclass(eq=False)
class FileModel:
    """One proto3 file: its messages and enums (top level), services and imports."""

    name: str
    package: str
    messages: list[MessageModel]
    enums: list[EnumModel]
    services: list[ServiceModel]
    externals: list[External]

    @property
    def dependencies(self) -> list[str]:
        """The file names this file imports, sorted."""
        return sorted({ext.file.name for ext in self.externals})

    @property
    def has_http_rules(self) -> bool:
        """True if a method has HTTP routes (the text imports google/api/annotations)."""
        return any(m.http for svc in self.services for m in svc.methods)


# -- the mapping ------------------------------------------------------------------------
SCALARS: dict[type, str] = {
    bool: "bool",
    int: "int64",
    float: "double",
    str: "string",
    bytes: "bytes",
    bytearray: "bytes",
}
# proto_type overrides allowed for each default scalar
_SCALAR_FAMILY = {
    "int64": {"int32", "int64", "uint32", "uint64", "sint32", "sint64"}
    | {"fixed32", "fixed64", "sfixed32", "sfixed64"},
    "double": {"double", "float"},
}
_MAP_KEYS = {str: "string", int: "int64", bool: "bool"}
_SEQUENCES = {
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.MutableSet,
    collections.abc.Collection,
    collections.abc.Iterable,
}
_MAPPINGS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}
_FIRST_RESERVED, _LAST_RESERVED = 19000, 19999
_MAX_NUMBER = (1 << 29) - 1
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


def is_message_class(tp: Any) -> bool:
    """True for the Python types that become messages: Structs, dataclasses, TypedDicts,
    pydantic models."""
    return isinstance(tp, type) and (
        issubclass(tp, msgspec.Struct)
        or dataclasses.is_dataclass(tp)
        or typing.is_typeddict(tp)
        or is_pydantic_model(tp)
    )


def _strip_annotated(tp: Any) -> tuple[Any, dict[str, Any]]:
    extra: dict[str, Any] = {}
    while typing.get_origin(tp) is typing.Annotated:
        for meta in tp.__metadata__:
            if isinstance(meta, msgspec.Meta) and meta.extra:
                extra.update(meta.extra)
        tp = tp.__origin__
    while isinstance(tp, typing.NewType):
        tp = tp.__supertype__
    return tp, extra


class _Collector:
    """Walks Python types, building the message and enum models of one proto package."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.messages: dict[Any, MessageModel] = {}
        self.enums: dict[Any, EnumModel] = {}
        self.externals: dict[str, External] = {}
        self.claimed: dict[str, Any] = {}

    # -- top level
    def root(self, tp: Any, where: str) -> MessageModel | External:
        base, _ = _strip_annotated(tp)
        if is_message_type(base):
            return self._external(base)
        if not is_message_class(base):
            raise SchemaError(
                f"{where}: {_type_name(base)} is not a message type; protobuf wants a "
                "msgspec Struct, dataclass, TypedDict or protobuf message here"
            )
        return self._message(base)

    def _external(self, tp: Any) -> External:
        desc = tp.DESCRIPTOR
        ext = self.externals.get(desc.full_name)
        if ext is None:
            ext = self.externals[desc.full_name] = External(desc.full_name, desc.file, tp)
        return ext

    def _timestamp(self) -> External:
        from google.protobuf import timestamp_pb2

        return self._external(timestamp_pb2.Timestamp)

    # -- messages
    def _message(self, tp: Any) -> MessageModel:
        model = self.messages.get(tp)
        if model is not None:
            return model
        if issubclass(tp, msgspec.Struct):
            config = tp.__struct_config__
            if config.array_like:
                raise SchemaError(f"{_type_name(tp)}: array_like Structs have no protobuf form")
            infos = msgspec.structs.fields(tp)
            hints = typing.get_type_hints(tp, include_extras=True)
            entries = [(f.name, f.encode_name, hints.get(f.name, f.type)) for f in infos]
            kind = "struct"
        elif dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp, include_extras=True)
            entries = [(f.name, f.name, hints[f.name]) for f in dataclasses.fields(tp)]
            kind = "dataclass"
        elif is_pydantic_model(tp):
            hints = typing.get_type_hints(tp, include_extras=True)
            entries = [
                (name, info.alias or name, hints.get(name, info.annotation))
                for name, info in tp.model_fields.items()
            ]
            kind = "pydantic"
        else:
            hints = typing.get_type_hints(tp, include_extras=True)
            entries = [(name, name, hint) for name, hint in hints.items()]
            kind = "typeddict"
        model = self.messages[tp] = MessageModel(tp, tp.__name__, kind)
        explicit: dict[int, str] = {}
        pending: list[tuple[str, str, Any, dict[str, Any]]] = []
        for name, key, hint in entries:
            where = f"{_type_name(tp)}.{name}"
            if not _IDENT.match(name):
                raise SchemaError(f"{where}: not a valid protobuf field name")
            _, extra = _strip_annotated(hint)
            number = extra.get("proto")
            if number is not None:
                if not isinstance(number, int) or isinstance(number, bool):
                    raise SchemaError(f"{where}: the proto field number must be an int")
                _check_number(number, where)
                if number in explicit:
                    raise SchemaError(
                        f"{where}: field number {number} is also used by {explicit[number]}"
                    )
                explicit[number] = name
            pending.append((name, key, hint, extra))
        next_number = 1
        for name, key, hint, extra in pending:
            where = f"{_type_name(tp)}.{name}"
            number = extra.get("proto")
            if number is None:
                while next_number in explicit or (_FIRST_RESERVED <= next_number <= _LAST_RESERVED):
                    next_number += 1
                number = next_number
                next_number += 1
                _check_number(number, where)
            model.fields.append(self._field(name, key, number, hint, where))
        return model

    def _field(self, name: str, key: str, number: int, hint: Any, where: str) -> FieldModel:
        tp, extra = _strip_annotated(hint)
        proto_type = extra.get("proto_type")
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1 or len(members) == len(typing.get_args(tp)):
                raise SchemaError(
                    f"{where}: unions of several types ({hint!r}) have no protobuf form; "
                    "use one type, optionally with None"
                )
            inner, more = _strip_annotated(members[0])
            proto_type = more.get("proto_type", proto_type)
            if _is_collection(inner):
                raise SchemaError(
                    f"{where}: an optional list or dict has no protobuf form "
                    "(repeated and map fields have no presence); drop the None"
                )
            ftype = self._single(inner, where, proto_type)
            label = "single" if isinstance(ftype, MessageModel | External) else "optional"
            return FieldModel(name, key, number, label, ftype, nullable=True)
        if origin in _SEQUENCES or tp in _SEQUENCES:
            args = typing.get_args(tp)
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                raise SchemaError(
                    f"{where}: only variable-length tuples (tuple[T, ...]) map to repeated"
                )
            if not args:
                raise SchemaError(f"{where}: {hint!r} needs an element type (list[T])")
            item = self._element(args[0], where, proto_type, "a list")
            return FieldModel(name, key, number, "repeated", item)
        if origin in _MAPPINGS or tp in _MAPPINGS:
            args = typing.get_args(tp)
            if len(args) != 2:
                raise SchemaError(f"{where}: {hint!r} needs key and value types (dict[K, V])")
            key_tp, _ = _strip_annotated(args[0])
            key_name = _MAP_KEYS.get(key_tp)
            if key_name is None:
                raise SchemaError(
                    f"{where}: map keys must be str, int or bool, not {_type_name(key_tp)}"
                )
            value = self._element(args[1], where, proto_type, "a dict value")
            return FieldModel(name, key, number, "map", value, key_name)
        return FieldModel(name, key, number, "single", self._single(tp, where, proto_type))

    def _element(
        self, hint: Any, where: str, proto_type: Any, what: str
    ) -> str | EnumModel | MessageModel | External:
        tp, extra = _strip_annotated(hint)
        proto_type = extra.get("proto_type", proto_type)
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            raise SchemaError(
                f"{where}: {what} cannot be optional or a union in protobuf ({hint!r})"
            )
        if _is_collection(tp):
            raise SchemaError(
                f"{where}: {what} cannot itself be a list or dict in protobuf ({hint!r}); "
                "wrap the inner one in a message"
            )
        return self._single(tp, where, proto_type)

    def _single(
        self, tp: Any, where: str, proto_type: Any
    ) -> str | EnumModel | MessageModel | External:
        scalar = SCALARS.get(tp) if isinstance(tp, type) else None
        if scalar is not None:
            if proto_type is not None:
                family = _SCALAR_FAMILY.get(scalar, {scalar})
                if proto_type not in family:
                    raise SchemaError(
                        f"{where}: proto_type {proto_type!r} does not fit {_type_name(tp)} "
                        f"(one of {', '.join(sorted(family))})"
                    )
                return str(proto_type)
            return scalar
        if proto_type is not None:
            raise SchemaError(f"{where}: proto_type applies to int and float fields only")
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._enum(tp, where)
        if tp is datetime.datetime:
            return self._timestamp()
        if is_message_type(tp):
            return self._external(tp)
        if is_message_class(tp):
            return self._message(tp)
        raise SchemaError(f"{where}: {_type_name(tp)} ({tp!r}) has no protobuf form")

    def _enum(self, tp: type[enum.Enum], where: str) -> EnumModel:
        model = self.enums.get(tp)
        if model is not None:
            return model
        members = list(tp)
        if not members:
            raise SchemaError(f"{where}: enum {tp.__qualname__} has no members")
        values: list[tuple[str, int, enum.Enum]] = []
        if all(isinstance(m.value, int) and not isinstance(m.value, bool) for m in members):
            values = [(m.name, int(m.value), m) for m in members]
            if not any(number == 0 for _, number, _ in values):
                raise SchemaError(
                    f"{where}: enum {tp.__qualname__} needs a member with value 0 "
                    "(proto3 enums start at 0)"
                )
            for _, number, _ in values:
                if not -(1 << 31) <= number < (1 << 31):
                    raise SchemaError(f"{where}: enum value {number} does not fit int32")
        elif all(isinstance(m.value, str) for m in members):
            values = [(m.name, i, m) for i, m in enumerate(members)]
        else:
            raise SchemaError(
                f"{where}: enum {tp.__qualname__} mixes value types; protobuf enums need "
                "all-int or all-str values"
            )
        model = self.enums[tp] = EnumModel(tp, tp.__name__, values)
        return model

    # -- layout
    def finish(self) -> tuple[list[MessageModel], list[EnumModel]]:
        """Nest classes defined inside message classes; set full names; check clashes."""
        by_qualname = {
            (m.py_type.__module__, m.py_type.__qualname__): m for m in self.messages.values()
        }
        top_messages: list[MessageModel] = []
        top_enums: list[EnumModel] = []
        for msg in self.messages.values():
            outer = by_qualname.get((msg.py_type.__module__, _outer(msg.py_type.__qualname__)))
            if outer is not None and outer is not msg:
                msg.parent = outer
                outer.nested_messages.append(msg)
            else:
                top_messages.append(msg)
        for en in self.enums.values():
            outer = by_qualname.get((en.py_type.__module__, _outer(en.py_type.__qualname__)))
            if outer is not None:
                en.parent = outer
                outer.nested_enums.append(en)
            else:
                top_enums.append(en)
        prefix = f"{self.package}." if self.package else ""
        seen: dict[str, Any] = {}

        def claim(full: str, what: Any) -> None:
            if full in seen:
                raise SchemaError(
                    f"two types map to the protobuf name {full}: {_describe(seen[full])} "
                    f"and {_describe(what)}; rename one"
                )
            seen[full] = what

        def place(items: list[Any], scope: str) -> None:
            for item in items:
                item.full_name = scope + item.name
                claim(item.full_name, item.py_type)
                if isinstance(item, EnumModel):
                    # Enum values are siblings of their enum (C++ scoping rules).
                    for value_name, _, _ in item.values:
                        claim(scope + value_name, item.py_type)
                else:
                    place([*item.nested_enums, *item.nested_messages], item.full_name + ".")

        place([*top_enums, *top_messages], prefix)
        self.claimed = seen
        return top_messages, top_enums


def _is_collection(tp: Any) -> bool:
    kinds = _SEQUENCES | _MAPPINGS
    return typing.get_origin(tp) in kinds or tp in kinds


def _outer(qualname: str) -> str:
    return qualname.rpartition(".")[0]


def _describe(tp: Any) -> str:
    return f"{getattr(tp, '__module__', '?')}.{_type_name(tp)}"


def _check_number(number: int, where: str) -> None:
    if not 1 <= number <= _MAX_NUMBER:
        raise SchemaError(f"{where}: field number {number} is outside 1..{_MAX_NUMBER}")
    if _FIRST_RESERVED <= number <= _LAST_RESERVED:
        raise SchemaError(f"{where}: field numbers 19000-19999 are reserved by protobuf")


def build_file(roots: list[Any], package: str, name: str) -> FileModel:
    """A file holding the messages of ``roots`` (message types) and what they use."""
    collector = _Collector(package)
    for tp in roots:
        collector.root(tp, _type_name(tp))
    messages, enums = collector.finish()
    return FileModel(name, package, messages, enums, [], list(collector.externals.values()))


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def service_file(service: Any, filename: str | None = None) -> FileModel:
    """The proto3 file of an h2mesh ``Service`` (class or instance).

    The package is the service name up to its last dot; the file name is the package as a
    path plus the service name in snake case (``demo.v1.Greeter`` ->
    ``demo/v1/greeter.proto``), unless the class sets ``__proto_file__`` or ``filename``
    is given.
    """
    full = service.__service_name__
    package, _, short = full.rpartition(".")
    if filename is None:
        filename = getattr(service, "__proto_file__", None)
    if filename is None:
        filename = "/".join([*package.split("."), _snake(short)]) if package else _snake(short)
        filename += ".proto"
    for part in full.split("."):
        if not _IDENT.match(part):
            raise SchemaError(f"service name {full!r} is not a valid protobuf name")
    collector = _Collector(package)
    methods: list[MethodModel] = []
    for desc in service.__methods__.values():
        where = f"{full}/{desc.name}"
        methods.append(
            MethodModel(
                desc.name,
                collector.root(desc.request_type, f"{where} request"),
                collector.root(desc.response_type, f"{where} response"),
                desc.kind.client_streams,
                desc.kind.server_streams,
                tuple(getattr(desc, "http", ())),
            )
        )
    messages, enums = collector.finish()
    if full in collector.claimed:
        raise SchemaError(f"service {full} has the name of a message or enum; rename one")
    return FileModel(
        filename,
        package,
        messages,
        enums,
        [ServiceModel(short, methods)],
        list(collector.externals.values()),
    )

"""Protobuf descriptors and message classes from the schema model (needs ``protobuf``).

The same :class:`FileModel` that renders as ``.proto`` text builds here the
``FileDescriptorProto`` (for reflection) and, through a private descriptor pool, the
message classes that carry Python values over the protobuf wire format.

Converting a Struct to the wire goes value -> message object (field by field) ->
``SerializeToString``, and back ``FromString`` -> dict -> ``msgspec.convert``: about
ten times the cost of msgspec's own JSON, which is what correctness without generated
code costs; services that need protobuf speed use generated classes directly.

One module because descriptors and the converters are two halves of one mapping (field
kinds, numbers and names must agree on both sides); split, each half would have to be read
with the other open.
"""

from __future__ import annotations

import datetime
import operator
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from ._model import (
    EnumModel,
    External,
    FieldModel,
    FileModel,
    MessageModel,
    SchemaError,
    build_file,
)

__all__ = ["file_descriptor", "message_codec", "message_file", "serialized_files"]

_TYPES = {
    "double": 1,
    "float": 2,
    "int64": 3,
    "uint64": 4,
    "int32": 5,
    "fixed64": 6,
    "fixed32": 7,
    "bool": 8,
    "string": 9,
    "bytes": 12,
    "uint32": 13,
    "sfixed32": 15,
    "sfixed64": 16,
    "sint32": 17,
    "sint64": 18,
}
_TYPE_MESSAGE, _TYPE_ENUM = 11, 14
_LABEL_OPTIONAL, _LABEL_REPEATED = 1, 3
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _entry_name(field_name: str) -> str:
    # protoc's rule: CamelCase of the field name, then "Entry".
    parts = field_name.split("_")
    return "".join(p[:1].upper() + p[1:] for p in parts) + "Entry"


def _set_type(fd: Any, tp: str | EnumModel | MessageModel | External) -> None:
    if isinstance(tp, str):
        fd.type = _TYPES[tp]
    elif isinstance(tp, EnumModel):
        fd.type = _TYPE_ENUM
        fd.type_name = "." + tp.full_name
    else:
        fd.type = _TYPE_MESSAGE
        fd.type_name = "." + tp.full_name


def _message_proto(msg: MessageModel, out: Any) -> None:
    out.name = msg.name
    for en in msg.nested_enums:
        _enum_proto(en, out.enum_type.add())
    for sub in msg.nested_messages:
        _message_proto(sub, out.nested_type.add())
    for field in msg.fields:
        fd = out.field.add()
        fd.name = field.name
        fd.number = field.number
        if field.label == "map":
            entry = out.nested_type.add()
            entry.name = _entry_name(field.name)
            entry.options.map_entry = True
            key = entry.field.add()
            key.name, key.number, key.label = "key", 1, _LABEL_OPTIONAL
            key.type = _TYPES[field.key_type]
            value = entry.field.add()
            value.name, value.number, value.label = "value", 2, _LABEL_OPTIONAL
            _set_type(value, field.type)
            fd.label = _LABEL_REPEATED
            fd.type = _TYPE_MESSAGE
            fd.type_name = f".{msg.full_name}.{entry.name}"
            continue
        fd.label = _LABEL_REPEATED if field.label == "repeated" else _LABEL_OPTIONAL
        _set_type(fd, field.type)
    # proto3 `optional`: one synthetic oneof per field, after any real ones.
    for fd in out.field:
        field = next(f for f in msg.fields if f.name == fd.name)
        if field.label == "optional":
            fd.proto3_optional = True
            fd.oneof_index = len(out.oneof_decl)
            out.oneof_decl.add().name = "_" + field.name


def _enum_proto(en: EnumModel, out: Any) -> None:
    out.name = en.name
    for name, number, _ in en.values:
        value = out.value.add()
        value.name = name
        value.number = number


def file_descriptor(model: FileModel) -> Any:
    """The ``google.protobuf.descriptor_pb2.FileDescriptorProto`` of ``model``."""
    from google.protobuf import descriptor_pb2

    fdp = descriptor_pb2.FileDescriptorProto()
    fdp.name = model.name
    if model.package:
        fdp.package = model.package
    fdp.syntax = "proto3"
    fdp.dependency.extend(model.dependencies)
    for en in model.enums:
        _enum_proto(en, fdp.enum_type.add())
    for msg in model.messages:
        _message_proto(msg, fdp.message_type.add())
    for svc in model.services:
        sd = fdp.service.add()
        sd.name = svc.name
        for m in svc.methods:
            md = sd.method.add()
            md.name = m.name
            md.input_type = "." + m.input.full_name
            md.output_type = "." + m.output.full_name
            if m.client_streaming:
                md.client_streaming = True
            if m.server_streaming:
                md.server_streaming = True
    return fdp


def serialized_files(files: list[Any]) -> dict[str, bytes]:
    """Each of ``files`` (generated ``FileDescriptor`` objects) and every file they import,
    transitively, as serialized ``FileDescriptorProto`` bytes by file name."""
    out: dict[str, bytes] = {}
    todo = list(files)
    while todo:
        fd = todo.pop()
        if fd.name in out:
            continue
        out[fd.name] = bytes(fd.serialized_pb)
        todo.extend(fd.dependencies)
    return out


# -- message classes and conversion ------------------------------------------------------
Writer = Callable[[Any, Any], None]  # (message, python value)
Reader = Callable[[Any], Any]  # message -> builtins


class _Converters:
    """Field-by-field converters between Python values and messages of one pool."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.writers: dict[int, Writer] = {}
        self.readers: dict[int, Reader] = {}

    def external_class(self, ext: External) -> Any:
        from google.protobuf import message_factory

        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(ext.full_name))

    # -- values -> messages
    def writer(self, msg: MessageModel) -> Writer:
        key = id(msg)
        found = self.writers.get(key)
        if found is not None:
            return found
        steps: list[Writer] = []

        def write(out: Any, value: Any) -> None:
            for step in steps:
                step(out, value)

        self.writers[key] = write  # before the fields: types may be recursive
        steps.extend(self._field_writer(msg, f) for f in msg.fields)
        return write

    def _item_encoder(self, tp: Any) -> Callable[[Any], Any] | None:
        if tp == "bytes":
            return bytes
        if isinstance(tp, EnumModel):
            return _enum_encoder(tp)
        return None

    def _sub_writer(self, tp: MessageModel | External) -> Writer:
        if isinstance(tp, MessageModel):
            return self.writer(tp)
        if tp.full_name == "google.protobuf.Timestamp":
            return _write_timestamp
        return _write_foreign

    def _field_writer(self, msg: MessageModel, field: FieldModel) -> Writer:
        get: Callable[[Any], Any]
        if msg.kind == "typeddict":
            get = operator.methodcaller("get", field.key)
        else:
            get = operator.attrgetter(field.name)
        name, tp = field.name, field.type
        if isinstance(tp, MessageModel | External):
            sub = self._sub_writer(tp)
            if field.label == "repeated":

                def write_list(out: Any, value: Any) -> None:
                    items = get(value)
                    if items:
                        add = getattr(out, name).add
                        for item in items:
                            sub(add(), item)

                return write_list
            if field.label == "map":

                def write_map(out: Any, value: Any) -> None:
                    items = get(value)
                    if items:
                        target = getattr(out, name)
                        for k, item in items.items():
                            sub(target[k], item)

                return write_map

            def write_one(out: Any, value: Any) -> None:
                item = get(value)
                if item is not None:
                    target = getattr(out, name)
                    target.SetInParent()
                    sub(target, item)

            return write_one
        enc = self._item_encoder(tp)
        if field.label == "repeated":

            def write_scalars(out: Any, value: Any) -> None:
                items = get(value)
                if items:
                    getattr(out, name).extend(items if enc is None else map(enc, items))

            return write_scalars
        if field.label == "map":

            def write_scalar_map(out: Any, value: Any) -> None:
                items = get(value)
                if items:
                    target = getattr(out, name)
                    for k, item in items.items():
                        target[k] = item if enc is None else enc(item)

            return write_scalar_map

        def write_scalar(out: Any, value: Any) -> None:
            item = get(value)
            if item is not None:
                setattr(out, name, item if enc is None else enc(item))

        return write_scalar

    # -- messages -> builtins (then msgspec.convert)
    def reader(self, msg: MessageModel) -> Reader:
        key = id(msg)
        found = self.readers.get(key)
        if found is not None:
            return found
        steps: list[tuple[str, Reader]] = []

        def read(message: Any) -> Any:
            return {k: step(message) for k, step in steps}

        self.readers[key] = read
        steps.extend((f.key, self._field_reader(f)) for f in msg.fields)
        return read

    def _sub_reader(self, tp: MessageModel | External) -> Reader:
        if isinstance(tp, MessageModel):
            return self.reader(tp)
        if tp.full_name == "google.protobuf.Timestamp":
            return _read_timestamp
        cls = tp.py_type

        def read_foreign(message: Any) -> Any:
            return cls.FromString(message.SerializeToString())

        return read_foreign

    def _field_reader(self, field: FieldModel) -> Reader:
        name, tp = field.name, field.type
        dec: Callable[[Any], Any] | None
        if isinstance(tp, MessageModel | External):
            dec = self._sub_reader(tp)
        elif isinstance(tp, EnumModel):
            dec = _enum_decoder(tp)
        else:
            dec = None
        if field.label == "repeated":
            if dec is None:
                return lambda m: list(getattr(m, name))
            return lambda m: [dec(x) for x in getattr(m, name)]
        if field.label == "map":
            if dec is None:
                return lambda m: dict(getattr(m, name))
            return lambda m: {k: dec(x) for k, x in getattr(m, name).items()}
        if field.nullable:
            if dec is None:
                return lambda m: getattr(m, name) if m.HasField(name) else None
            return lambda m: dec(getattr(m, name)) if m.HasField(name) else None
        if dec is None:
            return operator.attrgetter(name)
        return lambda m: dec(getattr(m, name))


def _enum_encoder(en: EnumModel) -> Callable[[Any], int]:
    table: dict[Any, int] = {}
    for _, number, member in en.values:
        table[member] = number
        table[member.value] = number

    def encode(value: Any) -> int:
        try:
            return table[value]
        except (KeyError, TypeError):
            raise TypeError(f"{value!r} is not a member of {en.py_type.__qualname__}") from None

    return encode


def _enum_decoder(en: EnumModel) -> Callable[[int], Any]:
    table = {number: member.value for _, number, member in en.values}
    # Unknown numbers pass through and fail msgspec's validation as invalid_argument.
    return lambda number: table.get(number, number)


def _write_timestamp(out: Any, value: datetime.datetime) -> None:
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    delta = value - _EPOCH
    out.seconds = delta.days * 86400 + delta.seconds
    out.nanos = delta.microseconds * 1000


def _read_timestamp(message: Any) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(seconds=message.seconds, microseconds=message.nanos // 1000)


def _write_foreign(out: Any, value: Any) -> None:
    out.MergeFromString(value.SerializeToString())


# -- per-type codecs ----------------------------------------------------------------------
def message_file(tp: Any) -> FileModel:
    """A file of its own for the message type ``tp`` (and the types it uses)."""
    module = "".join(c if c.isalnum() or c == "_" else "_" for c in tp.__module__)
    package = f"h2mesh.py.{module}"
    return build_file([tp], package, f"h2mesh/py/{module}/{tp.__qualname__}.proto")


def _pool_for(model: FileModel) -> Any:
    from google.protobuf import descriptor_pb2, descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    files = serialized_files([ext.file for ext in model.externals])
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added:
            return
        added.add(name)
        fdp = descriptor_pb2.FileDescriptorProto.FromString(files[name])
        for dep in fdp.dependency:
            add(dep)
        pool.Add(fdp)

    for name in files:
        add(name)
    pool.Add(file_descriptor(model))
    return pool


Encode = Callable[[Any], bytes]
Decode = Callable[[bytes], Any]
_cache: dict[Any, tuple[Encode, Decode]] = {}
_cache_lock = threading.Lock()


def message_codec(tp: Any) -> tuple[Encode, Decode]:
    """``(encode, decode)`` between values of the message type ``tp`` and protobuf bytes.

    Raises :class:`SchemaError` if ``tp`` has no protobuf form, and ``ImportError`` if
    the ``protobuf`` package is missing. ``decode`` raises ``msgspec.ValidationError``
    for values that do not fit ``tp`` and protobuf's ``DecodeError`` for bad bytes.
    """
    found = _cache.get(tp)
    if found is not None:
        return found
    with _cache_lock:
        found = _cache.get(tp)
        if found is None:
            found = _cache[tp] = _build_codec(tp)
    return found


def _build_codec(tp: Any) -> tuple[Encode, Decode]:
    from google.protobuf import message_factory

    model = message_file(tp)
    root = model.messages[0] if model.messages else None
    if root is None or root.py_type is not tp:
        raise SchemaError(f"{tp!r} is not a message type")
    pool = _pool_for(model)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(root.full_name))
    conv = _Converters(pool)
    write = conv.writer(root)
    read = conv.reader(root)
    parse = cls.FromString
    convert: Callable[[Any, Any], Any] = msgspec.convert
    if root.kind == "pydantic":
        from .._pydantic import builtins_validator

        validate = builtins_validator(tp)

        def convert(obj: Any, tp: Any) -> Any:
            return validate(obj)

    def encode(value: Any) -> bytes:
        message = cls()
        try:
            write(message, value)
        except (TypeError, ValueError, AttributeError) as exc:
            raise TypeError(f"cannot encode {type(value).__name__} as protobuf: {exc}") from None
        data: bytes = message.SerializeToString()
        return data

    def decode(data: bytes) -> Any:
        return convert(read(parse(data)), tp)

    return encode, decode

"""Schemas of Python-first services: their protobuf (proto3) form.

``service_file(Greeter)`` builds the model of the service's ``.proto`` file;
``render_proto`` writes it as text and ``file_descriptor`` as a ``FileDescriptorProto``
(with the ``protobuf`` package), both from the same model. ``message_codec(tp)`` carries
values of a Struct, dataclass or TypedDict over the protobuf wire format.
"""

from ._descriptor import file_descriptor, message_codec, serialized_files
from ._model import FileModel, SchemaError, build_file, service_file
from ._text import render_proto

__all__ = [
    "FileModel",
    "SchemaError",
    "build_file",
    "file_descriptor",
    "message_codec",
    "render_proto",
    "serialized_files",
    "service_file",
]

"""gRPC server reflection, ``grpc.reflection.v1`` and ``v1alpha`` (on by default).

Serves the ``FileDescriptorProto`` of every service the server routes to: proto-first
services give the file their generated module was compiled from (and its imports,
transitively); Python-first ones give the file ``h2mesh.schema`` builds for them, as
``h2mesh proto`` writes it. Needs the ``protobuf`` package (descriptors are protobuf).

The messages are msgspec Structs with the field numbers of ``reflection.proto``; its
``oneof`` groups are proto3 ``optional`` fields here, which is the same on the wire.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any

import msgspec

from .._errors import Code
from .._protobuf import is_message_type
from ..service import Service, rpc

__all__ = ["ReflectionV1", "ReflectionV1Alpha", "reflection_services"]

log = logging.getLogger("h2mesh.server")

_Int32 = Annotated[int, msgspec.Meta(extra={"proto_type": "int32"})]


def _n(number: int) -> msgspec.Meta:
    return msgspec.Meta(extra={"proto": number})


class ExtensionRequest(msgspec.Struct, omit_defaults=True):
    containing_type: str = ""
    extension_number: _Int32 = 0


class ServerReflectionRequest(msgspec.Struct, omit_defaults=True):
    host: str = ""
    file_by_filename: Annotated[str | None, _n(3)] = None
    file_containing_symbol: Annotated[str | None, _n(4)] = None
    file_containing_extension: Annotated[ExtensionRequest | None, _n(5)] = None
    all_extension_numbers_of_type: Annotated[str | None, _n(6)] = None
    list_services: Annotated[str | None, _n(7)] = None


class FileDescriptorResponse(msgspec.Struct):
    file_descriptor_proto: list[bytes] = []


class ExtensionNumberResponse(msgspec.Struct):
    base_type_name: str = ""
    extension_number: list[_Int32] = []


class ServiceResponse(msgspec.Struct):
    name: str = ""


class ListServiceResponse(msgspec.Struct):
    service: list[ServiceResponse] = []


class ErrorResponse(msgspec.Struct):
    error_code: _Int32 = 0
    error_message: str = ""


class ServerReflectionResponse(msgspec.Struct, omit_defaults=True):
    valid_host: str = ""
    original_request: ServerReflectionRequest | None = None
    file_descriptor_response: Annotated[FileDescriptorResponse | None, _n(4)] = None
    all_extension_numbers_response: Annotated[ExtensionNumberResponse | None, _n(5)] = None
    list_services_response: Annotated[ListServiceResponse | None, _n(6)] = None
    error_response: Annotated[ErrorResponse | None, _n(7)] = None


class _Index:
    """Every served file (serialized) by name, what each imports, and symbol -> file."""

    def __init__(self, services: Sequence[Service]) -> None:
        from google.protobuf import descriptor_pb2

        from ..schema import SchemaError, file_descriptor, serialized_files, service_file

        self.service_names = [svc.__service_name__ for svc in services]
        self.files: dict[str, bytes] = {}
        generated: list[Any] = []
        for svc in services:
            found = _generated_file(svc)
            if found is not None:
                generated.append(found)
                continue
            try:
                model = service_file(svc)
            except SchemaError as exc:
                log.warning("reflection leaves out %s: %s", svc.__service_name__, exc)
                continue
            self.files[model.name] = file_descriptor(model).SerializeToString()
            generated.extend(ext.file for ext in model.externals)
        for name, data in serialized_files(generated).items():
            self.files.setdefault(name, data)
        self.imports: dict[str, list[str]] = {}
        self.symbols: dict[str, str] = {}
        for name, data in self.files.items():
            fdp = descriptor_pb2.FileDescriptorProto.FromString(data)
            self.imports[name] = list(fdp.dependency)
            prefix = f"{fdp.package}." if fdp.package else ""
            self._add_types(name, prefix, fdp.message_type, fdp.enum_type)
            for sd in fdp.service:
                self.symbols[prefix + sd.name] = name
                for md in sd.method:
                    self.symbols[f"{prefix}{sd.name}.{md.name}"] = name

    def _add_types(self, file: str, prefix: str, messages: Any, enums: Any) -> None:
        for en in enums:
            self.symbols[prefix + en.name] = file
        for msg in messages:
            self.symbols[prefix + msg.name] = file
            self._add_types(file, f"{prefix}{msg.name}.", msg.nested_type, msg.enum_type)

    def with_imports(self, name: str) -> list[bytes]:
        """The file ``name`` first, then everything it imports, transitively."""
        order: list[str] = []
        todo = [name]
        while todo:
            item = todo.pop(0)
            if item in order or item not in self.files:
                continue
            order.append(item)
            todo.extend(self.imports.get(item, ()))
        return [self.files[item] for item in order]


def _generated_file(svc: Service) -> Any | None:
    """The generated ``FileDescriptor`` that declares ``svc``, if its types come from one."""
    for method in svc.__methods__.values():
        for tp in (method.request_type, method.response_type):
            if is_message_type(tp):
                try:
                    return tp.DESCRIPTOR.file.pool.FindServiceByName(svc.__service_name__).file
                except KeyError:
                    return None
    return None


class _ReflectionBase(Service):
    """Answers reflection requests about the services ``services()`` returns; v1 and
    v1alpha are this one method under two service names."""

    def __init__(self, services: Callable[[], Sequence[Service]]) -> None:
        self._services = services
        self._index: _Index | None = None
        self._lock = threading.Lock()

    def _current_index(self) -> _Index:
        services = self._services()
        index = self._index
        if index is None or len(index.service_names) != len(services):
            with self._lock:
                index = self._index = _Index(services)
        return index

    @rpc(name="ServerReflectionInfo")
    async def info(
        self, reqs: AsyncIterator[ServerReflectionRequest]
    ) -> AsyncIterator[ServerReflectionResponse]:
        async for req in reqs:
            yield self.answer(req)

    def answer(self, req: ServerReflectionRequest) -> ServerReflectionResponse:
        """The response to one reflection request."""
        index = self._current_index()
        resp = ServerReflectionResponse(valid_host=req.host, original_request=req)
        if req.list_services is not None:
            resp.list_services_response = ListServiceResponse(
                [ServiceResponse(name) for name in index.service_names]
            )
        elif req.file_by_filename is not None:
            found = index.with_imports(req.file_by_filename)
            if found:
                resp.file_descriptor_response = FileDescriptorResponse(found)
            else:
                resp.error_response = _not_found(f"file {req.file_by_filename!r} not found")
        elif req.file_containing_symbol is not None:
            file = index.symbols.get(req.file_containing_symbol.lstrip("."))
            if file is not None:
                resp.file_descriptor_response = FileDescriptorResponse(index.with_imports(file))
            else:
                resp.error_response = _not_found(f"symbol {req.file_containing_symbol!r} not found")
        elif req.file_containing_extension is not None:
            ext = req.file_containing_extension
            resp.error_response = _not_found(
                f"extension {ext.extension_number} of {ext.containing_type!r} not found"
            )
        elif req.all_extension_numbers_of_type is not None:
            name = req.all_extension_numbers_of_type.lstrip(".")
            if name in index.symbols:
                resp.all_extension_numbers_response = ExtensionNumberResponse(name, [])
            else:
                resp.error_response = _not_found(f"type {name!r} not found")
        else:
            resp.error_response = ErrorResponse(
                int(Code.INVALID_ARGUMENT), "the request names no question"
            )
        return resp


def _not_found(message: str) -> ErrorResponse:
    return ErrorResponse(int(Code.NOT_FOUND), message)


class ReflectionV1(_ReflectionBase, name="grpc.reflection.v1.ServerReflection"):
    __proto_file__ = "grpc/reflection/v1/reflection.proto"


class ReflectionV1Alpha(_ReflectionBase, name="grpc.reflection.v1alpha.ServerReflection"):
    """The same service under its older name, which many clients still ask for."""

    __proto_file__ = "grpc/reflection/v1alpha/reflection.proto"


def reflection_services(services: Callable[[], Sequence[Service]]) -> list[Service]:
    """Both reflection services (v1 and v1alpha) over ``services()``."""
    return [ReflectionV1(services), ReflectionV1Alpha(services)]

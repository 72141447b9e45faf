"""Protobuf schemas of remote services, for the CLI: from server reflection or .proto files.

``from_reflection`` asks a server (gRPC server reflection, v1 then v1alpha: grpcio,
grpc-go and h2mesh servers all answer it) for the files that declare its services;
``from_files`` compiles ``.proto`` files (with grpcio-tools' protoc, or ``protoc`` on
PATH) or loads a compiled descriptor set (``protoc --descriptor_set_out``). Either way
the result is a ``Schema``: a descriptor pool, message classes, and call descriptors.
Needs the ``protobuf`` package (``pip install h2mesh[proto]``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ._errors import Code, RpcError
from .client import Channel
from .server._reflection import ServerReflectionRequest, ServerReflectionResponse
from .service import MethodDescriptor, MethodKind

__all__ = ["Schema", "SchemaUnavailable", "from_files", "from_reflection"]

_REFLECTION = ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")


class SchemaUnavailable(Exception):
    """No schema could be had (no reflection, a bad file, no protoc)."""


class Schema:
    """A set of protobuf files: the services, methods and messages they declare."""

    def __init__(self, pool: Any, services: Sequence[str]) -> None:
        self.pool = pool
        self.services = sorted(services)

    def method(self, service: str, name: str) -> MethodDescriptor:
        """The call descriptor of ``service/name``, its message types the pool's classes."""
        from google.protobuf import message_factory

        try:
            desc = self.pool.FindServiceByName(service).methods_by_name[name]
        except KeyError:
            raise KeyError(f"{service}/{name}") from None
        if desc.client_streaming:
            kind = MethodKind.BIDI_STREAM if desc.server_streaming else MethodKind.CLIENT_STREAM
        else:
            kind = MethodKind.SERVER_STREAM if desc.server_streaming else MethodKind.UNARY
        return MethodDescriptor(
            service,
            name,
            name,
            kind,
            message_factory.GetMessageClass(desc.input_type),
            message_factory.GetMessageClass(desc.output_type),
        )

    def methods(self, service: str) -> list[str]:
        return [m.name for m in self.pool.FindServiceByName(service).methods]

    def describe(self, symbol: str) -> str:
        """``symbol`` (a service, method, message or enum) in .proto syntax."""
        symbol = symbol.lstrip(".")
        for kind, find in (
            ("service", self.pool.FindServiceByName),
            ("message", self.pool.FindMessageTypeByName),
            ("enum", self.pool.FindEnumTypeByName),
            ("method", self._find_method),
        ):
            try:
                desc = find(symbol)
            except KeyError:
                continue
            return f"{symbol} is a {kind}:\n{_render(kind, desc)}"
        raise KeyError(symbol)

    def _find_method(self, symbol: str) -> Any:
        service, _, name = symbol.rpartition(".")
        try:
            return self.pool.FindServiceByName(service).methods_by_name[name]
        except KeyError:
            raise KeyError(symbol) from None


# -- rendering ----------------------------------------------------------------------------
def _rpc_line(method: Any) -> str:
    req = ("stream " if method.client_streaming else "") + "." + method.input_type.full_name
    resp = ("stream " if method.server_streaming else "") + "." + method.output_type.full_name
    return f"rpc {method.name} ( {req} ) returns ( {resp} );"


def _field_type(field: Any) -> str:
    if field.message_type is not None:
        return f".{field.message_type.full_name}"
    if field.enum_type is not None:
        return f".{field.enum_type.full_name}"
    names = {
        1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64",
        7: "fixed32", 8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32",
        16: "sfixed64", 17: "sint32", 18: "sint64",
    }  # fmt: skip
    return names.get(field.type, "?")


def _render(kind: str, desc: Any, indent: str = "") -> str:
    if kind == "method":
        return indent + _rpc_line(desc)
    if kind == "service":
        body = [f"{indent}  {_rpc_line(m)}" for m in desc.methods]
        return "\n".join([f"{indent}service {desc.name} {{", *body, f"{indent}}}"])
    if kind == "enum":
        body = [f"{indent}  {v.name} = {v.number};" for v in desc.values]
        return "\n".join([f"{indent}enum {desc.name} {{", *body, f"{indent}}}"])
    lines = [f"{indent}message {desc.name} {{"]
    lines += [
        _render("message", nested, indent + "  ")
        for nested in desc.nested_types
        if not nested.GetOptions().map_entry
    ]
    lines += [_render("enum", enum, indent + "  ") for enum in desc.enum_types]
    for field in desc.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields
            tp = f"map<{_field_type(key)}, {_field_type(value)}>"
        else:
            repeated = getattr(field, "is_repeated", None)
            if repeated is None:  # protobuf < 5.28
                repeated = field.label == field.LABEL_REPEATED
            tp = ("repeated " if repeated else "") + _field_type(field)
        lines.append(f"{indent}  {tp} {field.name} = {field.number};")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


# -- reflection ---------------------------------------------------------------------------
def _reflection_method(service: str) -> MethodDescriptor:
    return MethodDescriptor(
        service,
        "ServerReflectionInfo",
        "ServerReflectionInfo",
        MethodKind.BIDI_STREAM,
        ServerReflectionRequest,
        ServerReflectionResponse,
    )


async def _one(item: ServerReflectionRequest) -> AsyncIterator[ServerReflectionRequest]:
    yield item


class _Reflection:
    def __init__(self, channel: Channel, headers: dict[str, str] | None) -> None:
        self.channel = channel
        self.headers = headers
        self.method: MethodDescriptor | None = None

    async def ask(self, request: ServerReflectionRequest) -> ServerReflectionResponse:
        methods = [self.method] if self.method else [_reflection_method(s) for s in _REFLECTION]
        error: RpcError | None = None
        for method in methods:
            try:
                async for response in self.channel.stream(
                    method, requests=_one(request), headers=self.headers
                ):
                    self.method = method
                    if response.error_response is not None:
                        err = response.error_response
                        raise SchemaUnavailable(f"reflection: {err.error_message}")
                    return response  # type: ignore[no-any-return]
            except RpcError as exc:
                if exc.code is not Code.UNIMPLEMENTED:
                    raise
                error = exc
        raise SchemaUnavailable(f"the server does not offer reflection ({error})")


async def from_reflection(
    channel: Channel, headers: dict[str, str] | None = None, symbols: Sequence[str] = ()
) -> Schema:
    """The schema of every service the server lists (and of ``symbols``), by reflection.

    ``channel`` must speak gRPC (reflection is a bidi stream).
    """
    from google.protobuf import descriptor_pb2

    reflection = _Reflection(channel, headers)
    listed = await reflection.ask(ServerReflectionRequest(list_services=""))
    assert listed.list_services_response is not None
    services = [s.name for s in listed.list_services_response.service]
    files: dict[str, Any] = {}

    def keep(response: ServerReflectionResponse) -> None:
        assert response.file_descriptor_response is not None
        for data in response.file_descriptor_response.file_descriptor_proto:
            fdp = descriptor_pb2.FileDescriptorProto.FromString(data)
            files.setdefault(fdp.name, fdp)

    for symbol in [*services, *symbols]:
        if any(_declares(fdp, symbol) for fdp in files.values()):
            continue
        try:
            keep(await reflection.ask(ServerReflectionRequest(file_containing_symbol=symbol)))
        except SchemaUnavailable:
            if symbol in symbols:
                raise
    # Imports the server did not send along: ask for them by name.
    missing = _missing(files)
    while missing:
        for name in missing:
            try:
                keep(await reflection.ask(ServerReflectionRequest(file_by_filename=name)))
            except SchemaUnavailable:
                files[name] = _well_known(name)
        missing = _missing(files)
    return Schema(_pool(files), services)


def _declares(fdp: Any, symbol: str) -> bool:
    prefix = f"{fdp.package}." if fdp.package else ""
    names = {prefix + s.name for s in fdp.service} | {prefix + m.name for m in fdp.message_type}
    return symbol in names


def _missing(files: dict[str, Any]) -> list[str]:
    return sorted({dep for fdp in files.values() for dep in fdp.dependency} - set(files))


def _well_known(name: str) -> Any:
    """A file protobuf itself ships (google/protobuf/*.proto), if the server left it out."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    try:
        desc = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        raise SchemaUnavailable(f"reflection: the server does not have {name}") from None
    fdp = descriptor_pb2.FileDescriptorProto()
    desc.CopyToProto(fdp)
    return fdp


def _pool(files: dict[str, Any]) -> Any:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added:
            return
        added.add(name)
        fdp = files[name]
        for dep in fdp.dependency:
            add(dep)
        pool.Add(fdp)

    for name in sorted(files):
        add(name)
    return pool


# -- files --------------------------------------------------------------------------------
def from_files(
    protos: Sequence[str], protosets: Sequence[str], include: Sequence[str] = ()
) -> Schema:
    """The schema in ``.proto`` files (compiled here) and descriptor-set files."""
    from google.protobuf import descriptor_pb2

    files: dict[str, Any] = {}
    blobs = [_read(path) for path in protosets]
    if protos:
        blobs.append(_compile(protos, include))
    for blob in blobs:
        try:
            fds = descriptor_pb2.FileDescriptorSet.FromString(blob)
        except Exception as exc:
            raise SchemaUnavailable(f"not a protobuf descriptor set: {exc}") from None
        for fdp in fds.file:
            files.setdefault(fdp.name, fdp)
    for name in _missing(files):
        files[name] = _well_known(name)
    services = []
    for fdp in files.values():
        prefix = f"{fdp.package}." if fdp.package else ""
        services += [prefix + s.name for s in fdp.service]
    try:
        pool = _pool(files)
    except Exception as exc:
        raise SchemaUnavailable(f"the files do not form a valid schema: {exc}") from None
    return Schema(pool, services)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SchemaUnavailable(f"cannot read {path}: {exc}") from None


def _compile(protos: Sequence[str], include: Sequence[str]) -> bytes:
    """A descriptor set of ``protos`` and their imports, by protoc."""
    dirs = list(include) or sorted({os.path.dirname(os.path.abspath(p)) for p in protos})
    with tempfile.TemporaryDirectory(prefix="h2mesh-proto-") as tmp:
        out = os.path.join(tmp, "set.binpb")
        args = [f"-I{d}" for d in dirs]
        args += [f"--descriptor_set_out={out}", "--include_imports"]
        args += [os.path.abspath(p) for p in protos]
        try:
            import grpc_tools  # the protoc that grpcio-tools bundles, with the well-known types
        except ImportError:
            protoc = shutil.which("protoc")
            if protoc is None:
                raise SchemaUnavailable(
                    "--proto needs protoc: pip install grpcio-tools, or install protoc"
                ) from None
            command = [protoc, *args]
        else:
            well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
            command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{well_known}", *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SchemaUnavailable(f"protoc failed: {done.stderr.strip()}")
        return _read(out)

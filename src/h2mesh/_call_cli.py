"""``h2mesh call``, ``list`` and ``describe``: a grpcurl for Connect, gRPC and gRPC-Web.

::

    h2mesh list 127.0.0.1:50051 --plaintext
    h2mesh describe http://127.0.0.1:8080 demo.v1.Greeter
    h2mesh call http://127.0.0.1:8080 demo.v1.Greeter/SayHello '{"name": "x"}'
    h2mesh call --protocol grpc -d @requests.json http://127.0.0.1:8080 pkg.Svc/Upload

Messages are JSON in and out, one reply per line. Over Connect the JSON goes as it is;
over gRPC and gRPC-Web the messages are protobuf, converted with the schema the server
tells by reflection (or ``--proto`` / ``--protoset`` files). An RPC error exits with
64 + its gRPC code (as grpcurl does), a bad command line with 2, anything else with 1.

Just over the 400-line guideline: ``call``, ``list`` and ``describe`` share the connection
options, the channel and the schema lookup; ``bench`` (``_bench_cli``) reuses them too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

from ._cli_util import USAGE, UsageError
from ._errors import Code, RpcError
from ._loop import new_event_loop
from .client import Channel
from .discovery import SCHEMES
from .service import MethodDescriptor, MethodKind

__all__ = ["add_call_parsers", "open_channel", "resolve_method"]

#: exit status of an RPC that failed: this plus its code (grpcurl's convention)
STATUS_OFFSET = 64
_PROTOCOLS = {"connect": "connect", "grpc": "grpc", "grpcweb": "grpc-web"}


# -- arguments ------------------------------------------------------------------------------
def _url(text: str, plaintext: bool) -> str:
    if "://" in text:
        if text.split("://", 1)[0] not in SCHEMES:
            raise UsageError(
                f"unsupported target {text!r}; use http://, https://, HOST:PORT or a "
                "discovery target (registry://, etcd://, static://, dns://)"
            )
        return text
    # grpcurl style: HOST:PORT is TLS unless --plaintext.
    return ("http://" if plaintext else "https://") + text


def _parse_method(text: str) -> tuple[str, str]:
    text = text.strip("/")
    if "/" in text:
        service, _, method = text.rpartition("/")
    else:  # grpcurl also takes pkg.Service.Method
        service, _, method = text.rpartition(".")
    if not service or not method:
        raise UsageError(f"expected SERVICE/METHOD (e.g. demo.v1.Greeter/SayHello), got {text!r}")
    return service, method


def _parse_headers(items: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--header wants NAME:VALUE, got {item!r}")
        headers[name.lower()] = value.strip()
    return headers


def _messages(text: str) -> list[Any]:
    """The JSON values in ``text``, one after another (a client stream sends several)."""
    decoder = json.JSONDecoder()
    out: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return out
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise UsageError(f"the request is not valid JSON: {exc}") from None
        out.append(value)


def _request_text(args: argparse.Namespace) -> str:
    data: str | None = args.data if args.data is not None else args.body
    if data is None:
        return "{}"
    if data in ("-", "@-", "@"):
        return sys.stdin.read()
    if data.startswith("@"):
        try:
            with open(data[1:], encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise UsageError(f"cannot read {data[1:]}: {exc}") from None
    return data


def _client_ssl(url: str, args: argparse.Namespace) -> ssl.SSLContext | None:
    if not url.startswith("https:"):
        return None
    try:
        ctx = ssl.create_default_context(cafile=args.cacert)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load --cacert {args.cacert}: {exc}") from None
    if args.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def open_channel(
    args: argparse.Namespace, protocol: str, codec: str, timeout: float | None = None
) -> Channel:
    """A Channel to ``args.url`` with the common connection options."""
    url = _url(args.url, args.plaintext)
    try:
        return Channel(
            url,
            protocol=protocol,
            codec=codec,
            timeout=timeout,
            ssl_context=_client_ssl(url, args),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# -- schemas --------------------------------------------------------------------------------
async def _schema(args: argparse.Namespace, headers: dict[str, str], symbols: Sequence[str]) -> Any:
    """The schema from --proto/--protoset, else by reflection (raises SchemaUnavailable)."""
    from ._schema_source import from_files, from_reflection

    if args.proto or args.protoset:
        return from_files(args.proto, args.protoset, args.import_path)
    async with open_channel(args, "grpc", "proto", timeout=args.timeout) as channel:
        return await from_reflection(channel, headers, symbols)


async def resolve_method(
    args: argparse.Namespace, headers: dict[str, str], protocol: str
) -> tuple[MethodDescriptor, str, bool]:
    """The call descriptor of ``args.method``, the codec to use, and whether the kind was
    learned (from a schema) rather than guessed."""
    from ._schema_source import SchemaUnavailable

    service, name = _parse_method(args.method)
    schema_given = bool(args.proto or args.protoset)
    try:
        schema = await _schema(args, headers, [service])
        method = schema.method(service, name)
    except ImportError:
        if protocol != "connect" or schema_given:
            raise UsageError("gRPC and schemas need protobuf: pip install h2mesh[proto]") from None
    except (SchemaUnavailable, KeyError, RpcError) as exc:
        if protocol != "connect" or schema_given:
            raise UsageError(
                f"{args.method}: no schema for it ({exc}); {protocol} sends protobuf, "
                "so it needs server reflection or --proto/--protoset"
            ) from None
    else:
        if protocol == "connect":
            # Connect sends the JSON as it is; the schema only tells the streaming kind.
            plain = MethodDescriptor(service, name, name, method.kind, Any, Any)
            return plain, "json", True
        return method, "proto", True
    return MethodDescriptor(service, name, name, MethodKind.UNARY, Any, Any), "json", False


def _to_json(message: Any) -> bytes:
    if hasattr(message, "DESCRIPTOR"):
        from google.protobuf import json_format

        return msgspec.json.encode(json_format.MessageToDict(message))
    return msgspec.json.encode(message)


def _from_json(method: MethodDescriptor, value: Any) -> Any:
    tp = method.request_type
    if tp is Any:
        return value
    from google.protobuf import json_format

    try:
        return json_format.ParseDict(value, tp())
    except json_format.ParseError as exc:
        raise UsageError(f"the request does not fit {tp.DESCRIPTOR.full_name}: {exc}") from None


def _emit(message: Any) -> None:
    out = sys.stdout.buffer
    out.write(_to_json(message) + b"\n")
    out.flush()


def _is_stream_hint(exc: RpcError) -> bool:
    # The Connect server refuses a unary-encoded call to a streaming method this way.
    return exc.code is Code.UNIMPLEMENTED and "is a stream" in exc.message


async def _iterate(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


# -- call -----------------------------------------------------------------------------------
async def _call(args: argparse.Namespace) -> None:
    protocol = _PROTOCOLS[args.protocol]
    headers = _parse_headers(args.header)
    values = _messages(_request_text(args)) or [{}]
    method, codec, known = await resolve_method(args, headers, protocol)
    if args.stream and not known:
        method = MethodDescriptor(
            method.service_name, method.name, method.name, MethodKind.SERVER_STREAM, Any, Any
        )
    if len(values) > 1 and not known:
        method = MethodDescriptor(
            method.service_name, method.name, method.name, MethodKind.BIDI_STREAM, Any, Any
        )
    requests = [_from_json(method, v) for v in values]
    kind = method.kind
    if not kind.client_streams and len(requests) > 1:
        raise UsageError(f"{args.method} takes one request message, got {len(requests)}")
    async with open_channel(args, protocol, codec, timeout=args.timeout) as channel:
        if kind is MethodKind.UNARY:
            try:
                _emit(await channel.unary(method, requests[0], headers=headers or None))
                return
            except RpcError as exc:
                if known or not _is_stream_hint(exc):
                    raise
            kind = MethodKind.SERVER_STREAM
            method = MethodDescriptor(method.service_name, method.name, method.name, kind, Any, Any)
        if kind.client_streams:
            stream = channel.stream(method, requests=_iterate(requests), headers=headers or None)
        else:
            stream = channel.stream(method, requests[0], headers=headers or None)
        async for message in stream:
            _emit(message)


def _run(coro: Any) -> int:
    sys.stdout.flush()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        try:
            runner.run(coro)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return USAGE
        except RpcError as exc:
            print(f"error: {exc.code.wire_name}: {exc.message}", file=sys.stderr)
            return STATUS_OFFSET + int(exc.code)
    return 0


def _run_call(args: argparse.Namespace) -> int:
    return _run(_call(args))


# -- list and describe ----------------------------------------------------------------------
async def _list(args: argparse.Namespace) -> None:
    from ._schema_source import SchemaUnavailable

    headers = _parse_headers(args.header)
    try:
        schema = await _schema(args, headers, [args.service] if args.service else [])
    except SchemaUnavailable as exc:
        raise UsageError(str(exc)) from None
    if args.service is None:
        for name in schema.services:
            print(name)
        return
    try:
        methods = schema.methods(args.service)
    except KeyError:
        raise UsageError(f"service {args.service!r} not found") from None
    for name in methods:
        print(f"{args.service}.{name}")


async def _describe(args: argparse.Namespace) -> None:
    from ._schema_source import SchemaUnavailable

    headers = _parse_headers(args.header)
    symbols = [args.symbol.lstrip(".")] if args.symbol else []
    try:
        schema = await _schema(args, headers, symbols)
    except SchemaUnavailable as exc:
        raise UsageError(str(exc)) from None
    for symbol in symbols or schema.services:
        try:
            print(schema.describe(symbol))
        except KeyError:
            raise UsageError(f"symbol {symbol!r} not found") from None


def _run_list(args: argparse.Namespace) -> int:
    return _run(_list(args))


def _run_describe(args: argparse.Namespace) -> int:
    return _run(_describe(args))


# -- parsers --------------------------------------------------------------------------------
def connection_options() -> argparse.ArgumentParser:
    """Options shared by call, list, describe and bench."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--plaintext",
        action="store_true",
        help="HOST:PORT targets speak cleartext HTTP/2 (default for them: TLS)",
    )
    common.add_argument("--insecure", action="store_true", help="skip TLS certificate checks")
    common.add_argument("--cacert", metavar="FILE", help="CA certificates to trust for TLS")
    common.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="request metadata (repeatable)",
    )
    common.add_argument("--timeout", type=float, metavar="SECONDS", help="deadline of each call")
    common.add_argument(
        "--proto",
        action="append",
        default=[],
        metavar="FILE",
        help="a .proto file to take the schema from instead of reflection (repeatable)",
    )
    common.add_argument(
        "--protoset",
        action="append",
        default=[],
        metavar="FILE",
        help="a compiled descriptor set (protoc --descriptor_set_out) (repeatable)",
    )
    common.add_argument(
        "-I",
        "--import-path",
        action="append",
        default=[],
        metavar="DIR",
        help="where --proto files and their imports are found (repeatable)",
    )
    return common


def add_call_parsers(sub: Any) -> None:
    """Register ``call``, ``list`` and ``describe`` on the CLI's subparsers."""
    common = connection_options()
    call = sub.add_parser(
        "call",
        parents=[common],
        help="call a method with JSON and print the replies",
        description="Call SERVICE/METHOD at URL (http://, https:// or HOST:PORT) with JSON "
        "requests and print each reply as one line of JSON. Exit status: 0, 64 + the gRPC "
        "code of a failed call, 2 for a bad command line.",
    )
    call.add_argument("url", metavar="URL")
    call.add_argument("method", metavar="SERVICE/METHOD")
    call.add_argument(
        "body", metavar="JSON", nargs="?", help="the request (default {}; '-' reads stdin)"
    )
    call.add_argument(
        "-d",
        "--data",
        metavar="DATA",
        help="the request(s): JSON, @FILE, or @- for stdin; several JSON values make a "
        "client stream",
    )
    call.add_argument(
        "--protocol",
        choices=sorted(_PROTOCOLS),
        default="connect",
        help="wire protocol (default %(default)s; grpc and grpcweb need a schema)",
    )
    call.add_argument(
        "--stream",
        action="store_true",
        help="without a schema: call as a server stream without trying unary",
    )
    call.set_defaults(func=_run_call)

    lister = sub.add_parser(
        "list",
        parents=[common],
        help="list the services of a server (reflection), or a service's methods",
    )
    lister.add_argument("url", metavar="URL")
    lister.add_argument("service", metavar="SERVICE", nargs="?")
    lister.set_defaults(func=_run_list)

    describe = sub.add_parser(
        "describe",
        parents=[common],
        help="show a service, method or message in .proto syntax (reflection)",
    )
    describe.add_argument("url", metavar="URL")
    describe.add_argument("symbol", metavar="SYMBOL", nargs="?")
    describe.set_defaults(func=_run_describe)

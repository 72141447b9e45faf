"""The OpenAPI 3.1 document of a server: its REST routes and its Connect endpoints.

Schemas come from the message types (``JsonSchemas``: msgspec for Structs, dataclasses
and TypedDicts, pydantic for its models). Every operation lists the error statuses the
server can answer with (Connect's error body, one status per group of codes), and
docstrings become summaries and descriptions.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from .._errors import Code
from ..schema._jsonschema import REF_PREFIX, lower_camel
from ..service import MethodDescriptor, MethodKind
from .rest import RestRoute, RestServer

__all__ = ["openapi_document"]

Schema = dict[str, Any]

_ERROR_SCHEMA: Schema = {
    "title": "Error",
    "description": "A Connect error: the code, a message for developers, and details.",
    "type": "object",
    "properties": {
        "code": {"type": "string", "enum": sorted({c.wire_name for c in Code if c != Code.OK})},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {}},
    },
    "required": ["code"],
}
_ERROR_REF = {"$ref": REF_PREFIX + "h2mesh.Error"}
_MAX_QUERY_DEPTH = 3


def _error_statuses() -> dict[str, list[str]]:
    by_status: dict[int, list[str]] = {}
    for code in Code:
        if code != Code.OK and code.wire_name not in by_status.get(code.http_status, []):
            by_status.setdefault(code.http_status, []).append(code.wire_name)
    return {str(status): names for status, names in sorted(by_status.items())}


_STATUSES = _error_statuses()


def _error_responses() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, names in _STATUSES.items():
        out[status] = {
            "description": "Error: " + ", ".join(names),
            "content": {"application/json": {"schema": _ERROR_REF}},
        }
    return out


def _summary(doc: str) -> tuple[str, str]:
    first, _, rest = doc.strip().partition("\n")
    return first.strip(), rest.strip()


def _describe(op: dict[str, Any], method: MethodDescriptor, tag: str) -> None:
    summary, description = _summary(method.doc)
    if summary:
        op["summary"] = summary
    if description:
        op["description"] = description
    op["tags"] = [tag]


class _Builder:
    def __init__(self, rest: RestServer) -> None:
        self.schemas = rest.schemas
        self.paths: dict[str, dict[str, Any]] = {}
        self.operation_ids: set[str] = set()

    def schema(self, tp: Any, mode: str = "validation") -> Schema:
        return copy.deepcopy(self.schemas.schema(tp, mode))

    def operation_id(self, base: str) -> str:
        name, n = base, 1
        while name in self.operation_ids:
            n += 1
            name = f"{base}_{n}"
        self.operation_ids.add(name)
        return name

    # -- REST routes --------------------------------------------------------------------
    def route(self, route: RestRoute) -> None:
        method = route.method
        schemas = self.schemas
        req = method.request_type
        path, variables = _openapi_path(route)
        params: list[dict[str, Any]] = []
        bound: set[tuple[str, ...]] = set()
        for name, field in variables:
            bound.add(field)
            bound.add(tuple(lower_camel(p) for p in field))  # protobuf's JSON names
            schema = copy.deepcopy(schemas.field(req, field) or {"type": "string"})
            if schema.get("type") == "string":
                schema.setdefault("minLength", 1)
            schema.pop("default", None)
            params.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "description": f"Sets the request field `{'.'.join(field)}`.",
                    "schema": schema,
                }
            )
        op: dict[str, Any] = {
            "operationId": self.operation_id(f"{method.service_name}.{method.name}"),
        }
        _describe(op, method, method.service_name)
        if route.body == "*":
            body = self.body_schema(req, bound)
            op["requestBody"] = {
                "required": bool(schemas.resolve(body).get("required")),
                "content": {"application/json": {"schema": body}},
            }
        else:
            if route.body:
                bound.add((route.body,))
                field_schema = schemas.field(req, (route.body,), resolve=False) or {}
                root = schemas.resolve(schemas.schema(req))
                op["requestBody"] = {
                    "required": route.body in root.get("required", ()),
                    "content": {"application/json": {"schema": copy.deepcopy(field_schema)}},
                }
            params += self.query_params(req, bound)
        if params:
            op["parameters"] = params
        response = schemas.schema(method.response_type, "serialization")
        if route.response_body:
            response = (
                schemas.field(
                    method.response_type, (route.response_body,), "serialization", resolve=False
                )
                or {}
            )
        response = copy.deepcopy(response)
        if method.kind.server_streams:
            content = {
                "application/x-ndjson": {"schema": response},
                "text/event-stream": {"schema": response},
            }
            ok = {
                "description": "A stream of messages: one JSON per line, or server-sent "
                "events when the client accepts text/event-stream",
                "content": content,
            }
        else:
            ok = {"description": "OK", "content": {"application/json": {"schema": response}}}
        op["responses"] = {"200": ok, **_error_responses()}
        self.paths.setdefault(path, {})[route.rule.verb.lower()] = op

    def body_schema(self, req: Any, bound: set[tuple[str, ...]]) -> Schema:
        schema = self.schemas.schema(req)
        top = {field[0] for field in bound if len(field) == 1}
        if not top:
            return copy.deepcopy(schema)
        # Fields set from the path need not (and should not) be in the body.
        resolved = copy.deepcopy(self.schemas.resolve(schema))
        props = resolved.get("properties", {})
        for name in top:
            props.pop(name, None)
        if "required" in resolved:
            resolved["required"] = [r for r in resolved["required"] if r not in top]
            if not resolved["required"]:
                del resolved["required"]
        return resolved

    def query_params(self, req: Any, bound: set[tuple[str, ...]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        root = self.schemas.resolve(self.schemas.schema(req))
        self._query_fields(root, (), bound, out, set())
        return out

    def _query_fields(
        self,
        schema: Schema,
        prefix: tuple[str, ...],
        bound: set[tuple[str, ...]],
        out: list[dict[str, Any]],
        seen: set[int],
    ) -> None:
        props = schema.get("properties")
        if not isinstance(props, dict) or len(prefix) >= _MAX_QUERY_DEPTH or id(schema) in seen:
            return
        seen = seen | {id(schema)}
        required = set(schema.get("required", ())) if not prefix else set()
        for name, sub in props.items():
            field = (*prefix, name)
            if field in bound:
                continue
            resolved = self.schemas.resolve(sub)
            kind = resolved.get("type")
            if kind == "object" and "properties" in resolved:
                self._query_fields(resolved, field, bound, out, seen)
                continue
            if kind == "object":
                continue  # maps have no query form
            param_schema = copy.deepcopy(resolved)
            param_schema.pop("title", None)
            if kind == "array":
                items = self.schemas.resolve(resolved.get("items", {}))
                if items.get("type") in ("object", "array"):
                    continue
                param_schema["items"] = copy.deepcopy(items)
            param: dict[str, Any] = {
                "name": ".".join(field),
                "in": "query",
                "required": name in required,
                "schema": param_schema,
            }
            if kind == "array":
                param["style"] = "form"
                param["explode"] = True
            out.append(param)

    # -- Connect endpoints --------------------------------------------------------------
    def connect(self, method: MethodDescriptor) -> None:
        op: dict[str, Any] = {
            "operationId": self.operation_id(f"{method.service_name}.{method.name}.connect")
        }
        _describe(op, method, method.service_name)
        op["tags"] = [method.service_name + " (Connect)"]
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": self.schema(method.request_type)}},
        }
        response = self.schema(method.response_type, "serialization")
        op["responses"] = {
            "200": {"description": "OK", "content": {"application/json": {"schema": response}}},
            **_error_responses(),
            "415": {
                "description": "The request's content type is not one the server speaks",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        }
        self.paths.setdefault(method.path, {})["post"] = op
        if method.idempotent:
            self.connect_get(method, op)

    def connect_get(self, method: MethodDescriptor, post: dict[str, Any]) -> None:
        """An idempotent method's Connect GET: the message travels in the query."""
        op = {k: v for k, v in post.items() if k != "requestBody"}
        op = copy.deepcopy(op)
        op["operationId"] = self.operation_id(f"{method.service_name}.{method.name}.connect_get")
        op["parameters"] = [
            {
                "name": "encoding",
                "in": "query",
                "required": True,
                "schema": {"type": "string", "enum": ["json"]},
            },
            {
                "name": "message",
                "in": "query",
                "required": True,
                "description": "The request message, as JSON",
                "content": {"application/json": {"schema": self.schema(method.request_type)}},
            },
            {
                "name": "connect",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["v1"]},
            },
        ]
        op["responses"].pop("415", None)
        self.paths[method.path]["get"] = op


def _openapi_path(route: RestRoute) -> tuple[str, list[tuple[str, tuple[str, ...]]]]:
    """The OpenAPI path of a route and its parameters (name, field).

    A variable spanning several segments (``{name=shelves/*}``) shows its literal
    segments in the path; its wildcard is the parameter (the field gets them all).
    """
    template = route.template
    by_start = {v.start: v for v in template.variables}
    out: list[str] = []
    params: list[tuple[str, tuple[str, ...]]] = []
    i = 0
    segments = template.segments
    while i < len(segments):
        var = by_start.get(i)
        if var is None:
            out.append(segments[i])
            i += 1
            continue
        end = len(segments) if var.end is None else var.end
        wildcards = [s for s in segments[i:end] if s in ("*", "**")]
        n = 0
        for seg in segments[i:end]:
            if seg in ("*", "**"):
                n += 1
                name = var.name if n == 1 else f"{var.name}_{n}"
                out.append("{" + name + "}")
                if n == 1:
                    params.append((name, var.field))
            else:
                out.append(seg)
        if not wildcards:
            params.append((var.name, var.field))
        i = end
    path = "/" + "/".join(out)
    if template.verb:
        path += ":" + template.verb
    return path, params


def openapi_document(
    methods: Iterable[MethodDescriptor],
    rest: RestServer,
    *,
    title: str = "h2mesh API",
    version: str = "0.1.0",
    description: str = "",
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``rest``'s routes and the Connect endpoints of
    ``methods``."""
    methods = [m for m in methods if not m.service_name.startswith("grpc.")]
    for method in methods:
        rest.schemas.add(method.request_type, "validation")
        rest.schemas.add(method.response_type, "serialization")
    rest.schemas.build()
    builder = _Builder(rest)
    for route in rest.routes():
        builder.route(route)
    for method in methods:
        # Streams are enveloped binary frames, which OpenAPI cannot describe: their REST
        # routes (NDJSON/SSE) and the RPC clients serve them.
        if method.kind is MethodKind.UNARY:
            builder.connect(method)
    components = copy.deepcopy(rest.schemas.components)
    components["h2mesh.Error"] = _ERROR_SCHEMA
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": builder.paths,
        "components": {"schemas": components},
    }
    if description:
        doc["info"]["description"] = description
    return doc

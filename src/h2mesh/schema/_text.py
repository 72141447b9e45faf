"""The ``.proto`` (proto3) text of a :class:`FileModel`; needs no protobuf package."""

from __future__ import annotations

from typing import Any

from ._model import EnumModel, External, FieldModel, FileModel, MessageModel

__all__ = ["render_proto"]

_HTTP_IMPORT = "google/api/annotations.proto"


def type_ref(tp: str | EnumModel | MessageModel | External, package: str) -> str:
    """How a field or method names ``tp`` inside ``package``."""
    if isinstance(tp, str):
        return tp
    name = tp.full_name
    if isinstance(tp, External):
        return name
    prefix = f"{package}." if package else ""
    return name[len(prefix) :] if name.startswith(prefix) else name


def _field_line(field: FieldModel, package: str) -> str:
    ref = type_ref(field.type, package)
    if field.label == "repeated":
        decl = f"repeated {ref}"
    elif field.label == "map":
        decl = f"map<{field.key_type}, {ref}>"
    elif field.label == "optional":
        decl = f"optional {ref}"
    else:
        decl = ref
    return f"{decl} {field.name} = {field.number};"


def _enum(en: EnumModel, indent: str) -> list[str]:
    lines = [f"{indent}enum {en.name} {{"]
    lines += [f"{indent}  {name} = {number};" for name, number, _ in en.values]
    lines.append(f"{indent}}}")
    return lines


def _message(msg: MessageModel, package: str, indent: str) -> list[str]:
    lines = [f"{indent}message {msg.name} {{"]
    for en in msg.nested_enums:
        lines += _enum(en, indent + "  ")
    for sub in msg.nested_messages:
        lines += _message(sub, package, indent + "  ")
    lines += [f"{indent}  {_field_line(f, package)}" for f in msg.fields]
    lines.append(f"{indent}}}")
    return lines


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _http_fields(rule: Any, indent: str) -> list[str]:
    lines = [f"{indent}{rule.verb.lower()}: {_quote(rule.pattern)}"]
    if rule.body:
        lines.append(f"{indent}body: {_quote(rule.body)}")
    if rule.response_body:
        lines.append(f"{indent}response_body: {_quote(rule.response_body)}")
    return lines


def _http_option(rules: tuple[Any, ...]) -> list[str]:
    """The ``google.api.http`` option of a method: the first route, then the others as
    ``additional_bindings``."""
    lines = ["    option (google.api.http) = {", *_http_fields(rules[0], "      ")]
    for rule in rules[1:]:
        lines += ["      additional_bindings {", *_http_fields(rule, "        "), "      }"]
    lines.append("    };")
    return lines


def render_proto(model: FileModel, header: str = "") -> str:
    """The proto3 source of ``model``; ``header`` goes first as ``//`` comment lines."""
    lines = [f"// {line}".rstrip() for line in header.splitlines()]
    if lines:
        lines.append("")
    lines += ['syntax = "proto3";', ""]
    if model.package:
        lines += [f"package {model.package};", ""]
    deps = model.dependencies
    if model.has_http_rules and _HTTP_IMPORT not in deps:
        deps = sorted([*deps, _HTTP_IMPORT])
    if deps:
        lines += [f'import "{dep}";' for dep in deps]
        lines.append("")
    for svc in model.services:
        lines.append(f"service {svc.name} {{")
        for m in svc.methods:
            req = ("stream " if m.client_streaming else "") + type_ref(m.input, model.package)
            resp = ("stream " if m.server_streaming else "") + type_ref(m.output, model.package)
            if m.http:
                lines.append(f"  rpc {m.name}({req}) returns ({resp}) {{")
                lines += [*_http_option(m.http), "  }"]
            else:
                lines.append(f"  rpc {m.name}({req}) returns ({resp});")
        lines += ["}", ""]
    for en in model.enums:
        lines += [*_enum(en, ""), ""]
    for msg in model.messages:
        lines += [*_message(msg, model.package, ""), ""]
    return "\n".join(lines).rstrip("\n") + "\n"

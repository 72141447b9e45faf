"""HTTP route templates (the ``google.api.http`` path syntax) and the matcher.

Grammar, as in ``google/api/http.proto``::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

Routes compile once into a trie of path segments per HTTP method: matching a request
walks one node per segment (literals before wildcards), never a list of regexes. Pure
functions and data, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Generic, TypeVar
from urllib.parse import unquote

__all__ = ["Match", "RouteConflict", "Router", "Template", "TemplateError", "parse_template"]

T = TypeVar("T")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LITERAL = re.compile(r"^[A-Za-z0-9\-._~!$&'()+,;=@%]+$")
STAR = "*"
DOUBLE_STAR = "**"


class TemplateError(ValueError):
    """A route template that does not follow the ``google.api.http`` syntax."""


class RouteConflict(ValueError):
    """Two routes that would match the same requests."""


class Variable:
    """A path variable: the field it binds and the segments it spans."""

    __slots__ = ("end", "field", "start")

    def __init__(self, field: tuple[str, ...], start: int, end: int | None) -> None:
        self.field = field
        self.start = start
        self.end = end  # None: up to the end of the path (a trailing "**")

    @property
    def name(self) -> str:
        return ".".join(self.field)


class Template:
    """A parsed route template: its segments, variables and verb."""

    __slots__ = ("segments", "spans", "text", "variables", "verb")

    def __init__(
        self, text: str, segments: list[str], variables: list[Variable], verb: str
    ) -> None:
        self.text = text
        self.segments = segments  # literals, "*" and "**"
        self.variables = variables
        self.verb = verb
        # (field, first segment, end segment or 0 for "to the end"), for binding fast.
        self.spans = [(v.field, v.start, v.end or 0) for v in variables]

    @property
    def shape(self) -> tuple[str, ...]:
        """What the template matches, variables and names aside (equal shapes conflict)."""
        return (*self.segments, ":" + self.verb)

    def openapi_path(self) -> str:
        """The template as an OpenAPI path: ``/v1/{name}``, one parameter per variable."""
        out: list[str] = []
        covered: dict[int, Variable] = {v.start: v for v in self.variables}
        i = 0
        while i < len(self.segments):
            var = covered.get(i)
            if var is not None:
                out.append("{" + var.name + "}")
                i = len(self.segments) if var.end is None else var.end
                continue
            out.append(self.segments[i])
            i += 1
        path = "/" + "/".join(out)
        return path + (":" + self.verb if self.verb else "")

    def __str__(self) -> str:
        return self.text


def _split_verb(text: str) -> tuple[str, str]:
    # The verb follows the last "/" and is outside braces.
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        ch = text[i]
        if ch == "}":
            depth += 1
        elif ch == "{":
            depth -= 1
        elif ch == "/" and depth == 0:
            return text, ""
        elif ch == ":" and depth == 0:
            return text[:i], text[i + 1 :]
    return text, ""


def _split_segments(body: str, where: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in body:
        if ch == "{":
            depth += 1
            if depth > 1:
                raise TemplateError(f"{where}: nested braces")
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise TemplateError(f"{where}: unbalanced '}}'")
        if ch == "/" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth:
        raise TemplateError(f"{where}: unbalanced '{{'")
    parts.append("".join(current))
    return parts


def _check_segment(seg: str, where: str) -> None:
    if seg in (STAR, DOUBLE_STAR):
        return
    if not seg or not _LITERAL.match(seg):
        raise TemplateError(f"{where}: {seg!r} is not a valid path segment")


def parse_template(text: str) -> Template:
    """Parse ``/v1/{name=shelves/*}/books/{book_id}:publish``; raises ``TemplateError``."""
    where = f"route {text!r}"
    if not text.startswith("/"):
        raise TemplateError(f"{where}: must start with '/'")
    body, verb = _split_verb(text[1:])
    if verb and not _LITERAL.match(verb):
        raise TemplateError(f"{where}: {verb!r} is not a valid verb")
    segments: list[str] = []
    variables: list[Variable] = []
    seen: set[tuple[str, ...]] = set()
    for part in _split_segments(body, where):
        if part.startswith("{"):
            if not part.endswith("}"):
                raise TemplateError(f"{where}: a variable must be a whole segment ({part!r})")
            inner = part[1:-1]
            name, sep, sub = inner.partition("=")
            field = tuple(name.strip().split("."))
            if not all(_IDENT.match(p) for p in field):
                raise TemplateError(f"{where}: {name!r} is not a field path")
            if field in seen:
                raise TemplateError(f"{where}: {name!r} is bound twice")
            seen.add(field)
            subs = sub.split("/") if sep else [STAR]
            for s in subs:
                if s.startswith("{"):
                    raise TemplateError(f"{where}: nested variables")
                _check_segment(s, where)
            start = len(segments)
            segments += subs
            end: int | None = None if subs[-1] == DOUBLE_STAR else len(segments)
            variables.append(Variable(field, start, end))
        else:
            if "{" in part or "}" in part:
                raise TemplateError(f"{where}: a variable must be a whole segment ({part!r})")
            _check_segment(part, where)
            segments.append(part)
    for i, seg in enumerate(segments):
        if seg == DOUBLE_STAR and i != len(segments) - 1:
            raise TemplateError(f"{where}: '**' may only be the last segment")
    return Template(text, segments, variables, verb)


class _Node(Generic[T]):
    __slots__ = ("ends", "literals", "rest", "star")

    def __init__(self) -> None:
        self.literals: dict[str, _Node[T]] = {}
        self.star: _Node[T] | None = None
        # By verb: the route ending here, and the route whose "**" ends here; each entry
        # is (template, target, label).
        self.ends: dict[str, tuple[Template, T, str]] = {}
        self.rest: dict[str, tuple[Template, T, str]] = {}


class Match(Generic[T]):
    """A matched route: its target and the values of its path variables."""

    __slots__ = ("params", "target", "template")

    def __init__(self, template: Template, target: T, params: dict[tuple[str, ...], str]) -> None:
        self.template = template
        self.target = target
        self.params = params


class Router(Generic[T]):
    """Route templates per HTTP method, compiled into segment tries."""

    def __init__(self) -> None:
        self._roots: dict[str, _Node[T]] = {}
        self._routes: list[tuple[str, Template, T]] = []
        self._verbs = False  # whether any template has a ":verb" (else no need to look)

    def __bool__(self) -> bool:
        return bool(self._routes)

    def __iter__(self) -> Iterator[tuple[str, Template, T]]:
        return iter(self._routes)

    def add(self, method: str, template: Template, target: T, label: str) -> None:
        """Add a route; raises ``RouteConflict`` naming both if another matches the same.

        ``label`` names the route's owner in error messages.
        """
        node = self._roots.setdefault(method, _Node())
        segments = template.segments
        for seg in segments[:-1] if segments and segments[-1] == DOUBLE_STAR else segments:
            if seg == STAR:
                if node.star is None:
                    node.star = _Node()
                node = node.star
            else:
                node = node.literals.setdefault(seg, _Node())
        table = node.rest if segments and segments[-1] == DOUBLE_STAR else node.ends
        other = table.get(template.verb)
        if other is not None:
            raise RouteConflict(
                f"routes conflict: {method} {template} ({label}) and "
                f"{method} {other[0]} ({other[2]})"
            )
        table[template.verb] = (template, target, label)
        self._routes.append((method, template, target))
        self._verbs = self._verbs or bool(template.verb)

    def match(self, method: str, path: str) -> Match[T] | None:
        """The route for ``method`` and ``path`` (no query string), or None."""
        root = self._roots.get(method)
        if root is None:
            return None
        raw = path[1:].split("/") if path[:1] == "/" else path.split("/")
        decode = "%" in path
        last = raw[-1]
        colon = last.rfind(":") if self._verbs else -1
        if colon > 0:
            # Try the verb form first: "/v1/books/1:publish" may also match "{name=**}".
            verb_segments = [*raw[:-1], last[:colon]]
            verb = last[colon + 1 :]
            if decode:
                verb_segments = [unquote(s) for s in verb_segments]
                verb = unquote(verb)
            hit = _walk(root, verb_segments, 0, verb)
            if hit is not None:
                return _bind(hit, verb_segments)
        segments = [unquote(s) for s in raw] if decode else raw
        hit = _walk(root, segments, 0, "")
        return None if hit is None else _bind(hit, segments)

    def methods_for(self, path: str) -> list[str]:
        """The HTTP methods with a route for ``path`` (for ``405``'s ``allow``)."""
        return [m for m in self._roots if self.match(m, path) is not None]


def _walk(node: _Node[T], segments: list[str], i: int, verb: str) -> tuple[Template, T, str] | None:
    # Literal first, then "*", then "**"; recursion only where a node offers a choice.
    n = len(segments)
    while i < n:
        seg = segments[i]
        child = node.literals.get(seg)
        star = node.star if seg else None
        if child is None:
            if star is None:
                return node.rest.get(verb)
            node = star
        elif star is None and not node.rest:
            node = child
        else:
            hit = _walk(child, segments, i + 1, verb)
            if hit is not None:
                return hit
            if star is not None:
                hit = _walk(star, segments, i + 1, verb)
                if hit is not None:
                    return hit
            return node.rest.get(verb)
        i += 1
    return node.ends.get(verb) or node.rest.get(verb)


def _bind(hit: tuple[Template, T, str], segments: list[str]) -> Match[T]:
    template, target, _ = hit
    params: dict[tuple[str, ...], str] = {}
    for field, start, end in template.spans:
        if end == start + 1:
            params[field] = segments[start]
        else:
            params[field] = "/".join(segments[start:end] if end else segments[start:])
    return Match(template, target, params)

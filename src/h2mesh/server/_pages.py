"""The built-in pages beside the routes: ``GET /openapi.json`` and ``GET /docs``.

``/docs`` is Swagger UI 5 (it reads OpenAPI 3.1), served from the assets that the
``swagger-ui-py`` package bundles (``pip install h2mesh[docs]``), so the page needs no
CDN: its scripts and styles come from ``/docs/assets/...`` on this server. Only the
asset files are used; the package's own code is never imported.
"""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ..protocol._openapi import openapi_document
from ..protocol.rest import RestServer

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["add_pages", "server_openapi"]

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
_ASSETS = (
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
    "swagger-ui.css",
    "favicon-32x32.png",
)

_DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{base}/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="{base}/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{base}/assets/swagger-ui-bundle.js"></script>
<script src="{base}/assets/swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{spec}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "BaseLayout",
}});
</script>
</body>
</html>
"""


def server_openapi(server: Server, **info: Any) -> dict[str, Any]:
    """The OpenAPI document of ``server``'s routes and Connect endpoints."""
    title = info.pop("title", None) or _title(server)
    return openapi_document(server.methods, server.rest, title=title, **info)


def _title(server: Server) -> str:
    names = [
        s.__service_name__ for s in server.services if not s.__service_name__.startswith("grpc.")
    ]
    return ", ".join(names) or "h2mesh API"


def _swagger_dir() -> Path | None:
    """The directory of Swagger UI's assets, found without importing the package."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("swagger_ui")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "static"
        if (path / "swagger-ui-bundle.js").is_file():
            return path
    return None


async def page_handler(request: Any, ctx: Any) -> None:
    """The handler of every page: the content comes from the page's render function."""
    return None


def add_pages(server: Server, rest: RestServer, target: Any, *, openapi: bool, docs: bool) -> None:
    """Serve ``/openapi.json`` and (with the bundle installed) ``/docs``; ``target`` is
    the server's route for ``page_handler``."""
    cache: dict[str, bytes] = {}

    def render_openapi() -> bytes:
        body = cache.get("openapi")
        if body is None:
            body = cache["openapi"] = msgspec.json.encode(server_openapi(server))
        return body

    if openapi or docs:
        rest.add_page(OPENAPI_PATH, "application/json", render_openapi, target)
    if not docs:
        return
    assets = _swagger_dir()
    if assets is None:
        return  # no bundle installed: /docs is not served (pip install h2mesh[docs])
    page = _DOCS_HTML.format(
        title=html.escape(_title(server)), base=DOCS_PATH, spec=OPENAPI_PATH
    ).encode()
    rest.add_page(DOCS_PATH, "text/html; charset=utf-8", lambda: page, target)
    for name in _ASSETS:
        file = assets / name
        if not file.is_file():
            continue
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or name.endswith(".js"):
            ctype += "; charset=utf-8"
        rest.add_page(f"{DOCS_PATH}/assets/{name}", ctype, _reader(file), target)


def _reader(file: Path) -> Any:
    data: list[bytes] = []

    def render() -> bytes:
        if not data:
            data.append(file.read_bytes())
        return data[0]

    return render

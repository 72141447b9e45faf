"""Importing a server by name in a worker, so that a reload serves new code.

``Server.serve(..., workers=N, load="app.main:server")`` gives each worker this job: drop
the served project's modules (those under the current directory, outside the virtualenv
and site-packages, and not h2mesh itself) from ``sys.modules``, then import
``app.main`` again and take its ``server``. Without ``load``, workers are forked copies
of the process that built the server and run the code it had imported (gunicorn's
``--preload``).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["check_spec", "import_server"]


def check_spec(spec: str) -> tuple[str, str]:
    """``(module, attribute)`` of a ``MODULE:ATTRIBUTE`` spec; ``ValueError`` otherwise."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"load= takes MODULE:ATTRIBUTE (e.g. app.main:server), got {spec!r}")
    return module, attr


def _project_modules() -> list[str]:
    cwd = os.getcwd() + os.sep
    prefixes = tuple({sys.prefix + os.sep, sys.base_prefix + os.sep})
    out = []
    for name, module in list(sys.modules.items()):
        if name == "h2mesh" or name.startswith("h2mesh.") or name == "__main__":
            continue
        path = getattr(module, "__file__", None) or ""
        if path.startswith(cwd) and not path.startswith(prefixes) and "site-packages" not in path:
            out.append(name)
    return out


def import_server(spec: str) -> Server:
    """The ``Server`` that ``spec`` names (a Server, or a callable returning one),
    imported afresh together with the rest of the project."""
    from ._server import Server

    module_name, attr = check_spec(spec)
    for name in _project_modules():
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Server) and callable(obj):
        obj = obj()
    if not isinstance(obj, Server):
        raise TypeError(f"{spec} is a {type(obj).__name__}, not a Server")
    return obj

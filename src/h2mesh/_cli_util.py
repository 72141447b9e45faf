"""What every ``h2mesh`` subcommand shares: exit statuses, the usage error, and loading
``MODULE:OBJECT`` targets."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["FAILED", "USAGE", "UsageError", "load_object"]

# Exit statuses: 0 done, 1 the call or the server failed, 2 the command line was wrong.
FAILED = 1
USAGE = 2


class UsageError(Exception):
    """The command line names something that cannot be used; exits with status 2."""


def load_object(spec: str) -> Any:
    """The object a ``MODULE:OBJECT`` target names, importing MODULE from the current
    directory; a :class:`UsageError` says what is wrong with the target."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:OBJECT (e.g. examples.greeter:Greeter), got {spec!r}")
    # Like other app servers: the project being served is the current directory.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise UsageError(f"cannot import module {module_name!r}: {exc}") from None
        raise UsageError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise UsageError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj

"""The public surface of the ``h2mesh`` package."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
import types
import typing
from collections.abc import Iterator
from typing import Any

import h2mesh

# Subpackages and modules a user imports from by name (``from h2mesh.discovery import
# EtcdResolver``). Everything else under ``h2mesh`` is private (``_name``).
PUBLIC_SUBMODULES = {
    "balancing",
    "client",
    "codec",
    "compression",
    "discovery",
    "observability",
    "protocol",
    "resilience",
    "schema",
    "server",
    "service",
    "testing",
    "transport",
}
# Its names are the core of the API, so each is also at the top level.
FLAT = {"client"}


def _public_names() -> set[str]:
    names = set()
    for name, value in vars(h2mesh).items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        names.add(name)
    return names | {"__version__"}


def test_all_is_complete() -> None:
    missing = _public_names() - set(h2mesh.__all__)
    assert not missing, f"exported but not in __all__: {sorted(missing)}"


def test_all_is_sorted_case_sensitively() -> None:
    # Plain ``sorted`` order: capitalised names, then ``__version__``, then lowercase names.
    assert h2mesh.__all__ == sorted(h2mesh.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(h2mesh.__all__) == len(set(h2mesh.__all__))


def test_every_name_resolves() -> None:
    for name in h2mesh.__all__:
        assert getattr(h2mesh, name, None) is not None, name


def test_star_import_gives_exactly_all() -> None:
    ns: dict[str, object] = {}
    exec("from h2mesh import *", ns)
    ns.pop("__builtins__", None)
    assert set(ns) == set(h2mesh.__all__)


def test_documented_entry_points_are_exported() -> None:
    for name in (
        "Channel",
        "ClientInterceptor",
        "Code",
        "Context",
        "Endpoint",
        "HedgingPolicy",
        "Metadata",
        "OutlierDetection",
        "ResponseMetadata",
        "RetryPolicy",
        "RetryThrottle",
        "RpcError",
        "Server",
        "ServerInterceptor",
        "Service",
        "SyncChannel",
        "TransportConfig",
        "rpc",
        "run",
    ):
        assert name in h2mesh.__all__


def test_version_is_a_string() -> None:
    assert isinstance(h2mesh.__version__, str)
    assert h2mesh.__version__.count(".") >= 1


def test_installed_metadata_carries_the_package_version() -> None:
    assert importlib.metadata.version("h2mesh") == h2mesh.__version__


def _public_modules() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(h2mesh.__path__) if not m.name.startswith("_")
    )


def test_every_public_submodule_is_listed() -> None:
    # A new public module must be placed on purpose (or named ``_private``).
    assert set(_public_modules()) == PUBLIC_SUBMODULES | {"cli"}


def test_every_public_submodule_declares_what_it_exports() -> None:
    for name in sorted(PUBLIC_SUBMODULES):
        module = importlib.import_module(f"h2mesh.{name}")
        exported = getattr(module, "__all__", None)
        assert exported, f"h2mesh.{name} has no __all__"
        assert len(exported) == len(set(exported)), name
        for item in exported:
            assert hasattr(module, item), f"h2mesh.{name}.__all__ names a missing {item}"


def test_client_names_are_at_the_top_level() -> None:
    for name in sorted(FLAT):
        module = importlib.import_module(f"h2mesh.{name}")
        missing = set(module.__all__) - set(h2mesh.__all__)
        assert not missing, f"h2mesh.{name} exports {sorted(missing)}, h2mesh does not"
        for item in module.__all__:
            assert getattr(h2mesh, item) is getattr(module, item), item


def _reachable() -> dict[int, str]:
    """Every object a user can import by a public name, as id -> where from."""
    found = {id(getattr(h2mesh, n)): f"h2mesh.{n}" for n in h2mesh.__all__}
    for name in sorted(PUBLIC_SUBMODULES):
        module = importlib.import_module(f"h2mesh.{name}")
        for item in module.__all__:
            found.setdefault(id(getattr(module, item)), f"h2mesh.{name}.{item}")
    return found


def _classes_in(annotation: Any) -> Iterator[type]:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        yield annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, list):  # Callable[[A, B], R]
            for item in arg:
                yield from _classes_in(item)
        else:
            yield from _classes_in(arg)
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):
        yield origin


def _signatures(obj: Any) -> Iterator[tuple[str, Any]]:
    """(where, callable) for a public function, or a class's constructor and methods."""
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if name == "__init__" or (not name.startswith("_") and inspect.isfunction(member)):
                yield f"{obj.__qualname__}.{name}", member
    elif inspect.isfunction(obj):
        yield obj.__qualname__, obj


def test_types_in_public_signatures_are_public() -> None:
    # A parameter or result typed with a class users cannot import by a public name
    # (``Channel(retry=RetryPolicy(...))`` when RetryPolicy lived only in a private
    # module) fails here.
    reachable = _reachable()
    hidden = set()
    for name in h2mesh.__all__:
        for where, func in _signatures(getattr(h2mesh, name)):
            hints = typing.get_type_hints(func, include_extras=False)
            for annotation in hints.values():
                for cls in _classes_in(annotation):
                    if cls.__module__.startswith("h2mesh") and id(cls) not in reachable:
                        hidden.add(f"{where}: {cls.__module__}.{cls.__qualname__}")
    assert not hidden, "\n".join(sorted(hidden))

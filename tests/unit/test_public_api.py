"""The public surface of the ``h2mesh`` package."""

from __future__ import annotations

import types

import h2mesh


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
        "Code",
        "Context",
        "ResponseMetadata",
        "RpcError",
        "Server",
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

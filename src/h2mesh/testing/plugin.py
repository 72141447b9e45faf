"""The pytest plugin of h2mesh (registered through the ``pytest11`` entry point, so it is
active wherever h2mesh is installed; ``-p no:h2mesh`` turns it off).

Fixtures:

``h2mesh_services``
    The services ``h2mesh_server`` serves: override it in a test module or conftest
    (``return [Greeter()]``). The default is an error saying so.
``h2mesh_server``
    A :class:`~h2mesh.testing.ServerThread` serving ``h2mesh_services`` on 127.0.0.1, on
    a free port; ``h2mesh_server.url`` is its address. Stopped after the test.
``h2mesh_registry``
    A :class:`~h2mesh.discovery.Registry` in a temporary file, which every server and
    channel of the test uses for ``registry://`` (``$H2MESH_REGISTRY`` points at it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The rest of h2mesh is imported by the fixtures that use it, so that loading the plugin
# (in every pytest run of an environment that has h2mesh) costs nothing.
if TYPE_CHECKING:
    from ..discovery import Registry
    from ..service import Service
    from ._thread import ServerThread

__all__ = ["h2mesh_registry", "h2mesh_server", "h2mesh_services"]


@pytest.fixture
def h2mesh_services() -> list[Service]:
    """The services of ``h2mesh_server``; override this fixture to choose them."""
    raise pytest.UsageError(
        "h2mesh_server serves the services of the h2mesh_services fixture: define it "
        "in your test module or conftest.py (return [MyService()])"
    )


@pytest.fixture
def h2mesh_server(h2mesh_services: list[Service]) -> Iterator[ServerThread]:
    """A server of ``h2mesh_services`` on a free port of 127.0.0.1, in its own thread."""
    from ._thread import ServerThread

    with ServerThread(h2mesh_services) as served:
        yield served


@pytest.fixture
def h2mesh_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """An embedded registry in a temporary file, the default for ``registry://``."""
    from ..discovery import Registry

    path = tmp_path / "registry.db"
    monkeypatch.setenv("H2MESH_REGISTRY", str(path))
    registry = Registry(path)
    try:
        yield registry
    finally:
        registry.close()

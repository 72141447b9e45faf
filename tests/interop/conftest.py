"""Fixtures shared by the interop tests against Node.js peers (grpc-js, connect-node, buf).

The peers live in ``tests/interop/node`` (``package.json`` + ``package-lock.json``),
installed by ``scripts/setup.sh`` with ``npm ci``. A missing ``node`` or a missing module
fails the test with a hint, never skips it.

Node processes cost ~0.3 s each, so the Node clients run every case in one process per
server and report one JSON line per case; ``interop_server`` is therefore module-scoped
(one h2mesh server per loop kind per module) rather than the per-test ``live_server``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import LOOP_KINDS, LiveServer, require_binary

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_MODULES = (
    "@grpc/grpc-js",
    "@grpc/proto-loader",
    "@connectrpc/connect",
    "@connectrpc/connect-node",
    "@bufbuild/protobuf",
    "@bufbuild/buf",
)
PROTO_ROOT = Path("/usr/share/grpc-proto")
TEST_PROTO = PROTO_ROOT / "grpc/testing/test.proto"
NPM_HINT = "run scripts/setup.sh (npm ci --prefix tests/interop/node)"


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` binary, with the interop peers' modules installed next to the scripts."""
    path = require_binary("node")
    missing = [m for m in NODE_MODULES if not (NODE_DIR / "node_modules" / m).is_dir()]
    if missing:
        pytest.fail(f"node modules missing: {', '.join(missing)}: {NPM_HINT}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def buf(node: str) -> str:
    """The ``buf`` CLI of the ``@bufbuild/buf`` npm package.

    The package's ``bin/buf`` is a Node launcher for the native binary that npm installs
    from the platform's optional package (``@bufbuild/buf-linux-x64``...); the tests run
    that binary directly to save a Node start per call.
    """
    modules = NODE_DIR / "node_modules"
    native = sorted(modules.glob("@bufbuild/buf-*/bin/buf"))
    path = native[0] if native else modules / ".bin" / "buf"
    if not path.exists():
        pytest.fail(f"{path} not found: {NPM_HINT}", pytrace=False)
    return str(path)


@pytest.fixture(scope="session")
def interop_schema(buf: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FileDescriptorSet of grpc/testing/test.proto and its imports (``buf build``)."""
    if not TEST_PROTO.is_file():
        pytest.fail(f"{TEST_PROTO} not found: run scripts/setup.sh (grpc-proto)", pytrace=False)
    out = tmp_path_factory.mktemp("schema") / "interop.binpb"
    cmd = [buf, "build", str(PROTO_ROOT), "--path", str(TEST_PROTO), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"buf build failed: {done.stderr}"
    return out


def run_node(node: str, script: str, *args: str, timeout: float = 60.0) -> Any:
    """Run a script of ``tests/interop/node``; the finished ``subprocess.CompletedProcess``."""
    return subprocess.run(
        [node, str(NODE_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=NODE_DIR,
        check=False,
    )


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects a Node peer printed, one a line."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module", params=LOOP_KINDS)
def interop_server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """The h2mesh interop ``TestService``, one server per loop kind for a whole module."""
    from ._service import InteropTestService

    live = LiveServer([InteropTestService()], str(request.param))
    try:
        live.start()
        yield live
    finally:
        live.close()

"""The gRPC interop test protos, compiled with grpcio-tools when the test session starts.

The protos come from Debian's ``grpc-proto`` package (installed by scripts/setup.sh).
They are copied under a package of their own (``h2interop``) so that the generated
modules do not collide with grpcio's ``grpc`` package; the proto package, and so the
service name ``grpc.testing.TestService``, stays as it is.
"""

import atexit
import importlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PROTO_DIR = Path("/usr/share/grpc-proto/grpc/testing")
FILES = ("empty.proto", "messages.proto", "test.proto")


def _compile() -> Path:
    missing = [name for name in FILES if not (PROTO_DIR / name).is_file()]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found in {PROTO_DIR}: "
            "run scripts/setup.sh (Debian package grpc-proto)"
        )
    out = Path(tempfile.mkdtemp(prefix="h2mesh-interop-"))
    atexit.register(shutil.rmtree, out, True)
    pkg = out / "h2interop"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in FILES:
        text = (PROTO_DIR / name).read_text()
        (pkg / name).write_text(text.replace('import "grpc/testing/', 'import "h2interop/'))
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{out}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *(f"h2interop/{name}" for name in FILES),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"protoc failed: {done.stderr}")
    return out


def _load() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    out = _compile()
    sys.path.insert(0, str(out))
    return (
        importlib.import_module("h2interop.empty_pb2"),
        importlib.import_module("h2interop.messages_pb2"),
        importlib.import_module("h2interop.test_pb2"),
        importlib.import_module("h2interop.test_pb2_grpc"),
    )


empty_pb2, messages_pb2, test_pb2, test_pb2_grpc = _load()

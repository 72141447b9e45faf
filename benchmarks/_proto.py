"""Compiles ``bench.proto`` with grpcio-tools into a cache directory and imports it."""

from __future__ import annotations

import hashlib
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PROTO = Path(__file__).with_name("bench.proto")
SERVICE = "bench.v1.Bench"


def cache_dir() -> Path:
    """Where the generated module lives: keyed by the .proto's content."""
    digest = hashlib.sha256(PROTO.read_bytes()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"h2mesh-bench-proto-{digest}"


def load() -> ModuleType:
    """The generated ``bench_pb2`` module (compiled on first use)."""
    out = cache_dir()
    if not (out / "bench_pb2.py").exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO.parent}",
                f"--python_out={out}",
                str(PROTO),
            ],
            check=True,
        )
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module("bench_pb2")


def grpc_frame(payload: bytes) -> bytes:
    """One gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload

"""A benchmark server that counts the bytecode instructions each Python function runs.

``H2MESH_OPCOUNT_OUT=FILE python -m benchmarks._opcount SYSTEM PORT`` serves as
``benchmarks.servers`` does; each SIGUSR1 writes the counts so far (bytecodes and calls
per function) to ``FILE.<k>`` (k = 0, 1, ...) and starts counting again from zero only on
the first one. Used by
``benchmarks/callgrind.py`` to share the interpreter's instructions among layers:
the count is deterministic, as callgrind's is, and slow.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
from types import CodeType, FrameType
from typing import Any

counts: collections.Counter[CodeType] = collections.Counter()
calls: collections.Counter[CodeType] = collections.Counter()


def _local(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "opcode":
        counts[frame.f_code] += 1
    return _local


def _global(frame: FrameType, event: str, arg: Any) -> Any:
    frame.f_trace_opcodes = True
    if event == "call":
        calls[frame.f_code] += 1
    return _local


def _name(code: CodeType) -> str:
    return f"{code.co_filename}:{code.co_firstlineno}({code.co_qualname})"


trace = _global  # what sys.settrace takes (benchmarks/client_callgrind.py)


def write_counts(path: str) -> None:
    """The counts so far, one ``bytecodes calls function`` line per function."""
    snapshot, entered = dict(counts), dict(calls)  # C calls: the tracer counts this frame
    merged: collections.Counter[str] = collections.Counter()
    merged_calls: collections.Counter[str] = collections.Counter()
    for code, n in snapshot.items():
        merged[_name(code)] += n
        merged_calls[_name(code)] += entered.get(code, 0)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        for name, n in merged.most_common():
            f.write(f"{n} {merged_calls[name]} {name}\n")
    os.replace(tmp, path)


def main() -> None:
    out = os.environ["H2MESH_OPCOUNT_OUT"]
    snapshots = 0

    def dump(signum: int, frame: Any) -> None:
        nonlocal snapshots
        write_counts(f"{out}.{snapshots}")
        if snapshots == 0:
            counts.clear()
            calls.clear()
        snapshots += 1

    signal.signal(signal.SIGUSR1, dump)
    from . import servers

    sys.argv = ["benchmarks.servers", *sys.argv[1:]]
    sys.settrace(_global)
    servers.main()


if __name__ == "__main__":
    main()

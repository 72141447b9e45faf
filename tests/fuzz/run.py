"""Run one fuzz target under atheris: ``python -m tests.fuzz.run TARGET [libFuzzer args]``.

Exits 0 when the run ends without a crash; a crash prints the input and exits non-zero.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from .targets import SEEDS, TARGETS


def main() -> None:
    name = sys.argv[1]
    target = TARGETS[name]
    corpus = Path(tempfile.mkdtemp(prefix=f"h2mesh-fuzz-{name}-"))
    for i, seed in enumerate(SEEDS[name]):
        (corpus / f"seed-{i}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *sys.argv[2:], str(corpus)], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

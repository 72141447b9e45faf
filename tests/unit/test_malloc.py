"""The allocator settings servers and channels apply (``h2mesh._malloc``), in fresh
processes: whether they are applied, and what they change."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from h2mesh import _malloc

# Four large buffers made and freed per round, as one large call's copies are, with a
# small object kept alive above them each time; the size grows a little each round (as
# messages of varied sizes do), so glibc's adaptive threshold does not settle on it. The
# page faults per round are printed (deterministic for a given glibc: 658 plain, 4.9 tuned
# with glibc 2.36).
_ROUNDS = """
import resource, sys
if sys.argv[1] == "tuned":
    from h2mesh import _malloc
    assert _malloc.tune()
keep = []
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(200):
    buffers = [bytearray(262144 + 4096 * i) for _ in range(4)]
    keep.append(bytearray(1000))
    del buffers
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 200)
"""

_STARTED = """
import asyncio
from h2mesh import Server, _malloc

async def main() -> None:
    server = Server([])
    await server.start("127.0.0.1", 0)
    print(_malloc._tuned)
    await server.stop(grace=0)

asyncio.run(main())
"""


def _has_glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


# The settings are glibc's (mallopt); with another C library tune() leaves malloc alone.
_GLIBC_ONLY = pytest.mark.skipif(not _has_glibc(), reason="mallopt settings exist in glibc only")


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    """What ``code`` prints, run in a new interpreter without this one's allocator
    settings (``MALLOC_*``, ``H2MESH_MALLOC_TUNING``), plus ``env``."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MALLOC_") and k != "H2MESH_MALLOC_TUNING"
    }
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, **(env or {})},
        check=True,
    )
    return done.stdout.strip()


@_GLIBC_ONLY
def test_tuned_heap_keeps_large_freed_buffers_instead_of_faulting_them_in_again() -> None:
    plain = float(_python(_ROUNDS, "plain"))
    tuned = float(_python(_ROUNDS, "tuned"))
    assert tuned < 16.0, tuned
    assert tuned * 10 < plain, (tuned, plain)


@_GLIBC_ONLY
@pytest.mark.parametrize(
    ("env", "applied"),
    [
        ({}, "True"),
        ({"H2MESH_MALLOC_TUNING": "0"}, "False"),
        ({"MALLOC_TRIM_THRESHOLD_": "131072"}, "False"),
    ],
    ids=["default", "turned-off", "user-settings-kept"],
)
def test_a_starting_server_applies_the_settings_unless_told_not_to(
    env: dict[str, str], applied: str
) -> None:
    assert _python(_STARTED, env=env) == applied


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, True),
        ({"H2MESH_MALLOC_TUNING": "1"}, True),
        ({"H2MESH_MALLOC_TUNING": "off"}, False),
        ({"H2MESH_MALLOC_TUNING": "0"}, False),
        ({"MALLOC_TOP_PAD_": "0"}, False),
        ({"MALLOC_MMAP_THRESHOLD_": "65536"}, False),
    ],
)
def test_wanted_reads_the_environment(environ: dict[str, str], expected: bool) -> None:
    assert _malloc.wanted(environ) is expected

"""Allocator settings for a process that moves large messages (glibc only).

Every message of a few hundred KiB is copied several times on its way (socket read,
the engine's frames, the body, the decoded value, the encoded answer), each copy a
fresh buffer of that size. glibc serves such buffers from the top of its heap and,
by default, gives the top back to the kernel as soon as more than twice the last large
block is free there; the next message then faults the same pages in again. Measured on
a 256 KiB echo (``benchmarks``: ``server_faults_per_call``), that is about 120 page
faults and 0.4 ms of kernel time per call on the server, more than the copies cost.

``tune()`` asks glibc (``mallopt``) to keep ``MALLOC_TOP_PAD`` bytes (16 MiB) at the top
of the heap when it trims, and to take blocks of up to 8 MiB (more than the default
4 MiB message limit) from the heap rather than from ``mmap``: the faults go (0 per call
at 256 KiB, 4 at 1 MiB), at the price of that much freed memory kept by the process.

It is done once per process, by servers when they start and by channels when made.
``H2MESH_MALLOC_TUNING=0`` turns it off; a process whose environment already sets any
of glibc's ``MALLOC_TOP_PAD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_MMAP_THRESHOLD_``
keeps the settings it asked for. Other C libraries (musl, macOS) are left alone.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

__all__ = ["MMAP_THRESHOLD", "TOP_PAD", "tune", "wanted"]

# mallopt() parameter numbers from glibc's <malloc.h>.
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
TOP_PAD = 16 * 1024 * 1024
MMAP_THRESHOLD = 8 * 1024 * 1024
_USER_SETTINGS = ("MALLOC_TOP_PAD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")

_tuned: bool | None = None  # the outcome of the first call


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process's environment leaves the allocator to h2mesh."""
    if environ.get("H2MESH_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return not any(name in environ for name in _USER_SETTINGS)


def tune() -> bool:
    """Apply the settings above once per process; True if they are in force."""
    global _tuned
    if _tuned is None:
        _tuned = wanted() and _apply()
    return _tuned


def _apply() -> bool:
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # (glibc answers "glibc 2.36")
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success.
    done: int = mallopt(_M_TOP_PAD, TOP_PAD) + mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return done == 2

"""glibc malloc settings for the long-running servers (``xdsi registry``, ``repository``, ``imaging-source``,
``demo``).

Why: a LeafClass ITI-18 answer is a few hundred KB of text, joined and encoded in a thread-pool thread
next to SQLite's 64 MiB page cache. With glibc's defaults such a buffer often lands in a heap that the
thread's arena maps for it and unmaps again when it is freed (or in the top of the main heap, which is
trimmed back to the kernel), so every answer page-faults its memory in afresh: ~170 faults and
~0.15-0.2 ms per query at 1M entries, and the pattern comes and goes with the heap layout left by
start-up. One arena, and trim/mmap thresholds fixed well above any single answer, keep these buffers in
memory that is reused (docs/performance.md, "Fourth run").

Settings already given in the environment (``MALLOC_ARENA_MAX``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_`` or ``glibc.malloc.*`` in ``GLIBC_TUNABLES``) win: an operator's choice is
never overridden. ``XDSI_MALLOC_TUNING=off`` keeps glibc's defaults altogether (the benchmarks' A/B runs).
Other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["OFF_ENV", "SETTINGS", "tune"]

#: ``XDSI_MALLOC_TUNING=off``: leave glibc's defaults.
OFF_ENV = "XDSI_MALLOC_TUNING"

MiB = 1024 * 1024

# mallopt(3) parameter numbers (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

#: (mallopt parameter, value, environment variable and GLIBC_TUNABLES name that override it)
SETTINGS = (
    # One arena, the main heap, which only grows and shrinks at its top. A thread arena is a chain of 64 MiB
    # heaps; once long-lived data (a connection's page cache) fills one, a big transient buffer gets a heap
    # of its own that is unmapped when the buffer is freed, whatever the thresholds say. The threads share
    # one lock, which the GIL mostly serializes anyway (ITI-18 and ITI-42 figures within noise of 2 arenas).
    (_M_ARENA_MAX, 1, "MALLOC_ARENA_MAX", "glibc.malloc.arena_max"),
    # Keep up to 64 MiB of free memory at the top of a heap instead of returning it after each answer.
    (_M_TRIM_THRESHOLD, 64 * MiB, "MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"),
    # Serve blocks up to 16 MiB from the heaps (a LeafClass answer of 10,000 entries is ~70 MB: mmap).
    (_M_MMAP_THRESHOLD, 16 * MiB, "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
)


def tune(environ: dict[str, str] | None = None) -> list[str]:
    """Apply :data:`SETTINGS` with ``mallopt``; call it early, before the process starts threads.

    Returns the names of the settings applied (empty on other C libraries, or when the environment
    sets them all).
    """
    env = os.environ if environ is None else environ
    if env.get(OFF_ENV, "").lower() == "off" or platform.libc_ver()[0] != "glibc":
        return []
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always has it
        return []
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    tunables = env.get("GLIBC_TUNABLES", "")
    applied = []
    for param, value, variable, tunable in SETTINGS:
        if variable in env or tunable in tunables:
            continue
        if mallopt(param, value) == 1:
            applied.append(variable)
    return applied

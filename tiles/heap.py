"""Give the C heap's free pages back to the operating system between the phases of a build.

numpy arrays of a few MB come from glibc's heap once it has raised its mmap threshold, and the
heap keeps their pages when they are freed: a whole-layer partition's resident memory then grows
zoom after zoom though nothing is held. ``malloc_trim`` returns those pages; elsewhere it is a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache


@cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None)


def release_free_memory() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

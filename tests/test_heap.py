"""Freed heap pages go back to the operating system when a build asks (tiles/heap.py)."""
from __future__ import annotations

import subprocess
import sys

_CHILD = r"""
import numpy as np
from tiles.heap import release_free_memory

def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

import ctypes
# blocks under 64 MB from the heap, as glibc's own rising threshold does in a long build; set
# outright because that heuristic depends on what the process allocated and freed before
ctypes.CDLL("libc.so.6").mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
arrays = [np.ones(4 << 20, dtype=np.uint8) for _ in range(100)]  # 400 MB of heap, pages touched
keep = arrays[-1]  # the last, highest block stays: the heap cannot simply shrink from its top
del arrays
before = resident_mb()
release_free_memory()
print(before, resident_mb())
"""


def test_freed_heap_pages_are_given_back():
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True).stdout
    before, after = map(float, out.split())
    assert before - after > 300, (before, after)  # of the 400 MB freed

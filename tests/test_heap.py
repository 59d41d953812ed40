"""Freed heap pages go back to the operating system when a build asks (tiles/heap.py)."""
from __future__ import annotations

import subprocess
import sys

_CHILD = r"""
import numpy as np
from tiles.heap import release_free_memory

def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

np.ones(16 << 20, dtype=np.uint8)  # freed at once: glibc now serves blocks under 16 MB from its heap
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

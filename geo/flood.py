"""Bathtub flood depth from a DEM: water at one level, spreading only from its source.

A plain "every cell below the level is wet" map floods sealed basins that the water can
never reach. Here the cells below the level are split into 4-connected components and only
those touching a source cell keep water. Pure numpy/scipy: no files, no CRS.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

# 4-connectivity: water does not leak through a diagonal gap between two dry cells.
_ROOK = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def flood_depth(dem: np.ndarray, level: float, sources: Iterable[tuple[int, int]],
                nodata: float | None = None) -> np.ndarray:
    """Water depth (level - ground, float32) where the source's basin floods, else 0.

    ``sources`` are (row, col) cells where the water enters (a river cell, a breach).
    Cells equal to ``nodata`` or NaN never flood and block the water. A source cell that is
    outside the grid raises ValueError; one above the level floods nothing.
    """
    dem = np.asarray(dem, dtype=np.float64)
    if dem.ndim != 2:
        raise ValueError(f"the DEM must be a 2-D array, got shape {dem.shape}")
    valid = np.isfinite(dem)
    if nodata is not None and np.isfinite(nodata):
        valid &= dem != nodata
    wet = valid & (dem < level)
    labels, _ = ndimage.label(wet, structure=_ROOK)
    rows, cols = dem.shape
    keep: set[int] = set()
    for r, c in sources:
        if not (0 <= r < rows and 0 <= c < cols):
            raise ValueError(f"flood source cell ({r}, {c}) is outside the {rows} x {cols} DEM")
        if labels[r, c]:
            keep.add(int(labels[r, c]))
    flooded = np.isin(labels, sorted(keep)) if keep else np.zeros_like(wet)
    depth = np.zeros(dem.shape, dtype=np.float32)
    depth[flooded] = (level - dem[flooded]).astype(np.float32)
    return depth

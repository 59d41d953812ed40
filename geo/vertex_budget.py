"""A vertex budget per feature, so one pathological geometry cannot stall a whole build.

Roof triangulation (earcut) slows down quadratically on huge rings: a 100,000-vertex circle
takes ~40 s, so a 1,000,000-vertex one about an hour. A feature over the budget is simplified
(Douglas-Peucker with topology preserved) with a tolerance that starts far below the
feature's mean edge length and grows until it fits; one that still does not fit, or comes
out empty or invalid, is left out, and the caller reports which.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

MAX_VERTICES = 5_000  # detailed building outlines have hundreds; curved landmarks a few thousand
_FIRST_TOLERANCE = 0.01  # of the mean edge length the budget allows
_GROWTH = 4.0
_ATTEMPTS = 8


@dataclass(frozen=True)
class Budgeted:
    geoms: np.ndarray  # the input, with features over the budget replaced by their simplified form
    simplified: np.ndarray  # indices of features that were simplified to fit
    dropped: np.ndarray  # indices of features that could not be made to fit (their geometry is None)


def limit_vertices(geoms: np.ndarray, max_vertices: int = MAX_VERTICES) -> Budgeted:
    """Bring every geometry to at most ``max_vertices`` coordinates, keeping it valid."""
    geoms = np.asarray(geoms, dtype=object).copy()
    over = np.flatnonzero(shapely.get_num_coordinates(geoms) > max_vertices)
    simplified, dropped = [], []
    for i in over:
        fitted = _fit(geoms[i], max_vertices)
        geoms[i] = fitted
        (dropped if fitted is None else simplified).append(i)
    return Budgeted(geoms, np.array(simplified, dtype=np.int64), np.array(dropped, dtype=np.int64))


def _fit(geom, max_vertices: int):
    tolerance = _FIRST_TOLERANCE * shapely.length(geom) / max_vertices
    if not np.isfinite(tolerance) or tolerance <= 0:
        return None
    for _ in range(_ATTEMPTS):
        out = shapely.simplify(geom, tolerance, preserve_topology=True)
        if shapely.get_num_coordinates(out) <= max_vertices:
            return out if not out.is_empty and out.is_valid else None
        tolerance *= _GROWTH
    return None

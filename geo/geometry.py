"""Geometry repair, vectorised with shapely 2."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely import GeometryType

POLYGONAL = (GeometryType.POLYGON, GeometryType.MULTIPOLYGON)


@dataclass(frozen=True)
class RepairResult:
    geometries: np.ndarray  # same length as the input; None where dropped
    repaired: int  # invalid geometries made valid
    dropped: int  # null, empty, or nothing usable left after repair


def repair(geoms: np.ndarray, *, polygonal: bool = False) -> RepairResult:
    """Make geometries valid. With ``polygonal``, keep only the polygon parts of a repair.

    A self-intersecting footprint (bow-tie) becomes a MultiPolygon; a polygon that
    collapses to a line or point is dropped rather than published.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    invalid = ~missing & ~shapely.is_valid(geoms)
    if invalid.any():
        fixed = shapely.make_valid(geoms[invalid])
        if polygonal:
            fixed = np.array([_polygon_parts(g) for g in fixed], dtype=object)
        out[invalid] = fixed
    dropped_mask = shapely.is_missing(out) | shapely.is_empty(out)
    out[dropped_mask] = None
    return RepairResult(out, int((invalid & ~dropped_mask).sum()), int(dropped_mask.sum()))


def _polygon_parts(geom):
    if geom is None or geom.is_empty:
        return None
    kind = shapely.get_type_id(geom)
    if kind in POLYGONAL:
        return geom
    parts = [p for p in shapely.get_parts(geom) if shapely.get_type_id(p) in POLYGONAL]
    if not parts:
        return None
    polys = []
    for p in parts:
        polys.extend(shapely.get_parts(p))
    return polys[0] if len(polys) == 1 else shapely.multipolygons(polys)


def non_polygonal(geoms: np.ndarray) -> np.ndarray:
    """Indices of present geometries that are not Polygon or MultiPolygon."""
    geoms = np.asarray(geoms, dtype=object)
    ids = shapely.get_type_id(geoms)
    present = ~shapely.is_missing(geoms)
    return np.flatnonzero(present & ~np.isin(ids, POLYGONAL))

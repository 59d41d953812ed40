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
    dropped_at: np.ndarray  # their positions in the input


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
    return RepairResult(out, int((invalid & ~dropped_mask).sum()), int(dropped_mask.sum()),
                        np.flatnonzero(dropped_mask))


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


#: how far past ±180/±90 a coordinate may lie and still count as rounding (about 0.1 mm)
LONLAT_TOLERANCE = 1e-9


def clamp_lonlat_xy(coords: np.ndarray, tolerance: float = LONLAT_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat rows (x, y[, z]) a rounding hair past the limits pulled onto them, and which rows were.

    Anything further out, and NaN, is left alone for the caller's range check to refuse.
    """
    limit = np.array([180.0, 90.0])
    over = np.abs(coords[:, :2]) - limit
    hair = ((over > 0) & (over <= tolerance)).any(axis=1)
    out = coords.copy()
    out[hair, :2] = np.clip(coords[hair, :2], -limit, limit)
    return out, hair


def clamped_note(count: int, singular: str, plural: str) -> str:
    """The report line for ``count`` features or records clamped by ``clamp_lonlat_xy``."""
    return (f"coordinates: {count} {singular if count == 1 else plural} lay up to {LONLAT_TOLERANCE:g} degrees "
            "past ±180/±90 (rounding); clamped onto the limit")


def clamp_lonlat(geoms: np.ndarray, tolerance: float = LONLAT_TOLERANCE) -> tuple[np.ndarray, int]:
    """Pull coordinates a rounding hair past the lon/lat limits onto them (``clamp_lonlat_xy``).

    Returns the geometries and how many of them were touched.
    """
    geoms = np.asarray(geoms, dtype=object)
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    hair = clamp_lonlat_xy(coords, tolerance)[1]
    if not hair.any():
        return geoms, 0
    touched = np.unique(index[hair])
    out = geoms.copy()
    # include_z=None hands over each geometry's own dimensions, so heights survive
    out[touched] = shapely.transform(geoms[touched], lambda c: clamp_lonlat_xy(c, tolerance)[0], include_z=None)
    return out, len(touched)

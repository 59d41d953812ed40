"""What the CityGML and CityJSON readers share: CRS names, surface kinds, polygon checks.

Polygon checks (documented tolerances, all in metres):
- a ring needs 3 distinct vertices after dropping the closing vertex and repeated
  consecutive vertices;
- a polygon needs an area of at least ``MIN_AREA_M2`` (1 cm²);
- a polygon is non-planar when a vertex lies farther than
  ``max(PLANAR_TOL_M, PLANAR_TOL_REL * diameter)`` from the plane through the ring's centroid
  with its Newell normal. The writer triangulates each polygon on its best-fit plane, so what
  matters for a correct mesh is the deviation relative to the polygon's size: 0.1 m absolute
  for small faces, 1 % of the diameter for large roofs (real LOD2 roofs are rarely exactly
  planar, and skipping them would punch holes in buildings).
Geographic coordinates are scaled to metres around the ring for these checks only.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import CRS

from geo.crs import crs_label, parse_crs
from geo.errors import CRSError

MIN_AREA_M2 = 1e-4
PLANAR_TOL_M = 0.1
PLANAR_TOL_REL = 0.01
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQ = 111_320.0

#: CityGML / CityJSON semantic surface types to Surface.kind
KINDS = {
    "RoofSurface": "roof",
    "WallSurface": "wall",
    "GroundSurface": "ground",
    "ClosureSurface": "closure",
}

# skip reasons, shared so reports from both readers add up
DEGENERATE = "degenerate polygon"
DEGENERATE_HOLE = "degenerate hole"
NON_PLANAR = "non-planar polygon"
BAD_COORDS = "bad coordinates"
NO_LOD = "requested LOD not present"
NO_SURFACES = "no valid surfaces"

_EPSG_URL = re.compile(r"^https?://www\.opengis\.net/def/crs/EPSG/[^/]+/(\d+)/?$", re.I)
_EPSG_URN = re.compile(r"^urn:(?:ogc|x-ogc):def:crs:EPSG:[^:]*:(\d+)$", re.I)
_EPSG_CODE = re.compile(r"^EPSG:+(\d+)$", re.I)
_URN_COMPOUND = re.compile(r"^urn:(?:ogc|x-ogc):def:crs,(.+)$", re.I)
_URN_PART = re.compile(r"^crs:EPSG:[^:]*:(\d+)$", re.I)
_URL_COMPOUND = re.compile(r"^https?://www\.opengis\.net/def/crs-compound\?(.+)$", re.I)
#: German AdV names used by many state CityGML exports
_ADV = {
    "ETRS89_UTM32*DE_DHHN92_NH": "EPSG:25832+5783",
    "ETRS89_UTM33*DE_DHHN92_NH": "EPSG:25833+5783",
    "ETRS89_UTM32*DE_DHHN2016_NH": "EPSG:25832+7837",
    "ETRS89_UTM33*DE_DHHN2016_NH": "EPSG:25833+7837",
    "ETRS89_UTM32": "EPSG:25832",
    "ETRS89_UTM33": "EPSG:25833",
}


def _single_code(text: str) -> str | None:
    for pattern in (_EPSG_URL, _EPSG_URN, _EPSG_CODE):
        m = pattern.match(text)
        if m:
            return m.group(1)
    return None


def srs_to_crs(srs: str, *, source: str) -> str:
    """A pyproj-parseable CRS string (``EPSG:6697``, ``EPSG:25832+5783``) for a GML srsName
    or CityJSON referenceSystem. Raises CRSError naming the file when it is not understood."""
    text = srs.strip()
    code = _single_code(text)
    out: str | None = f"EPSG:{code}" if code else None
    if out is None:
        m = _URN_COMPOUND.match(text)
        if m:
            codes = [_URN_PART.match(p.strip()) for p in m.group(1).split(",")]
            if codes and all(codes):
                out = "EPSG:" + "+".join(c.group(1) for c in codes)
    if out is None:
        m = _URL_COMPOUND.match(text)
        if m:
            codes = [_single_code(p.split("=", 1)[-1]) for p in m.group(1).split("&")]
            if codes and all(codes):
                out = "EPSG:" + "+".join(codes)
    if out is None:
        adv = text.split(":")[-1] if text.lower().startswith("urn:adv:crs:") else None
        out = _ADV.get(adv or "")
    if out is None:
        try:  # WKT, PROJ strings and other forms pyproj knows itself
            out = crs_label(CRS.from_user_input(text))
        except Exception:  # noqa: BLE001 - any pyproj failure means "not understood"
            raise CRSError(
                f"{source}: its CRS {text!r} is not understood; declare it with --crs, "
                "e.g. --crs EPSG:6697 or --crs EPSG:25832+5783"
            ) from None
    parse_crs(out, what=f"{source}: the file's CRS")  # raises CRSError with a hint
    return out


@lru_cache(maxsize=64)
def crs_info(crs: str) -> tuple[bool, bool]:
    """(geographic, lat_first) of the horizontal part of a CRS string."""
    c = parse_crs(crs)
    horizontal = c.sub_crs_list[0] if c.is_compound else c
    geographic = bool(horizontal.is_geographic)
    first = horizontal.axis_info[0].direction.lower() if horizontal.axis_info else "east"
    return geographic, geographic and first in ("north", "south")


@dataclass
class Checked:
    rings: list[np.ndarray] | None  # None when rejected
    reason: str | None = None
    detail: str = ""
    dropped_holes: int = 0


def _clean_ring(ring: np.ndarray) -> np.ndarray:
    """Drop the closing vertex and repeated consecutive vertices."""
    if len(ring) > 1 and (ring[0] == ring[-1]).all():
        ring = ring[:-1]
    if len(ring) > 1:
        same = (ring[1:] == ring[:-1]).all(axis=1)
        if same.any():
            ring = ring[np.concatenate(([True], ~same))]
    return ring


def check_polygon(rings: list[np.ndarray], *, geographic: bool) -> Checked:
    """Clean and check one polygon (exterior first). Returns open rings or a skip reason.

    Called once per polygon on millions of polygons, so it sticks to a few numpy calls.
    A ring that repeats a vertex non-consecutively (A B A) has zero area and fails there.
    """
    ext = _clean_ring(rings[0])
    if len(ext) < 3:
        return Checked(None, DEGENERATE, f"fewer than 3 distinct vertices ({len(ext)})")
    holes, dropped = [], 0
    for ring in rings[1:]:
        r = _clean_ring(ring)
        if len(r) < 3:
            dropped += 1
        else:
            holes.append(r)
    origin = ext.mean(axis=0)
    local = ext - origin
    if geographic:
        local = local * (_M_PER_DEG_LON_EQ * math.cos(math.radians(origin[1])), _M_PER_DEG_LAT, 1.0)
    nxt = np.concatenate((local[1:], local[:1]))
    # Newell's normal: its length is twice the (projected) area, robust for non-convex rings
    x, y, z = local.T
    xn, yn, zn = nxt.T
    normal = np.array([(y * zn - z * yn).sum(), (z * xn - x * zn).sum(), (x * yn - y * xn).sum()])
    length = math.sqrt(float(normal @ normal))
    if length / 2 < MIN_AREA_M2:
        return Checked(None, DEGENERATE, f"zero area ({length / 2:.2g} m²)")
    if len(ext) > 3 or holes:
        pts = local
        if holes:
            hole_pts = np.concatenate(holes) - origin
            if geographic:
                hole_pts = hole_pts * (_M_PER_DEG_LON_EQ * math.cos(math.radians(origin[1])), _M_PER_DEG_LAT, 1.0)
            pts = np.concatenate((local, hole_pts))
        deviation = float(np.abs(pts @ normal).max()) / length
        span = local.max(axis=0) - local.min(axis=0)
        tol = max(PLANAR_TOL_M, PLANAR_TOL_REL * math.sqrt(float(span @ span)))
        if deviation > tol:
            return Checked(None, NON_PLANAR, f"{deviation:.2f} m off its plane (tolerance {tol:.2f} m)")
    return Checked([ext] + holes, dropped_holes=dropped)


def lod_number(value) -> int | None:
    """CityJSON '2.2' or 2 -> 2; None when not a number."""
    try:
        return int(float(str(value)))
    except (TypeError, ValueError):
        return None

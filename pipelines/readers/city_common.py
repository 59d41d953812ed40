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

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import CRS

from geo.city3d import SkipReason
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
DEGENERATE = SkipReason("degenerate polygon", "surface", "fewer than 3 distinct points or under 1 cm² of area")
DEGENERATE_HOLE = SkipReason("degenerate hole", "hole", "fewer than 3 distinct points; the surface is kept")
NON_PLANAR = SkipReason("non-planar polygon", "surface", "a vertex over 0.1 m and 1 % of its size off its plane")
BAD_COORDS = SkipReason("bad coordinates", "surface", "unparsable, or vertex indices out of range")
NO_LOD = SkipReason("requested LOD not present", "building")
NO_SURFACES = SkipReason("no valid surfaces", "building")

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
    reason: SkipReason | None = None
    detail: str = ""
    dropped_holes: int = 0
    uv: list[np.ndarray] | None = None  # the texture coordinates of the kept vertices, when given


def check_polygons(polygons: list[list[np.ndarray]], *, geographic: bool,
                   uv: list[list[np.ndarray] | None] | None = None) -> list[Checked]:
    """Clean and check polygons (each a list of rings, exterior first): open rings, or a
    skip reason, per polygon. Rules in the module docstring. ``uv``: per polygon, a (u, v) per
    vertex of each ring (or None); the vertices the cleaning keeps keep theirs.

    Called per building on millions of polygons, so each step is one numpy call over all the
    building's vertices (one call per polygon was a third of the read time). A ring that
    repeats a vertex non-consecutively (A B A) has zero area and fails there.
    """
    if not polygons:
        return []
    counts = np.array([len(p) for p in polygons])
    rings = [r for p in polygons for r in p]
    sizes = np.array([len(r) for r in rings])
    pts = np.concatenate(rings) if len(rings) else np.zeros((0, 3))
    ring_of = np.repeat(np.arange(len(rings)), sizes)
    ring_start = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    ring_poly = np.repeat(np.arange(len(polygons)), counts)
    first_ring = np.concatenate(([0], np.cumsum(counts)[:-1]))
    is_ext = np.zeros(len(rings), dtype=bool)
    is_ext[first_ring] = True

    # Clean: the closing vertex, then repeated consecutive vertices (within a ring).
    keep = np.ones(len(pts), dtype=bool)
    last = ring_start + sizes - 1
    closed = (sizes > 1) & (pts[ring_start] == pts[last]).all(axis=1)
    keep[last[closed]] = False
    same = np.zeros(len(pts), dtype=bool)
    same[1:] = (ring_of[1:] == ring_of[:-1]) & (pts[1:] == pts[:-1]).all(axis=1)
    keep &= ~same
    clean_size = np.bincount(ring_of[keep], minlength=len(rings))
    usable = clean_size >= 3  # rings; an unusable hole is dropped, an unusable exterior rejects
    ext_size = clean_size[first_ring]
    dropped = np.bincount(ring_poly[~is_ext & ~usable], minlength=len(polygons))
    has_holes = np.bincount(ring_poly[~is_ext & usable], minlength=len(polygons)) > 0

    kept_pts, kept_ring = pts[keep], ring_of[keep]
    kept_uv = _aligned_uv(uv, counts, sizes)[keep] if uv is not None else None
    kept_start = np.concatenate(([0], np.cumsum(clean_size)[:-1]))
    poly_of = ring_poly[kept_ring]
    on_ext = is_ext[kept_ring]
    ok_poly = ext_size >= 3
    counted = np.maximum(ext_size, 1)
    origin = np.zeros((len(polygons), 3))
    np.add.at(origin, poly_of[on_ext], kept_pts[on_ext])
    origin /= counted[:, None]
    scale = np.ones((len(polygons), 3))
    if geographic:
        scale[:, 0] = _M_PER_DEG_LON_EQ * np.cos(np.radians(origin[:, 1]))
        scale[:, 1] = _M_PER_DEG_LAT
    local = (kept_pts - origin[poly_of]) * scale[poly_of]

    # Newell's normal of each exterior (its length is twice the projected area).
    idx = np.arange(len(kept_pts))
    nxt = idx + 1
    ring_end = kept_start + clean_size - 1
    wrap = np.zeros(len(kept_pts), dtype=bool)
    wrap[ring_end[clean_size > 0]] = True
    nxt[wrap] = kept_start[kept_ring[wrap]]
    nxt = np.minimum(nxt, len(kept_pts) - 1)
    a, b = local, local[nxt]
    cross = np.column_stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                             a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]])
    normal = np.zeros((len(polygons), 3))
    np.add.at(normal, poly_of[on_ext], cross[on_ext])
    length = np.sqrt((normal ** 2).sum(axis=1))

    # Planarity over the exterior and the kept holes, against a tolerance from the size.
    counts_pts = usable[kept_ring]
    deviation = np.zeros(len(polygons))
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.abs((local * normal[poly_of]).sum(axis=1)) / length[poly_of]
    np.maximum.at(deviation, poly_of[counts_pts], np.nan_to_num(dist[counts_pts]))
    hi = np.full((len(polygons), 3), -np.inf)
    lo = np.full((len(polygons), 3), np.inf)
    np.maximum.at(hi, poly_of[on_ext], local[on_ext])
    np.minimum.at(lo, poly_of[on_ext], local[on_ext])
    span = np.where(ok_poly[:, None], hi - lo, 0.0)
    tol = np.maximum(PLANAR_TOL_M, PLANAR_TOL_REL * np.sqrt((span ** 2).sum(axis=1)))

    out = []
    for k in range(len(polygons)):
        if not ok_poly[k]:
            out.append(Checked(None, DEGENERATE, f"fewer than 3 distinct vertices ({ext_size[k]})"))
        elif length[k] / 2 < MIN_AREA_M2:
            out.append(Checked(None, DEGENERATE, f"zero area ({length[k] / 2:.2g} m²)"))
        elif (ext_size[k] > 3 or has_holes[k]) and deviation[k] > tol[k]:
            out.append(Checked(None, NON_PLANAR,
                               f"{deviation[k]:.2f} m off its plane (tolerance {tol[k]:.2f} m)"))
        else:
            r0 = first_ring[k]
            rows = [(kept_start[r], kept_start[r] + clean_size[r]) for r in range(r0, r0 + counts[k])
                    if usable[r] or r == r0]
            kept = [kept_pts[a:b] for a, b in rows]
            tex = None if kept_uv is None or np.isnan(kept_uv[rows[0][0]]).any() else [kept_uv[a:b] for a, b in rows]
            out.append(Checked(kept, dropped_holes=int(dropped[k]), uv=tex))
    return out


def _aligned_uv(uv: list[list[np.ndarray] | None], counts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """One (u, v) row per input vertex; NaN for a polygon without texture coordinates, or
    with a ring whose count of them differs from its vertices."""
    out = np.full((int(sizes.sum()), 2), np.nan)
    starts = np.concatenate(([0], np.cumsum(sizes)))
    first = np.concatenate(([0], np.cumsum(counts)))
    for k, rings in enumerate(uv):
        r0, r1 = first[k], first[k + 1]
        if rings is None or len(rings) != r1 - r0 or any(len(t) != sizes[r] for t, r in zip(rings, range(r0, r1))):
            continue
        out[starts[r0]:starts[r1]] = np.concatenate(rings)
    return out


def lod_number(value) -> int | None:
    """CityJSON '2.2' or 2 -> 2; None when not a number."""
    try:
        return int(float(str(value)))
    except (TypeError, ValueError):
        return None

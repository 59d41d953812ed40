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
from geo.rows import row_sums

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
    """
    if not polygons:
        return []
    counts = np.array([len(p) for p in polygons])
    rings = [r for p in polygons for r in p]
    sizes = np.array([len(r) for r in rings])
    pts = np.concatenate(rings) if len(rings) else np.zeros((0, 3))
    found = check_flat(pts, sizes, counts, geographic=geographic,
                       uv=_aligned_uv(uv, counts, sizes) if uv is not None else None)
    kept_pts = pts[found.kept_vertex]
    kept_uv = found.uv
    bounds = np.concatenate(([0], np.cumsum(found.kept_sizes))).tolist()
    first = np.concatenate(([0], np.cumsum(found.kept_counts))).tolist()
    out = []
    for k, j in enumerate(np.cumsum(found.ok).tolist()):
        if not found.ok[k]:
            reason, detail = found.verdict(k)
            out.append(Checked(None, reason, detail))
            continue
        rows = [(bounds[r], bounds[r + 1]) for r in range(first[j - 1], first[j])]
        kept = [kept_pts[a:b] for a, b in rows]
        tex = None if kept_uv is None or np.isnan(kept_uv[rows[0][0]]).any() else [kept_uv[a:b] for a, b in rows]
        out.append(Checked(kept, dropped_holes=int(found.dropped_holes[k]), uv=tex))
    return out


@dataclass
class FlatCheck:
    """What ``check_flat`` found: per polygon whether it is kept, and the kept vertices."""

    ok: np.ndarray  # (polygons,) bool
    dropped_holes: np.ndarray  # (polygons,) holes dropped from a kept polygon
    kept_vertex: np.ndarray  # (vertices,) bool: the cleaned vertices of the kept rings of kept polygons
    kept_sizes: np.ndarray  # (kept rings,) vertices per kept ring, in order
    kept_counts: np.ndarray  # (kept polygons,) kept rings per kept polygon
    uv: np.ndarray | None  # (kept vertices, 2) the texture coordinates of the kept vertices, when given
    ext_size: np.ndarray
    area: np.ndarray
    deviation: np.ndarray
    tol: np.ndarray

    def verdict(self, k: int) -> tuple[SkipReason, str]:
        """Why polygon ``k`` (not kept) was rejected, as reason and detail."""
        if self.ext_size[k] < 3:
            return DEGENERATE, f"fewer than 3 distinct vertices ({self.ext_size[k]})"
        if self.area[k] < MIN_AREA_M2:
            return DEGENERATE, f"zero area ({self.area[k]:.2g} m²)"
        return NON_PLANAR, f"{self.deviation[k]:.2f} m off its plane (tolerance {self.tol[k]:.2f} m)"


def check_flat(pts: np.ndarray, sizes: np.ndarray, counts: np.ndarray, *, geographic: bool,
               uv: np.ndarray | None = None) -> FlatCheck:
    """``check_polygons`` over polygons given as flat arrays: ``pts`` (n, 3) the rings in turn,
    ``sizes`` vertices per ring, ``counts`` rings per polygon (each at least one); ``uv`` a
    (u, v) per vertex (NaN where untextured) or None.

    Each step is one numpy call over all the vertices, so a reader checks many buildings'
    polygons at once (a call per polygon, then per building, was most of the read time). A
    ring that repeats a vertex non-consecutively (A B A) has zero area and fails there.
    """
    n_polys, n_rings = len(counts), len(sizes)
    ring_of = np.repeat(np.arange(n_rings), sizes)
    ring_start = np.cumsum(sizes) - sizes
    ring_poly = np.repeat(np.arange(n_polys), counts)
    first_ring = np.cumsum(counts) - counts
    is_ext = np.zeros(n_rings, dtype=bool)
    is_ext[first_ring] = True

    # Clean: the closing vertex, then repeated consecutive vertices (within a ring).
    keep = np.ones(len(pts), dtype=bool)
    last = ring_start + sizes - 1
    long = sizes > 1
    closed = np.zeros(n_rings, dtype=bool)
    closed[long] = (pts[ring_start[long]] == pts[last[long]]).all(axis=1)
    keep[last[closed]] = False
    same = np.zeros(len(pts), dtype=bool)
    same[1:] = (ring_of[1:] == ring_of[:-1]) & (pts[1:] == pts[:-1]).all(axis=1)
    keep &= ~same
    clean_size = np.bincount(ring_of[keep], minlength=n_rings)
    usable = clean_size >= 3  # rings; an unusable hole is dropped, an unusable exterior rejects
    ext_size = clean_size[first_ring]
    dropped = np.bincount(ring_poly[~is_ext & ~usable], minlength=n_polys)
    has_holes = np.bincount(ring_poly[~is_ext & usable], minlength=n_polys) > 0

    kept_pts, kept_ring = pts[keep], ring_of[keep]
    kept_start = np.cumsum(clean_size) - clean_size
    poly_of = ring_poly[kept_ring]
    on_ext = is_ext[kept_ring]
    ok_poly = ext_size >= 3
    counted = np.maximum(ext_size, 1)
    origin = _group_sum(kept_pts[on_ext], poly_of[on_ext], n_polys)
    origin /= counted[:, None]
    scale = np.ones((n_polys, 3))
    if geographic:
        scale[:, 0] = _M_PER_DEG_LON_EQ * np.cos(np.radians(origin[:, 1]))
        scale[:, 1] = _M_PER_DEG_LAT
    local = (kept_pts - origin[poly_of]) * scale[poly_of]

    # Newell's normal of each exterior (its length is twice the projected area).
    nxt = np.arange(1, len(kept_pts) + 1)
    ring_end = kept_start + clean_size - 1
    wrap = np.zeros(len(kept_pts), dtype=bool)
    wrap[ring_end[clean_size > 0]] = True
    nxt[wrap] = kept_start[kept_ring[wrap]]
    nxt = np.minimum(nxt, len(kept_pts) - 1)
    a, b = local, local[nxt]
    cross = np.column_stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                             a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]])
    normal = _group_sum(cross[on_ext], poly_of[on_ext], n_polys)
    length = np.sqrt(row_sums(normal ** 2))

    # Planarity over the exterior and the kept holes, against a tolerance from the size; only
    # where it can fail (a triangle without holes is planar), as most CityJSON surfaces are triangles.
    checked = (ext_size > 3) | has_holes
    on_checked = checked[poly_of]
    local, poly_of, on_ext = local[on_checked], poly_of[on_checked], on_ext[on_checked]
    counts_pts = usable[kept_ring[on_checked]]
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.abs(row_sums(local * normal[poly_of])) / length[poly_of]
    deviation = np.maximum(_group_extreme(np.maximum, np.nan_to_num(dist[counts_pts]), poly_of[counts_pts], n_polys), 0)
    hi = _group_extreme(np.maximum, local[on_ext], poly_of[on_ext], n_polys)
    lo = _group_extreme(np.minimum, local[on_ext], poly_of[on_ext], n_polys)
    span = np.where((ok_poly & checked)[:, None], hi - lo, 0.0)
    tol = np.maximum(PLANAR_TOL_M, PLANAR_TOL_REL * np.sqrt(row_sums(span ** 2)))

    area = length / 2
    ok = ok_poly & (area >= MIN_AREA_M2) & ~(checked & (deviation > tol))
    kept_ring_mask = usable & ok[ring_poly]
    kept_vertex = np.zeros(len(pts), dtype=bool)
    kept_vertex[keep] = kept_ring_mask[kept_ring]
    return FlatCheck(ok=ok, dropped_holes=dropped, kept_vertex=kept_vertex, kept_sizes=clean_size[kept_ring_mask],
                     kept_counts=np.bincount(ring_poly[kept_ring_mask], minlength=n_polys)[ok],
                     uv=uv[kept_vertex] if uv is not None else None,
                     ext_size=ext_size, area=area, deviation=deviation, tol=tol)


def _group_sum(values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Per group, the sum of the (m, 3) ``values`` rows, added in row order (as ``np.add.at``)."""
    sums = np.column_stack([np.bincount(groups, values[:, k], minlength=n) for k in range(3)])
    return sums.astype(np.float64, copy=False)  # bincount of no values gives integers


def _group_extreme(ufunc: np.ufunc, values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Per group, the maximum (``np.maximum``) or minimum of ``values``, -inf or inf where a group
    has none; ``groups`` ascend (vertices follow their polygons), so one ``reduceat`` does it."""
    out = np.full((n, *values.shape[1:]), -np.inf if ufunc is np.maximum else np.inf)
    if len(values):
        starts = np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))
        out[groups[starts]] = ufunc.reduceat(values, starts, axis=0)
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

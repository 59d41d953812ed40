"""What a device sees: ENU offsets, bearing/elevation, the view frustum, and 2.5D occlusion.

Heights are ellipsoidal (WGS84, metres) throughout: the device's ``alt``, the POI heights and
the building bases and tops. Occlusion is tested against LOD1 blocks (footprint + base + top)
in a local metric frame (azimuthal equidistant around the index centre):

- candidate blocks come from an STRtree query by the sight line's envelope (no scan of all
  buildings);
- the segment clipped to each candidate's bounding box gives a t range wider than the one
  over the footprint itself: when the line's height over that range misses [base, top], or
  it misses the box, the pair is dropped without touching the polygon (most pairs);
- the rest are tested exactly, nearest box first, a few per line at a time, until a hit lies
  nearer than every untested box. Where the segment is inside a footprint it runs over
  parameters t in [t0, t1] and its height is linear in t, so its lowest and highest points
  there are at the ends of the pieces; the block hides the target when that height range
  overlaps [base, top].

Earth curvature is ignored along the sight line: over 3 km the straight chord sags at most
d^2/(8R) ~ 0.18 m below the curved surface, well inside what LOD1 blocks can tell.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer

from geo.ecef import ecef_to_enu, enu_rotation, to_ecef

#: How close (m) a target may be to a footprint's edge and still count as standing on it.
ON_BUILDING_TOLERANCE_M = 0.5


# -- ENU, bearing, elevation --------------------------------------------------------------
def enu_from_ecef(origin_lonlath: tuple[float, float, float], ecef: np.ndarray) -> np.ndarray:
    """(n, 3) East-North-Up metres of ECEF points, seen from ``origin`` (lon, lat, ellipsoidal h)."""
    lon, lat, h = origin_lonlath
    origin = to_ecef(np.array([[lon, lat, h]], dtype=np.float64))[0]
    return ecef_to_enu(np.asarray(ecef, dtype=np.float64).reshape(-1, 3), origin, enu_rotation(lon, lat))


def enu_offsets(origin_lonlath: tuple[float, float, float], lonlath: np.ndarray) -> np.ndarray:
    """(n, 3) East-North-Up metres of (n, 3) lon/lat/ellipsoidal-height points from ``origin``."""
    return enu_from_ecef(origin_lonlath, to_ecef(np.asarray(lonlath, dtype=np.float64).reshape(-1, 3)))


@dataclass(frozen=True)
class Look:
    """Where targets lie as seen from the device (arrays, one entry per target)."""

    distance_m: np.ndarray  # straight-line (slant) distance
    ground_distance_m: np.ndarray  # horizontal, in the ENU plane
    bearing_deg: np.ndarray  # clockwise from true north, 0..360
    elevation_deg: np.ndarray  # above the local horizontal, -90..90


def look(enu: np.ndarray) -> Look:
    e, n, u = enu[:, 0], enu[:, 1], enu[:, 2]
    ground = np.hypot(e, n)
    return Look(
        distance_m=np.sqrt(ground**2 + u**2),
        ground_distance_m=ground,
        bearing_deg=np.degrees(np.arctan2(e, n)) % 360.0,
        elevation_deg=np.degrees(np.arctan2(u, ground)),
    )


# -- the view frustum ----------------------------------------------------------------------
@dataclass(frozen=True)
class Frustum:
    """A camera with no roll: heading clockwise from north, pitch up from the horizontal,
    full horizontal and vertical fields of view in degrees, and a far distance in metres."""

    heading_deg: float
    pitch_deg: float
    hfov_deg: float
    vfov_deg: float
    far_m: float
    near_m: float = 0.0

    def axes(self) -> np.ndarray:
        """Rows: the camera's right, up and forward unit vectors in ENU."""
        h, p = np.radians(self.heading_deg), np.radians(self.pitch_deg)
        forward = np.array([np.sin(h) * np.cos(p), np.cos(h) * np.cos(p), np.sin(p)])
        right = np.array([np.cos(h), -np.sin(h), 0.0])
        up = np.array([-np.sin(h) * np.sin(p), -np.cos(h) * np.sin(p), np.cos(p)])  # right x forward
        return np.vstack([right, up, forward])

    def contains(self, enu: np.ndarray) -> np.ndarray:
        """Boolean mask of the ENU points inside the frustum (sides, near and far planes)."""
        cam = np.asarray(enu, dtype=np.float64).reshape(-1, 3) @ self.axes().T
        x, y, z = cam[:, 0], cam[:, 1], cam[:, 2]
        th = np.tan(np.radians(self.hfov_deg) / 2)
        tv = np.tan(np.radians(self.vfov_deg) / 2)
        dist = np.linalg.norm(cam, axis=1)
        return (z > self.near_m) & (np.abs(x) <= z * th) & (np.abs(y) <= z * tv) & (dist <= self.far_m)

    def corners(self) -> np.ndarray:
        """(4, 3) ENU directions (unit length) of the frustum's edges: top-left, top-right,
        bottom-right, bottom-left; scale by a distance to draw it."""
        right, up, forward = self.axes()
        th = np.tan(np.radians(self.hfov_deg) / 2)
        tv = np.tan(np.radians(self.vfov_deg) / 2)
        dirs = np.array([forward - th * right + tv * up, forward + th * right + tv * up,
                         forward + th * right - tv * up, forward - th * right - tv * up])
        return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


# -- a local metric frame ------------------------------------------------------------------
@lru_cache(maxsize=32)
def _aeqd(lon0: float, lat0: float) -> tuple[Transformer, Transformer]:
    crs = CRS.from_proj4(f"+proj=aeqd +lat_0={lat0:.9f} +lon_0={lon0:.9f} +ellps=WGS84 +units=m +no_defs")
    return (Transformer.from_crs("EPSG:4326", crs, always_xy=True),
            Transformer.from_crs(crs, "EPSG:4326", always_xy=True))


@dataclass(frozen=True)
class MetricFrame:
    """Azimuthal equidistant metres around (lon0, lat0): scale error below 1e-6 within 10 km."""

    lon0: float
    lat0: float

    def xy(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        x, y = _aeqd(self.lon0, self.lat0)[0].transform(np.asarray(lon, dtype=np.float64),
                                                         np.asarray(lat, dtype=np.float64))
        return np.asarray(x), np.asarray(y)

    def lonlat(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = _aeqd(self.lon0, self.lat0)[1].transform(np.asarray(x, dtype=np.float64),
                                                            np.asarray(y, dtype=np.float64))
        return np.asarray(lon), np.asarray(lat)

    def geoms(self, geoms: np.ndarray) -> np.ndarray:
        """Shapely geometries (lon/lat, 2D) in this frame."""
        fwd = _aeqd(self.lon0, self.lat0)[0]

        def fn(c: np.ndarray) -> np.ndarray:
            x, y = fwd.transform(c[:, 0], c[:, 1])
            return np.column_stack([x, y])

        return shapely.transform(np.asarray(geoms, dtype=object), fn)


# -- occlusion ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Blocks:
    """LOD1 blocks in a metric frame: footprints, their STRtree, and base/top heights."""

    footprints: np.ndarray  # shapely polygons (metres)
    tree: shapely.STRtree
    base: np.ndarray  # ellipsoidal height of the ground the block stands on
    top: np.ndarray  # ellipsoidal height of the roof
    bounds: np.ndarray  # (n, 4) xmin, ymin, xmax, ymax of each footprint

    @classmethod
    def build(cls, footprints: np.ndarray, base: np.ndarray, top: np.ndarray) -> Blocks:
        footprints = np.asarray(footprints, dtype=object)
        shapely.prepare(footprints)
        return cls(footprints, shapely.STRtree(footprints), np.asarray(base, float), np.asarray(top, float),
                   shapely.bounds(footprints).reshape(-1, 4))

    def with_heights(self, base: np.ndarray, top: np.ndarray) -> Blocks:
        """The same footprints and tree with other heights (e.g. standing on a DEM)."""
        return Blocks(self.footprints, self.tree, np.asarray(base, float), np.asarray(top, float), self.bounds)

    def containing(self, xy: np.ndarray, tolerance_m: float = ON_BUILDING_TOLERANCE_M) -> tuple[np.ndarray, np.ndarray]:
        """(point index, block index) pairs where a point is in or within ``tolerance_m`` of a footprint."""
        pts = shapely.points(np.asarray(xy, dtype=np.float64).reshape(-1, 2))
        return self.tree.query(pts, predicate="dwithin", distance=tolerance_m)


@dataclass(frozen=True)
class Occlusion:
    occluded: np.ndarray  # bool per target
    blocker: np.ndarray  # index of the nearest hiding block, -1 where none


def occlusion(blocks: Blocks, start: np.ndarray, ends: np.ndarray,
              tolerance_m: float = ON_BUILDING_TOLERANCE_M) -> Occlusion:
    """Which sight lines from ``start`` (x, y, h) to each of ``ends`` (n, 3: x, y, h) a block hides.

    A block that the target stands in or on (within ``tolerance_m``) never hides that target,
    and the block the device stands in never hides anything: the label of a building sits on
    its own roof, and a device indoors looks out through its own walls.

    Candidates come from the STRtree by envelope; their bounding boxes settle most pairs
    (wrong place or wrong height) in numpy. The rest are tested exactly, per line in order of
    where the line enters the box and a few at a time, stopping once a hit lies nearer than
    every untested box: in a dense city the first few usually decide.
    """
    ends = np.asarray(ends, dtype=np.float64).reshape(-1, 3)
    start = np.asarray(start, dtype=np.float64).reshape(3)
    n = len(ends)
    occluded = np.zeros(n, dtype=bool)
    blocker = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(blocks.footprints) == 0:
        return Occlusion(occluded, blocker)
    coords = np.empty((n, 2, 2))
    coords[:, 0, :] = start[:2]
    coords[:, 1, :] = ends[:, :2]
    lines = shapely.linestrings(coords)
    li, bi = blocks.tree.query(lines)
    if len(li) == 0:
        return Occlusion(occluded, blocker)

    # Clip each segment to its candidate's bounding box (Liang-Barsky). The height range of
    # the clipped piece holds the range over the footprint itself.
    d = ends[li, :2] - start[:2]
    box = blocks.bounds[bi]
    flat = d == 0  # parallel to an axis: in the slab for all t, or never
    with np.errstate(divide="ignore", invalid="ignore"):
        ta = (box[:, 0:2] - start[:2]) / d
        tb = (box[:, 2:4] - start[:2]) / d
    lo_t, hi_t = np.minimum(ta, tb), np.maximum(ta, tb)
    in_slab = (box[:, 0:2] <= start[:2]) & (start[:2] <= box[:, 2:4])
    lo_t[flat] = np.where(in_slab[flat], -np.inf, np.inf)
    hi_t[flat] = np.where(in_slab[flat], np.inf, -np.inf)
    enter, leave = lo_t.max(axis=1), hi_t.min(axis=1)
    t0, t1 = np.clip(enter, 0.0, 1.0), np.clip(leave, 0.0, 1.0)
    dh = ends[li, 2] - start[2]
    h0, h1 = start[2] + t0 * dh, start[2] + t1 * dh
    lo_b, hi_b = np.minimum(h0, h1), np.maximum(h0, h1)
    top, base = blocks.top[bi], blocks.base[bi]
    keep = (enter <= leave) & (leave >= 0.0) & (enter <= 1.0) & (lo_b < top) & (hi_b > base)

    # Drop the blocks the target or the device stands in: only boxes (grown by the tolerance)
    # holding an end point need the exact distance test.
    grown = box + np.array([-tolerance_m, -tolerance_m, tolerance_m, tolerance_m])
    end_xy = ends[li, :2]
    near = keep & (((grown[:, 0:2] <= end_xy) & (end_xy <= grown[:, 2:4])).all(axis=1)
                   | ((grown[:, 0:2] <= start[:2]) & (start[:2] <= grown[:, 2:4])).all(axis=1))
    if near.any():
        k = np.flatnonzero(near)
        fp = blocks.footprints[bi[k]]
        keep[k] = ~(shapely.dwithin(fp, shapely.points(end_xy[k]), tolerance_m)
                    | shapely.dwithin(fp, shapely.points(start[:2]), tolerance_m))
    if not keep.any():
        return Occlusion(occluded, blocker)
    # Inside the box's height range for the whole crossing: a hit if the line meets the footprint.
    sure = (lo_b > base) & (hi_b < top)
    li, bi, t0, sure, dh, d = li[keep], bi[keep], t0[keep], sure[keep], dh[keep], d[keep]
    order = np.lexsort((bi, t0, li))
    li, bi, t0, sure, dh, d = li[order], bi[order], t0[order], sure[order], dh[order], d[order]
    rank = np.arange(len(li)) - np.searchsorted(li, li)  # position within its line, nearest box first

    best_t = np.full(n, np.inf)
    done = np.zeros(n, dtype=bool)
    lo_rank, chunk = 0, 4
    while True:
        pick = (rank >= lo_rank) & (rank < lo_rank + chunk) & ~done[li]
        if not pick.any():
            break
        k = np.flatnonzero(pick)
        hit, t_entry = _exact_hits(blocks, start, lines[li[k]], bi[k], t0[k], sure[k], d[k], dh[k])
        if hit.any():
            hl, hb, ht = li[k][hit], bi[k][hit], t_entry[hit]
            o = np.lexsort((hb, ht, hl))  # per line, the nearest hit first
            hl, hb, ht = hl[o], hb[o], ht[o]
            first = np.r_[True, hl[1:] != hl[:-1]]
            hl, hb, ht = hl[first], hb[first], ht[first]
            better = (ht < best_t[hl]) | ((ht == best_t[hl]) & (hb < blocker[hl]))
            best_t[hl[better]], blocker[hl[better]] = ht[better], hb[better]
        lo_rank += chunk
        chunk *= 2
        # A line is settled once its nearest hit lies before the box of every untested candidate.
        next_t0 = np.full(n, np.inf)
        at = rank == lo_rank
        next_t0[li[at]] = t0[at]
        done |= best_t < next_t0
    occluded = blocker >= 0
    return Occlusion(occluded, blocker)


def _exact_hits(blocks: Blocks, start: np.ndarray, lines: np.ndarray, b: np.ndarray, t0: np.ndarray,
                sure: np.ndarray, d: np.ndarray, dh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact test of (line, block) pairs: hit, and the line parameter where the hit starts.

    ``sure`` pairs stay within the block's heights over the whole box, so meeting the
    footprint is enough (entry taken at the box); the others need the pieces of the line
    inside the footprint, whose end points bound its height there.
    """
    hit = np.zeros(len(b), dtype=bool)
    t_entry = t0.copy()
    if sure.any():
        hit[sure] = shapely.intersects(blocks.footprints[b[sure]], lines[sure])
    mi = np.flatnonzero(~sure)
    if len(mi):
        pieces = shapely.intersection(lines[mi], blocks.footprints[b[mi]])
        pts, pair = shapely.get_coordinates(pieces, return_index=True)
        dm = d[mi]
        dd = np.einsum("ij,ij->i", dm, dm)
        dd[dd == 0] = 1.0
        t = np.clip(np.einsum("ij,ij->i", pts - start[:2], dm[pair]) / dd[pair], 0.0, 1.0)
        h = start[2] + t * dh[mi][pair]
        m = len(mi)
        lo, hi, tmin = np.full(m, np.inf), np.full(m, -np.inf), np.full(m, np.inf)
        np.minimum.at(lo, pair, h)
        np.maximum.at(hi, pair, h)
        np.minimum.at(tmin, pair, t)
        # The segment's height range over the footprint overlaps the block's [base, top].
        hit[mi] = (lo < blocks.top[b[mi]]) & (hi > blocks.base[b[mi]]) & np.isfinite(lo)
        t_entry[mi] = tmin
    return hit, t_entry

"""What a device sees: ENU offsets, bearing/elevation, the view frustum, and 2.5D occlusion.

Heights are ellipsoidal (WGS84, metres) throughout: the device's ``alt``, the POI heights and
the building bases and tops. Occlusion is tested against LOD1 blocks (footprint + base + top)
in a local metric frame (azimuthal equidistant around the index centre):

- candidate blocks come from an STRtree query by the sight line's envelope (no scan of all
  buildings);
- each candidate is clipped to its bounding box first: a line that misses the box, or whose
  height over it stays outside [base, top], is dropped without reading the polygon;
- the rest are cut at the footprint's edges; inside a piece the line's height is linear,
  so the piece's ends give its range, and the block hides the target when some inside piece
  overlaps [base, top]. Per line, candidates go nearest box first and stop once the best hit
  starts before the next box. The loops are compiled (geo.sightlines).

Earth curvature is ignored along the sight line: over 3 km the straight chord sags at most
d^2/(8R) ~ 0.18 m below the curved surface, well inside what LOD1 blocks can tell.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer

from geo.ecef import ecef_to_enu, enu_rotation, to_ecef
from geo.sightlines import flat_rings, nearest_blockers

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
    """LOD1 blocks in a metric frame: footprints, their STRtree, base/top heights, and the
    footprints' rings as flat arrays for the compiled sight-line test (geo.sightlines)."""

    footprints: np.ndarray  # shapely polygons (metres)
    tree: shapely.STRtree
    base: np.ndarray  # ellipsoidal height of the ground the block stands on
    top: np.ndarray  # ellipsoidal height of the roof
    bounds: np.ndarray  # (n, 4) xmin, ymin, xmax, ymax of each footprint
    xy: np.ndarray  # ring vertices
    ring_start: np.ndarray  # offsets of each ring in xy (+1)
    block_ring: np.ndarray  # offsets of each block's rings in ring_start (+1)

    @classmethod
    def build(cls, footprints: np.ndarray, base: np.ndarray, top: np.ndarray) -> Blocks:
        footprints = np.asarray(footprints, dtype=object)
        shapely.prepare(footprints)
        return cls(footprints, shapely.STRtree(footprints), _floats(base), _floats(top),
                   _floats(shapely.bounds(footprints).reshape(-1, 4)), *flat_rings(footprints))

    def with_heights(self, base: np.ndarray, top: np.ndarray) -> Blocks:
        """The same footprints and tree with other heights (e.g. standing on a DEM)."""
        return replace(self, base=_floats(base), top=_floats(top))


def _floats(values) -> np.ndarray:
    """Contiguous float64, the one layout the compiled loops are built for (another layout
    would cost a fresh compilation)."""
    return np.ascontiguousarray(values, dtype=np.float64)


def warm_up() -> None:
    """Compile (or load from numba's cache) the sight-line loops before the first request."""
    blocks = Blocks.build(np.array([shapely.box(0, 0, 1, 1)], dtype=object), np.zeros(1), np.ones(1))
    occlusion(blocks, np.array([-1.0, 0.5, 0.5]), np.array([[2.0, 0.5, 0.5]]))


@dataclass(frozen=True)
class Occlusion:
    occluded: np.ndarray  # bool per target
    blocker: np.ndarray  # index of the nearest hiding block, -1 where none


def occlusion(blocks: Blocks, start: np.ndarray, ends: np.ndarray,
              tolerance_m: float = ON_BUILDING_TOLERANCE_M) -> Occlusion:
    """Which sight lines from ``start`` (x, y, h) to each of ``ends`` (n, 3: x, y, h) a block hides,
    and the nearest block that does.

    A block that the target stands in or on (within ``tolerance_m``) never hides that target,
    and the block the device stands in never hides anything: the label of a building sits on
    its own roof, and a device indoors looks out through its own walls.
    """
    ends = np.ascontiguousarray(ends, dtype=np.float64).reshape(-1, 3)
    start = np.ascontiguousarray(start, dtype=np.float64).reshape(3)
    n = len(ends)
    if n == 0 or len(blocks.footprints) == 0:
        return Occlusion(np.zeros(n, dtype=bool), np.full(n, -1, dtype=np.int64))
    coords = np.empty((n, 2, 2))
    coords[:, 0, :] = start[:2]
    coords[:, 1, :] = ends[:, :2]
    li, bi = blocks.tree.query(shapely.linestrings(coords))
    blocker = nearest_blockers(start, ends, li, bi, blocks.bounds, blocks.base, blocks.top, blocks.xy,
                               blocks.ring_start, blocks.block_ring, float(tolerance_m))
    return Occlusion(blocker >= 0, blocker)

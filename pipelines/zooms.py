"""Default zoom range of a layer's vector tiles, from its kind, its extent and its density.

Areas (boundaries, hazard zones) show from the zoom where the whole layer is about one tile
(256 px) across, so 25 districts are still there when the whole city is a small part of the
screen. Buildings start at z13, where footprints are a few pixels wide; points and other
layers at z10 and z12, or earlier when the whole layer fits in 2 x 2 tiles by then. Any start is pushed up while its busiest tile would hold
more than ``DENSE`` features, which the tile size budget would mostly leave out.
"""
from __future__ import annotations

import math

import numpy as np
import shapely

MAXZOOM = 16  # clients draw deeper zooms from z16 tiles (overzoom)
#: the first zoom of each kind when nothing is known of the data (a catalog entry without minzoom)
KIND_MINZOOM = {"boundaries": 8, "hazard_zones": 10, "buildings": 13, "pois": 10, "transit": 10, "generic": 12}
AREA_KINDS = ("boundaries", "hazard_zones")
AREA_LATEST = 12  # areas start here at the latest, however small the layer
FEW_TILES = 4  # "the whole extent fits a few tiles": at most 2 x 2
DENSE = 10_000  # features whose centre falls in one tile
_MAX_LAT = 85.0511287798066


def default_zooms(kind: str, lon: np.ndarray, lat: np.ndarray,
                  bounds: tuple[float, float, float, float]) -> tuple[int, int, str]:
    """(minzoom, maxzoom, why) for a layer of ``kind`` whose features centre on lon/lat.

    ``why`` says in a few words what decided minzoom, for the ingest report.
    """
    latest = KIND_MINZOOM.get(kind, KIND_MINZOOM["generic"])
    fits = fit_zoom(bounds)
    if kind == "buildings":
        low, why = latest, "buildings start at z13"
    elif kind in AREA_KINDS:
        low, why = min(max(fits - 1, 0), AREA_LATEST), "from here the whole extent is about one tile across"
    elif fits < latest:
        low, why = fits, f"from here the whole extent fits in {FEW_TILES} tiles"
    else:
        low, why = latest, f"{kind} start at z{latest} at the latest"
    dense = low
    while dense < MAXZOOM and busiest_tile(lon, lat, dense) > DENSE:
        dense += 1
    if dense > low:
        low, why = dense, f"below z{dense} a tile would hold over {DENSE:,} features"
    return low, MAXZOOM, why


def _tile_xy(lon: np.ndarray, lat: np.ndarray, z: int) -> tuple[np.ndarray, np.ndarray]:
    n = 1 << z
    lat = np.radians(np.clip(lat, -_MAX_LAT, _MAX_LAT))
    x = np.floor((np.asarray(lon) + 180.0) / 360.0 * n)
    y = np.floor((1.0 - np.log(np.tan(lat) + 1.0 / np.cos(lat)) / math.pi) / 2.0 * n)
    return np.clip(x, 0, n - 1).astype(np.int64), np.clip(y, 0, n - 1).astype(np.int64)


def tiles_covering(bounds: tuple[float, float, float, float], z: int) -> int:
    """How many WebMercatorQuad tiles of zoom ``z`` the lon/lat box touches."""
    west, south, east, north = bounds
    x, y = _tile_xy(np.array([west, east]), np.array([north, south]), z)
    return int((x[1] - x[0] + 1) * (y[1] - y[0] + 1))


def fit_zoom(bounds: tuple[float, float, float, float]) -> int:
    """The deepest zoom (up to MAXZOOM) at which the box touches at most FEW_TILES tiles."""
    z = 0
    while z < MAXZOOM and tiles_covering(bounds, z + 1) <= FEW_TILES:
        z += 1
    return z


def busiest_tile(lon: np.ndarray, lat: np.ndarray, z: int) -> int:
    """The most feature centres that fall in one tile of zoom ``z``."""
    if len(lon) == 0:
        return 0
    x, y = _tile_xy(lon, lat, z)
    return int(np.unique(x * (1 << z) + y, return_counts=True)[1].max())


def missing_zooms(given: dict[str, int], fitted: tuple[int, int]) -> dict[str, int]:
    """The fitted minzoom/maxzoom for the keys not in ``given``, kept in order with the given ones."""
    lo = given.get("minzoom", fitted[0])
    hi = given.get("maxzoom", fitted[1])
    if "minzoom" not in given:
        lo = min(lo, hi)
    if "maxzoom" not in given:
        hi = max(hi, lo)
    return {k: v for k, v in (("minzoom", lo), ("maxzoom", hi)) if k not in given}


def centres(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the geometries' bounding boxes (cheap, and enough to count features per tile)."""
    b = shapely.bounds(geoms)
    return (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2

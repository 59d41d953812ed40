"""One Mapbox Vector Tile from a handful of GeoJSON features, encoded on the fly.

For live layers: a few hundred short-lived items, so no archive and no cache; each
request projects the features that reach the tile to Web Mercator, clips them to the
tile plus a small buffer and encodes them with mapbox-vector-tile.
"""
from __future__ import annotations

import json
import math

import mapbox_vector_tile
import numpy as np
import shapely
from shapely.geometry import shape

from geo.crs import WEB_MERCATOR, WGS84, transformer

EXTENT = 4096
BUFFER_PX = 64  # of EXTENT: lines and symbols crossing the edge still draw on both sides
_HALF = 20037508.342789244  # half the Web Mercator world width, metres
MAX_ZOOM = 24


def tile_bounds_mercator(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    size = 2 * _HALF / (1 << z)
    left = -_HALF + x * size
    top = _HALF - y * size
    return left, top - size, left + size, top


def tile_bounds_lonlat(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """The tile's lon/lat box, grown by the buffer (for the item query)."""
    left, bottom, right, top = tile_bounds_mercator(z, x, y)
    pad = (right - left) * BUFFER_PX / EXTENT
    to_ll = transformer(WEB_MERCATOR, WGS84)
    w, s = to_ll.transform(left - pad, max(bottom - pad, -_HALF))
    e, n = to_ll.transform(right + pad, min(top + pad, _HALF))
    return max(w, -180.0), max(s, -90.0), min(e, 180.0), min(n, 90.0)


def _value(v):
    """MVT values are scalars: keep str/int/float/bool, JSON-encode the rest, drop null."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    if isinstance(v, (str, bool, int, float)):
        return v
    return json.dumps(v, ensure_ascii=False, default=str)


def encode_tile(layer: str, features: list[dict], z: int, x: int, y: int) -> bytes:
    """MVT bytes holding ``features`` (GeoJSON, lon/lat) as layer ``layer``; b'' when none reaches the tile."""
    left, bottom, right, top = tile_bounds_mercator(z, x, y)
    pad = (right - left) * BUFFER_PX / EXTENT
    to_merc = transformer(WGS84, WEB_MERCATOR)
    # projected and clipped all at once: a low-zoom tile holds hundreds of vehicles, and one
    # call per feature spent most of the tile's time in per-call overhead
    geoms = np.array([shape(f["geometry"]) for f in features], dtype=object)
    # Latitudes beyond Web Mercator's range cannot be drawn; clamp them to its edge.
    geoms = shapely.clip_by_rect(shapely.transform(geoms, lambda c: _project(to_merc, c)),
                                 left - pad, bottom - pad, right + pad, top + pad)
    out = []
    for f, g in zip(features, geoms):
        if g.is_empty:
            continue
        props = {k: _value(v) for k, v in (f.get("properties") or {}).items()}
        props = {k: v for k, v in props.items() if v is not None}
        props["id"] = str(f["id"])
        out.append({"geometry": g, "properties": props})
    if not out:
        return b""
    return mapbox_vector_tile.encode([{"name": layer, "features": out}],
                                     default_options={"quantize_bounds": (left, bottom, right, top),
                                                      "extents": EXTENT})


def _project(to_merc, coords: np.ndarray) -> np.ndarray:
    lat = np.clip(coords[:, 1], -85.05112878, 85.05112878)
    mx, my = to_merc.transform(coords[:, 0], lat)
    return np.column_stack([mx, my])

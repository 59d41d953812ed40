"""Vector tiles in WorldCRS84Quad (OGC 2DTMS: lon/lat, two 180° tiles at level 0), made per request
from the store.

GDAL's OGCAPI driver prefers this tile matrix set, and with WebMercatorQuad alone it places the
collection's lon/lat extent on the metre grid and finds no tile (its tile ranges come from the
CRS84 bbox as is). Levels are offered from the layer's minzoom-1 to maxzoom-1: a level-L tile spans
the same degrees of longitude as a Web Mercator tile at zoom L+1, so a tile never covers more of the
layer than the Web Mercator tiles the layer was built for.
"""
from __future__ import annotations

import json
import math

import geopandas as gpd
import mapbox_vector_tile
import shapely

EXTENT = 4096
BUFFER_PX = 64
WORLD_CRS84_QUAD = "WorldCRS84Quad"
WORLD_CRS84_QUAD_URI = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WorldCRS84Quad"
#: A tile made on request encodes at most this many features (pure-Python MVT encoding runs at
#: some 10,000 features a second); a fuller tile is refused, pointing at the next level.
MAX_TILE_FEATURES = 20_000


class TileTooFull(ValueError):
    """More features reach a tile than one request may encode; the message names the next level."""


def crs84_levels(minzoom: int, maxzoom: int) -> range:
    """WorldCRS84Quad levels matching Web Mercator zooms ``minzoom``..``maxzoom``."""
    return range(max(0, minzoom - 1), max(0, maxzoom - 1) + 1)


def tile_bounds(level: int, row: int, col: int) -> tuple[float, float, float, float]:
    size = 180.0 / (1 << level)
    west, north = -180.0 + col * size, 90.0 - row * size
    return west, north - size, west + size, north


def in_grid(level: int, row: int, col: int) -> bool:
    return 0 <= row < (1 << level) and 0 <= col < (2 << level)


def crs84_limits(bounds: tuple[float, float, float, float], levels: range) -> list[dict]:
    """Rows and columns per level of the tiles covering ``bounds`` (lon/lat)."""
    west, south, east, north = bounds
    out = []
    for level in levels:
        size = 180.0 / (1 << level)
        col = lambda lon: min((2 << level) - 1, max(0, math.floor((lon + 180.0) / size)))  # noqa: E731
        row = lambda lat: min((1 << level) - 1, max(0, math.floor((90.0 - lat) / size)))  # noqa: E731
        out.append({"tileMatrix": str(level), "minTileRow": row(north), "maxTileRow": row(south),
                    "minTileCol": col(west), "maxTileCol": col(east)})
    return out


def read_bounds(level: int, row: int, col: int) -> tuple[float, float, float, float]:
    """The tile's box grown by the buffer: the features to read for it."""
    west, south, east, north = tile_bounds(level, row, col)
    pad = (east - west) * BUFFER_PX / EXTENT
    return west - pad, south - pad, east + pad, north + pad


def encode(layer: str, gdf: gpd.GeoDataFrame, level: int, row: int, col: int,
           max_features: int = MAX_TILE_FEATURES) -> bytes:
    """MVT bytes of ``gdf`` (lon/lat) in the tile, as layer ``layer``; b'' when nothing reaches it."""
    if len(gdf) > max_features:
        raise TileTooFull(f"tile {level}/{row}/{col} of layer '{layer}' holds {len(gdf):,} features, over the "
                          f"{max_features:,} a tile made on request may hold; read level {level + 1}, or the "
                          f"WebMercatorQuad tiles")
    west, south, east, north = tile_bounds(level, row, col)
    clipped = shapely.clip_by_rect(gdf.geometry.values, *read_bounds(level, row, col))
    columns = [c for c in gdf.columns if c != gdf.geometry.name]
    features = []
    for geom, record in zip(clipped, gdf[columns].to_dict("records")):
        if geom is None or geom.is_empty:
            continue
        props = {k: _value(v) for k, v in record.items()}
        features.append({"geometry": geom, "properties": {k: v for k, v in props.items() if v is not None}})
    if not features:
        return b""
    return mapbox_vector_tile.encode([{"name": layer, "features": features}],
                                     default_options={"quantize_bounds": (west, south, east, north), "extents": EXTENT})


def _value(v):
    # MVT values are scalars; numpy scalars become Python ones, NaN and None are left out
    if hasattr(v, "item"):
        v = v.item()
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    if isinstance(v, (str, bool, int, float)):
        return v
    return json.dumps(v, ensure_ascii=False, default=str)

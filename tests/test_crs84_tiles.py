"""WorldCRS84Quad tiles made per request (tiles/crs84_tiles.py): the grid, and the bound on the
work one request may ask for."""
from __future__ import annotations

import geopandas as gpd
import mapbox_vector_tile
import pytest
import shapely

from tiles.crs84_tiles import TileTooFull, crs84_limits, encode, tile_bounds


def _points(n: int, west: float, south: float, east: float, north: float) -> gpd.GeoDataFrame:
    xs = [west + (east - west) * (i + 0.5) / n for i in range(n)]
    return gpd.GeoDataFrame({"id": [f"p{i}" for i in range(n)]},
                            geometry=[shapely.Point(x, (south + north) / 2) for x in xs], crs="EPSG:4326")


def test_a_tile_holds_its_features_where_they_lie() -> None:
    level, row, col = 11, 596, 3492  # over Seoul City Hall
    w, s, e, n = tile_bounds(level, row, col)
    assert (w, n) == (-180 + col * 180 / 2 ** level, 90 - row * 180 / 2 ** level)
    gdf = _points(4, w, s, e, n)
    tile = mapbox_vector_tile.decode(encode("pts", gdf, level, row, col))
    got = sorted(f["geometry"]["coordinates"][0] for f in tile["pts"]["features"])
    # quarter points of the tile's width, in the 4096-unit tile frame
    assert got == [round(4096 * (i + 0.5) / 4) for i in range(4)]
    assert crs84_limits((w + 1e-9, s + 1e-9, e - 1e-9, n - 1e-9), range(level, level + 1)) == [
        {"tileMatrix": str(level), "minTileRow": row, "maxTileRow": row, "minTileCol": col, "maxTileCol": col}]


def test_a_tile_over_the_feature_bound_is_refused_naming_the_next_level() -> None:
    w, s, e, n = tile_bounds(11, 596, 3492)
    with pytest.raises(TileTooFull, match=r"tile 11/596/3492 of layer 'pts' holds 30 features, over the 20 .* level 12"):
        encode("pts", _points(30, w, s, e, n), 11, 596, 3492, max_features=20)
    assert encode("pts", _points(20, w, s, e, n), 11, 596, 3492, max_features=20)

"""web_mercator clips only what reaches out of lon +-180 / lat +-MAX_LAT, with the same result as
clipping everything first."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from tiles.mvt_geometry import MAX_LAT, web_mercator


def _reference(lonlat: np.ndarray) -> np.ndarray:
    clipped = shapely.clip_by_rect(lonlat, -180, -MAX_LAT, 180, MAX_LAT)
    return np.asarray(gpd.GeoSeries(clipped, crs=4326).to_crs(3857).values)


def test_same_geometries_as_clipping_everything():
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(-179, 179, 300), rng.uniform(-84, 84, 300)
    boxes = shapely.box(lon, lat, lon + rng.uniform(0, 2, 300), lat + rng.uniform(0, 2, 300))
    extra = shapely.from_wkt([
        "POLYGON((10 80, 20 80, 20 89, 10 89, 10 80))",  # crosses the limit: clipped
        "LINESTRING(0 -89, 1 -80)", "POINT(5 86)", "POINT(5 -86)",  # partly and wholly outside
        "POLYGON((0 0, 4 0, 4 4, 0 4, 0 0), (1 1, 2 1, 2 2, 1 2, 1 1))", "MULTIPOINT((1 1), (2 89))",
        "POLYGON EMPTY", "LINESTRING EMPTY", None,
    ])
    lonlat = np.concatenate([boxes, extra])
    got, want = web_mercator(lonlat.copy()), _reference(lonlat.copy())
    assert [shapely.to_wkb(g) if g is not None else None for g in got] == \
        [shapely.to_wkb(w) if w is not None else None for w in want]
    assert shapely.bounds(got[300])[3] < 20037508.35  # the part past the limit was cut off
    assert shapely.is_empty(got[302])

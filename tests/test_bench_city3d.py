"""The street-level benchmark's choice of view: the densest z16 cell and a street along which the
camera looks. Expectations come from morecantile (tile maths) and from a hand-made street layout."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import geopandas as gpd
import morecantile
import numpy as np
import shapely

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is not an installed package

from benchmarks.bench_city3d import densest_z16, street_view, tile_bounds  # noqa: E402

TMS = morecantile.tms.get("WebMercatorQuad")


def test_the_densest_z16_cell_is_the_one_holding_most_points():
    rng = np.random.default_rng(3)
    lon = np.r_[rng.uniform(126.9, 127.1, 3000), rng.normal(127.0312, 0.0004, 400)]
    lat = np.r_[rng.uniform(37.45, 37.65, 3000), rng.normal(37.5571, 0.0004, 400)]
    counts = Counter((t.x, t.y) for t in (TMS.tile(a, b, 16) for a, b in zip(lon, lat)))
    (x, y), most = counts.most_common(1)[0]
    assert densest_z16(lon, lat) == ((16, x, y), most)
    assert most > 50  # the cluster, not a cell of the uniform background
    b = TMS.bounds(morecantile.Tile(x, y, 16))
    assert np.allclose(tile_bounds(16, x, y), (b.left, b.bottom, b.right, b.top), atol=1e-9)


def test_the_camera_stands_in_the_street_and_looks_along_it(tmp_path):
    """Rows of east-west slabs cut in 40 m pieces (2 m apart, staggered row to row) with 16 m
    streets between rows: only an east or west view runs 600 m without meeting a building."""
    x0, y0 = 198_000.0, 551_500.0
    slabs = []
    for row in range(-12, 13):
        y = y0 + row * 36.0
        shift = 20.0 if row % 2 else 0.0
        for i in range(-25, 25):
            x = x0 + i * 42.0 + shift
            slabs.append(shapely.box(x, y, x + 40.0, y + 20.0))
    gdf = gpd.GeoDataFrame({"id": [str(i) for i in range(len(slabs))]}, geometry=slabs, crs=5186).to_crs(4326)
    gpkg = tmp_path / "city.gpkg"
    gdf.to_file(gpkg, layer="buildings", engine="pyogrio")

    street = street_view(gpkg)

    assert street.heading in (90.0, 270.0)
    assert street.free_m == 600.0
    here = gpd.GeoSeries([shapely.Point(street.lon, street.lat)], crs=4326).to_crs(5186).iloc[0]
    metres = gdf.to_crs(5186)
    assert metres.distance(here).min() >= 5.0
    # in a street: between two rows, not beyond the layout
    assert y0 - 12 * 36 < here.y < y0 + 12 * 36 and x0 - 25 * 42 < here.x < x0 + 25 * 42
    assert ((here.y - y0) % 36.0) > 20.0
    pts = gdf.geometry.representative_point()
    counts = Counter((t.x, t.y) for t in (TMS.tile(p.x, p.y, 16) for p in pts))
    assert street.cell_buildings == max(counts.values())
    assert counts[street.cell[1:]] == street.cell_buildings
    w, s, e, n = tile_bounds(*street.cell)
    assert w <= street.lon <= e and s <= street.lat <= n

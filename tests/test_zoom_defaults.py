"""Default zoom ranges: written into the catalog entry at ingest (and by build for entries
without one), fitted to the kind, the extent and the density, so Seoul's districts are
still drawn when the whole city is on screen."""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import morecantile
import numpy as np
import pytest
import yaml
from shapely.geometry import Point, box

from test_ingest import run
from tiles.pmtiles_source import PMTilesSource

TMS = morecantile.tms.get("WebMercatorQuad")
# about Seoul's extent (the 25 gu span 126.76-127.18 E, 37.43-37.70 N)
SEOUL = (126.764, 37.428, 127.184, 37.701)


def districts(bounds=SEOUL, n: int = 5) -> gpd.GeoDataFrame:
    """n x n rectangles tiling ``bounds``, like the gu of a city."""
    w, s, e, nn = bounds
    xs, ys = np.linspace(w, e, n + 1), np.linspace(s, nn, n + 1)
    cells = [box(xs[i], ys[j], xs[i + 1], ys[j + 1]) for i in range(n) for j in range(n)]
    return gpd.GeoDataFrame({"name": [f"gu{k}" for k in range(len(cells))]}, geometry=cells, crs=4326)


def one_tile_zoom(bounds) -> int:
    """Independently: one zoom out from the deepest zoom at which the box touches at most 2 x 2 tiles."""
    deepest = max(z for z in range(17) if len(list(TMS.tiles(*bounds, [z]))) <= 4)
    return deepest - 1


def entry(project: Path, layer: str) -> dict:
    return yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))["layers"][layer]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    code, out = run("init", str(tmp_path / "proj"))
    assert code == 0, out
    return tmp_path / "proj"


def test_city_districts_start_where_the_city_is_one_tile_across(project: Path):
    src = project / "gu.geojson"
    districts().to_file(src, driver="GeoJSON")
    code, out = run("ingest", str(src), "--layer", "gu", "--kind", "boundaries", "--project", str(project))
    assert code == 0, out
    expected = one_tile_zoom(SEOUL)
    assert expected == 9
    assert (entry(project, "gu")["minzoom"], entry(project, "gu")["maxzoom"]) == (expected, 16)
    assert f"tiles: z{expected}-16; minzoom: {expected} and maxzoom: 16 written to {project / 'citytwin.yaml'}" in out

    code, out = run("build", "--project", str(project), "--layer", "gu")
    assert code == 0, out
    tiles = PMTilesSource(project / "build" / "tiles" / "gu.pmtiles")
    assert (tiles.info().minzoom, tiles.info().maxzoom) == (expected, 16)
    # zoomed out to z9 the districts are drawn: the tile over the city centre has them
    centre = TMS.tile(126.978, 37.566, expected)
    assert tiles.tile(expected, centre.x, centre.y)


@pytest.mark.parametrize(("kind", "bounds", "expected"), [
    ("buildings", (126.976, 37.565, 126.980, 37.568), 13),  # a few blocks
    ("buildings", SEOUL, 13),  # the whole city: still from z13
    ("pois", SEOUL, 10),  # a city fits 4 tiles only from z10 on
    ("pois", (126.0, 35.0, 129.5, 38.5), None),  # across the country: from where it fits 4 tiles
    ("boundaries", (126.976, 37.565, 126.980, 37.568), 12),  # a few blocks: z12 at the latest
])
def test_default_first_zoom_by_kind_and_extent(project: Path, kind: str, bounds, expected: int | None):
    src = project / "layer.geojson"
    gdf = districts(bounds, n=3)
    if kind == "pois":
        gdf = gdf.set_geometry(gdf.geometry.representative_point())
    gdf.to_file(src, driver="GeoJSON")
    if expected is None:  # the deepest zoom at which the points touch at most 4 tiles
        expected = max(z for z in range(17) if len(list(TMS.tiles(*gdf.total_bounds, [z]))) <= 4)
        assert expected < 10
    code, out = run("ingest", str(src), "--layer", "l", "--kind", kind, "--project", str(project))
    assert code == 0, out
    assert (entry(project, "l")["minzoom"], entry(project, "l")["maxzoom"]) == (expected, 16)


def test_dense_points_start_deeper(project: Path):
    # 12,000 points within 30 m: whatever the zoom, one tile holds them all (over 10,000)
    rng = np.random.default_rng(3)
    pts = [Point(126.978 + dx, 37.566 + dy) for dx, dy in rng.uniform(0, 0.0003, size=(12_000, 2))]
    src = project / "dense.fgb"
    gpd.GeoDataFrame({"n": np.arange(12_000)}, geometry=pts, crs=4326).to_file(src)
    code, out = run("ingest", str(src), "--layer", "dense", "--kind", "pois", "--project", str(project))
    assert code == 0, out
    assert entry(project, "dense")["minzoom"] == 16
    assert "below z16 a tile would hold over 10,000 features" in out


def test_given_zooms_are_kept_and_the_missing_one_is_written(project: Path):
    src = project / "gu.geojson"
    districts().to_file(src, driver="GeoJSON")
    code, out = run("ingest", str(src), "--layer", "gu", "--kind", "boundaries", "--minzoom", "11",
                    "--project", str(project))
    assert code == 0, out
    assert (entry(project, "gu")["minzoom"], entry(project, "gu")["maxzoom"]) == (11, 16)
    assert "tiles: z11-16; maxzoom: 16 written to" in out
    # edited by hand, then re-ingested: the entry's range stays as written
    path = project / "citytwin.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("maxzoom: 16", "maxzoom: 14"), encoding="utf-8")
    code, out = run("ingest", str(src), "--layer", "gu", "--project", str(project))
    assert code == 0, out
    assert (entry(project, "gu")["minzoom"], entry(project, "gu")["maxzoom"]) == (11, 14)
    assert f"tiles: z11-14 (minzoom/maxzoom of 'gu' in {path})" in out
    # a range that cannot be: one clear line naming the options
    code, out = run("ingest", str(src), "--layer", "gu", "--minzoom", "15", "--project", str(project))
    assert code == 2 and out.startswith("error: options: minzoom 15 is above maxzoom 14"), out


def test_build_writes_a_fitted_range_into_an_entry_without_one(tmp_path: Path):
    districts().to_file(tmp_path / "gu.geojson", driver="GeoJSON")
    (tmp_path / "citytwin.yaml").write_text("layers:\n  gu:  # the districts\n    kind: boundaries\n"
                                            "    source: gu.geojson\n", encoding="utf-8")
    code, out = run("build", "--project", str(tmp_path))
    assert code == 0, out
    text = (tmp_path / "citytwin.yaml").read_text(encoding="utf-8")
    assert "  gu:  # the districts\n" in text
    assert (entry(tmp_path, "gu")["minzoom"], entry(tmp_path, "gu")["maxzoom"]) == (9, 16)
    assert PMTilesSource(tmp_path / "build" / "tiles" / "gu.pmtiles").info().minzoom == 9


def test_ingest_help_documents_zooms_and_gtfs():
    code, out = run("ingest", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "--minzoom" in text and "--maxzoom" in text
    assert "When neither the entry nor --minzoom/--maxzoom sets them, ingest writes a range fitted" in text
    assert "A GTFS feed (.zip with stops.txt, routes.txt, trips.txt, stop_times.txt) becomes three transit layers" in text
    assert "LAYER_stops (points), LAYER_routes (lines) and LAYER_departures" in text

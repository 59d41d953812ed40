"""Our MVT engine (tiles/mvt_*.py) checked through two decoders it does not use.

Tiles are decoded with mapbox_vector_tile (Python protobuf) and with GDAL's PMTiles/MVT
reader (through pyogrio). Expected tile coordinates come from the spherical Mercator tile
formulas written out here, applied to the source lon/lat; nothing of the engine's maths is
reused.
"""
from __future__ import annotations

import gzip
import math

import geopandas as gpd
import mapbox_vector_tile
import numpy as np
import pyogrio
import pytest
import shapely
from pmtiles.reader import MmapSource, Reader, all_tiles

from pipelines.store.gpkg import GeoPackageStore
from tiles.pmtiles_build import build_pmtiles

SEOUL = (126.978, 37.5665)
EXTENT, BUFFER = 4096, 64
LIMIT = 500_000
ROUNDING = math.sqrt(0.5)  # a vertex rounded to the tile grid moves at most this far (tile units)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    return int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


def to_tile_units(geom, z: int, x: int, y: int):
    """lon/lat geometry in the tile's own units (y down), by the textbook formulas."""
    n = 2 ** z

    def move(c: np.ndarray) -> np.ndarray:
        px = ((c[:, 0] + 180) / 360 * n - x) * EXTENT
        py = ((1 - np.arcsinh(np.tan(np.radians(c[:, 1]))) / np.pi) / 2 * n - y) * EXTENT
        return np.column_stack([px, py])

    return shapely.transform(geom, move)


def mercator_area(gdf: gpd.GeoDataFrame) -> dict[str, float]:
    """Areas as Web Mercator draws them (the engine's priority): lon/lat area scaled by sec^2(lat)."""
    lat = np.radians(shapely.get_y(shapely.centroid(gdf.geometry.values)))
    return dict(zip(gdf.index, shapely.area(gdf.geometry.values) / np.cos(lat) ** 2))


def decoded_tiles(path) -> dict[tuple[int, int, int], bytes]:
    with open(path, "rb") as f:
        return {zxy: gzip.decompress(bytes(d)) for zxy, d in all_tiles(Reader(MmapSource(f)).get_bytes)}


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})


def build(tmp_path, name: str, gdf: gpd.GeoDataFrame, minzoom: int, maxzoom: int, fields=None):
    store = GeoPackageStore(tmp_path / "store.gpkg")
    store.publish(name, gdf)
    out = tmp_path / f"{name}.pmtiles"
    report = build_pmtiles(store, name, out, minzoom, maxzoom, fields, progress=False)
    return out, report, store.read(name).set_index("id")


# -- a small city with every polygon shape the engine must get right ---------------------
def small_city(n: int = 400, seed: int = 11) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    cx = SEOUL[0] + rng.uniform(-0.004, 0.004, n)
    cy = SEOUL[1] + rng.uniform(-0.003, 0.003, n)
    geoms = []
    for i in range(n):
        w, h = rng.uniform(0.00005, 0.0004, 2)
        outer = shapely.box(cx[i] - w, cy[i] - h, cx[i] + w, cy[i] + h)
        if i % 5 == 0:  # a courtyard block: a polygon with a hole
            geoms.append(outer.difference(shapely.box(cx[i] - w / 2, cy[i] - h / 2, cx[i] + w / 2, cy[i] + h / 2)))
        elif i % 7 == 0:  # two wings: a multipolygon
            geoms.append(shapely.MultiPolygon([outer, shapely.box(cx[i] + 2 * w, cy[i], cx[i] + 3 * w, cy[i] + h)]))
        else:
            geoms.append(shapely.affinity.rotate(outer, rng.uniform(0, 90)))
    height = rng.uniform(3, 120, n).round(2)
    height[::9] = np.nan
    names = [None if i % 6 == 0 else f"건물 {i} «{i % 13}»" for i in range(n)]
    return gpd.GeoDataFrame(
        {"id": [f"c{i:04d}" for i in range(n)], "name": names, "height": height,
         "floors": rng.integers(1, 60, n), "public": rng.random(n) < 0.3},
        geometry=geoms, crs="EPSG:4326")


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    return build(tmp_path_factory.mktemp("mvt"), "city", small_city(), 14, 16)


def test_geometry_matches_the_source_within_rounding(city):
    out, _, src = city
    checked = 0
    for (z, x, y), data in decoded_tiles(out).items():
        if z != 16:  # maxzoom: not simplified, so only rounding moves a vertex
            continue
        window = shapely.box(-BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)
        for f in decode(data)["city"]["features"]:
            got = shapely.geometry.shape(f["geometry"])
            expected = to_tile_units(src.loc[f["properties"]["id"], "geometry"], z, x, y).intersection(window)
            assert got.geom_type in ("Polygon", "MultiPolygon")
            assert shapely.hausdorff_distance(got, expected) <= ROUNDING + 1e-6, f["properties"]["id"]
            assert abs(got.area - expected.area) <= ROUNDING * expected.length + 1e-6
            if expected.area > 400:  # well clear of rounding: holes stay holes, parts stay parts
                assert got.is_valid
                assert shapely.get_num_interior_rings(got) == shapely.get_num_interior_rings(expected) or \
                    got.geom_type == "MultiPolygon"
                assert shapely.get_num_geometries(got) == shapely.get_num_geometries(expected)
            checked += 1
    assert checked > 400  # every feature, some in more than one tile


def test_rings_wind_as_the_spec_says(city):
    """Exterior rings have positive area in tile coordinates (y down), holes negative."""
    out, _, _ = city
    holes = 0
    for data in decoded_tiles(out).values():
        raw = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True, "geojson": False})
        for f in raw["city"]["features"]:
            polys = f["geometry"]["coordinates"]
            polys = [polys] if f["geometry"]["type"] == "Polygon" else polys
            for rings in polys:
                for k, ring in enumerate(rings):
                    a = np.asarray(ring, dtype=float)
                    area2 = float(np.sum(a[:-1, 0] * a[1:, 1] - a[1:, 0] * a[:-1, 1]))
                    assert (area2 > 0) if k == 0 else (area2 < 0)
                    holes += k > 0
    assert holes > 50


def test_attributes_round_trip_with_their_types(city):
    out, _, src = city
    seen = 0
    for data in decoded_tiles(out).values():
        for f in decode(data)["city"]["features"]:
            props = dict(f["properties"])
            row = src.loc[props.pop("id")]
            assert props.pop("floors") == int(row["floors"]) and isinstance(row["floors"], (int, np.integer))
            assert props.pop("public") is bool(row["public"])
            if isinstance(row["name"], str):
                assert props.pop("name") == row["name"]
            if np.isfinite(row["height"]):
                assert props.pop("height") == row["height"]  # doubles are written whole
            assert props == {}, props  # nulls are left out, nothing else appears
            seen += 1
    assert seen > 1000


def test_gdal_reads_the_same_features_per_zoom(city):
    """A second decoder (GDAL's PMTiles driver) finds every feature at every zoom, with its fields."""
    out, report, src = city
    for z in (14, 15, 16):
        got = pyogrio.read_dataframe(out, layer="city", read_geometry=False, ZOOM_LEVEL=str(z))
        assert set(got["id"]) == set(src.index), z
        assert report.dropped_per_zoom[z] == 0
        one = got.drop_duplicates("id").set_index("id").sort_index()
        assert (one["floors"].astype(int) == src.loc[one.index, "floors"]).all()


def test_only_published_fields_are_written(tmp_path):
    gdf = small_city(60)
    gdf["secret"] = "do not publish"
    out, _, _ = build(tmp_path, "city", gdf, 15, 15, fields=["height"])
    for data in decoded_tiles(out).values():
        for f in decode(data)["city"]["features"]:
            assert set(f["properties"]) <= {"id", "height"} and "id" in f["properties"]


# -- points and lines --------------------------------------------------------------------
def test_points_and_lines_land_where_they_should(tmp_path):
    rng = np.random.default_rng(4)
    lon = SEOUL[0] + rng.uniform(-0.01, 0.01, 200)
    lat = SEOUL[1] + rng.uniform(-0.01, 0.01, 200)
    pts = gpd.GeoDataFrame({"id": [f"p{i}" for i in range(200)]}, geometry=shapely.points(lon, lat), crs=4326)
    lines = gpd.GeoDataFrame({"id": [f"l{i}" for i in range(20)]}, crs=4326, geometry=[
        shapely.LineString(np.column_stack([lon[i * 10:(i + 1) * 10], lat[i * 10:(i + 1) * 10]])) for i in range(20)])
    for name, gdf in (("pois", pts), ("roads", lines)):
        out, report, src = build(tmp_path, name, gdf, 15, 15)
        found = set()
        window = shapely.box(-BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)
        for (z, x, y), data in decoded_tiles(out).items():
            for f in decode(data)[name]["features"]:
                got = shapely.geometry.shape(f["geometry"])
                expected = to_tile_units(src.loc[f["properties"]["id"], "geometry"], z, x, y).intersection(window)
                assert shapely.hausdorff_distance(got, expected) <= ROUNDING + 1e-6
                found.add(f["properties"]["id"])
        assert found == set(src.index) and report.dropped_per_zoom[15] == 0


# -- the size budget on a dense city ---------------------------------------------------------
def inside_one_z14_tile(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random lon/lat in Seoul's z14 tile, far enough inside that no neighbour at z12-14 sees them."""
    z, (x, y) = 14, tile_of(*SEOUL, 14)
    n2 = 2 ** z
    west, east = x / n2 * 360 - 180, (x + 1) / n2 * 360 - 180
    north = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n2))))
    south = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 1) / n2))))
    margin = 0.0018  # clear of the z12 tile buffer (64/4096 of 0.088 degrees) should the tile sit at its edge
    return rng.uniform(west + margin, east - margin, n), rng.uniform(south + margin, north - margin, n)


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """30,000 footprints with long text inside one z14 tile: far over 500 kB at z12-14."""
    n = 30_000
    rng = np.random.default_rng(8)
    size = rng.uniform(0.00004, 0.0002, n)
    cx, cy = inside_one_z14_tile(rng, n)
    gdf = gpd.GeoDataFrame(
        {"id": [f"d{i:05d}" for i in range(n)],
         "note": [f"{i:05d} a long attribute value that will not compress away" for i in range(n)]},
        geometry=shapely.box(cx, cy, cx + size, cy + size * 0.7), crs="EPSG:4326")
    return build(tmp_path_factory.mktemp("dense"), "dense", gdf, 12, 16)


def test_dense_tiles_keep_the_largest_and_fill_the_budget(dense):
    out, report, src = dense
    tiles = decoded_tiles(out)
    assert max(len(d) for d in tiles.values()) <= LIMIT
    area = mercator_area(src)
    for z in (12, 13, 14):
        (data,) = [d for (tz, _, _), d in tiles.items() if tz == z]  # the cluster is inside one tile
        kept = {f["properties"]["id"] for f in decode(data)["dense"]["features"]}
        dropped = set(src.index) - kept
        assert dropped and report.dropped_per_zoom[z] == len(dropped)
        assert min(area[i] for i in kept) >= max(area[i] for i in dropped)  # the smallest were left out
        # sizes are exact, so a tile that had to leave features out is filled to the limit
        assert len(data) > 0.99 * LIMIT, (z, len(data))


def test_dense_city_is_complete_from_the_full_detail_zoom(dense):
    out, report, src = dense
    tiles = decoded_tiles(out)
    assert report.dropped_per_zoom[15] > 0  # four z15 tiles still hold too much...
    ids = {f["properties"]["id"] for (tz, _, _), d in tiles.items() if tz == 16 for f in decode(d)["dense"]["features"]}
    assert ids == set(src.index)  # ...but at z16 every feature is there
    assert report.dropped_per_zoom[16] == 0
    assert report.largest_tile_bytes == max(len(d) for d in tiles.values())
    assert report.tiles_written == len(tiles)


def test_many_vertices_simplified_away_still_fill_the_budget(tmp_path):
    """Round towers of 200 vertices shrink to a few once simplified at z12-13: the engine's first
    guess at their size (from vertex counts) is far too big, yet the tiles come out full and exact."""
    n = 20_000
    rng = np.random.default_rng(9)
    centres = shapely.points(*inside_one_z14_tile(rng, n))
    gdf = gpd.GeoDataFrame({"id": [f"t{i:05d}" for i in range(n)], "floors": rng.integers(1, 80, n)},
                           geometry=shapely.buffer(centres, rng.uniform(0.00003, 0.0001, n), quad_segs=50), crs=4326)
    out, report, src = build(tmp_path, "towers", gdf, 12, 13)
    area = mercator_area(src)
    for (tz, _, _), data in decoded_tiles(out).items():
        kept = {f["properties"]["id"] for f in decode(data)["towers"]["features"]}
        dropped = set(src.index) - kept
        assert dropped and report.dropped_per_zoom[tz] == len(dropped)
        assert min(area[i] for i in kept) >= max(area[i] for i in dropped)
        assert 0.99 * LIMIT < len(data) <= LIMIT, (tz, len(data))

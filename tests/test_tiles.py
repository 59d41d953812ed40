"""Vector tile products: PMTiles build + source, TileJSON, PostGIS ST_AsMVT source.

Expectations are computed here from the standard Web Mercator tile formulas and
shapely predicates on the input polygons; tiles are decoded with mapbox_vector_tile
and read with the pmtiles package, neither of which the code under test uses to
encode.
"""
from __future__ import annotations

import gzip
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import geopandas as gpd
import mapbox_vector_tile
import numpy as np
import pandas as pd
import pytest
import shapely
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import Compression

from geo.errors import SourceError
from pipelines.store.gpkg import GeoPackageStore
from tiles.pmtiles_build import build_pmtiles
from tiles.pmtiles_source import PMTilesSource

SEOUL = (126.97, 37.56)
LIMIT = 500_000
EXTENT = 4096


# -- independent tile maths ---------------------------------------------------------
def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def tile_lonlat_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    n = 2 ** z

    def lat(row: float) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return (x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0, lat(y))


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data)


def interior_ids(layer: dict) -> set[str]:
    """ids of decoded features that reach into the tile proper (not only its buffer)."""
    tile_box = shapely.box(0, 0, EXTENT, EXTENT)
    out = set()
    for f in layer["features"]:
        g = shapely.geometry.shape(f["geometry"])
        if g.intersection(tile_box).area > 0:
            out.add(f["properties"]["id"])
    return out


# -- synthetic data -----------------------------------------------------------------
def seoul_rectangles(n: int = 3000, seed: int = 7) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    x = SEOUL[0] + rng.uniform(-0.008, 0.008, n)
    y = SEOUL[1] + rng.uniform(-0.006, 0.006, n)
    w = rng.uniform(0.0001, 0.0003, n)
    h = rng.uniform(0.0001, 0.0003, n)
    return gpd.GeoDataFrame(
        {
            "id": [f"b{i:05d}" for i in range(n)],
            "name": [f"building {i}" for i in range(n)],
            "height": rng.uniform(3, 80, n).round(1),
            "secret": ["do not publish"] * n,
        },
        geometry=shapely.box(x, y, x + w, y + h), crs="EPSG:4326",
    )


def away_from_tile_edges(gdf: gpd.GeoDataFrame, bounds, band: float) -> gpd.GeoDataFrame:
    """Leave out polygons that only graze the tile edge (within ``band`` degrees).

    Whether a sliver a fraction of a tile unit wide survives quantisation is a
    rounding question, not a tiling one; every polygon kept is clearly in or out.
    """
    tile = shapely.box(*bounds)
    inner = shapely.box(bounds[0] + band, bounds[1] + band, bounds[2] - band, bounds[3] - band)
    outer = tile.buffer(band, join_style="mitre")
    geoms = gdf.geometry.values
    keep = shapely.intersects(geoms, inner) | ~shapely.intersects(geoms, outer)
    return gdf[keep].reset_index(drop=True)


@pytest.fixture(scope="module")
def target_tile() -> tuple[int, int, int]:
    return (16, *lonlat_to_tile(*SEOUL, 16))


@pytest.fixture(scope="module")
def buildings(target_tile) -> gpd.GeoDataFrame:
    bounds = tile_lonlat_bounds(*target_tile)
    return away_from_tile_edges(seoul_rectangles(), bounds, band=2e-5)


@pytest.fixture(scope="module")
def built(tmp_path_factory, buildings):
    root = tmp_path_factory.mktemp("tiles")
    store = GeoPackageStore(root / "store.gpkg")
    store.publish("buildings", buildings)
    out = root / "out" / "buildings.pmtiles"
    report = build_pmtiles(store, "buildings", out, 14, 16, ["name", "height"], progress=False)
    return store, out, report


def archive_tiles(path: Path) -> list[tuple[tuple[int, int, int], bytes]]:
    with open(path, "rb") as f:
        reader = Reader(MmapSource(f))
        assert reader.header()["tile_compression"] == Compression.GZIP
        return [(zxy, gzip.decompress(bytes(data))) for zxy, data in all_tiles(reader.get_bytes)]


# -- PMTiles build --------------------------------------------------------------------
def test_tile_holds_exactly_the_polygons_intersecting_it(built, buildings, target_tile):
    _, out, _ = built
    z, x, y = target_tile
    with open(out, "rb") as f:
        raw = Reader(MmapSource(f)).get(z, x, y)
    layers = decode(gzip.decompress(raw))
    assert list(layers) == ["buildings"]

    tile = shapely.box(*tile_lonlat_bounds(z, x, y))
    expected = set(buildings.loc[shapely.intersects(buildings.geometry.values, tile), "id"])
    assert len(expected) > 100  # the test means something only with a well-filled tile
    assert interior_ids(layers["buildings"]) == expected


def test_attributes_are_id_plus_published_fields(built, buildings, target_tile):
    _, out, _ = built
    src = PMTilesSource(out)
    feats = decode(src.tile(*target_tile))["buildings"]["features"]
    by_id = buildings.set_index("id")
    for f in feats:
        props = f["properties"]
        assert set(props) == {"id", "name", "height"}
        assert props["name"] == by_id.loc[props["id"], "name"]
        assert props["height"] == pytest.approx(by_id.loc[props["id"], "height"])


def test_every_zoom_has_every_feature_when_nothing_is_too_big(built, buildings):
    _, out, report = built
    tiles = archive_tiles(out)
    assert report.tiles_written == len(tiles)
    assert {z for (z, _, _), _ in tiles} == {14, 15, 16}
    for z in (14, 15, 16):
        ids = set()
        for (tz, _, _), data in tiles:
            if tz == z:
                ids |= {f["properties"]["id"] for f in decode(data)["buildings"]["features"]}
        assert ids == set(buildings["id"]), f"zoom {z}"
        assert report.dropped_per_zoom[z] == 0
    assert report.largest_tile_bytes == max(len(d) for _, d in tiles)
    assert report.archive_bytes == out.stat().st_size


def test_tilejson_next_to_archive(built, buildings):
    _, out, report = built
    doc = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert report.tilejson_path == out.with_suffix(".json")
    for key in ("tilejson", "tiles", "vector_layers", "bounds", "center", "minzoom", "maxzoom"):
        assert key in doc, key
    assert doc["tilejson"] == "3.0.0"
    assert isinstance(doc["tiles"], list) and all(
        "{z}" in t and "{x}" in t and "{y}" in t for t in doc["tiles"])
    assert (doc["minzoom"], doc["maxzoom"]) == (14, 16)
    assert doc["bounds"] == pytest.approx(list(buildings.total_bounds), abs=1e-6)
    lon, lat, cz = doc["center"]
    assert doc["bounds"][0] <= lon <= doc["bounds"][2] and doc["bounds"][1] <= lat <= doc["bounds"][3]
    assert 14 <= cz <= 16
    (layer,) = doc["vector_layers"]
    assert layer["id"] == "buildings"
    assert layer["fields"] == {"id": "String", "name": "String", "height": "Number"}
    assert (layer["minzoom"], layer["maxzoom"]) == (14, 16)


def test_dense_layer_stays_under_the_tile_size_limit(tmp_path):
    # 120k tiny polygons with long text inside one z13 tile: ~20 MB of MVT if nothing was dropped.
    z13 = lonlat_to_tile(*SEOUL, 13)
    west, south, east, north = tile_lonlat_bounds(13, *z13)
    n = 120_000
    rng = np.random.default_rng(3)
    x = rng.uniform(west, east - 0.00005, n)
    y = rng.uniform(south, north - 0.00004, n)
    gdf = gpd.GeoDataFrame(
        {"id": [f"d{i:06d}" for i in range(n)],
         "note": [f"{i:06d} " + "a long attribute value that does not compress away " * 3 for i in range(n)]},
        geometry=shapely.box(x, y, x + 0.00004, y + 0.00003), crs="EPSG:4326",
    )
    store = GeoPackageStore(tmp_path / "store.gpkg")
    store.publish("dense", gdf)
    out = tmp_path / "dense.pmtiles"
    report = build_pmtiles(store, "dense", out, 12, 14, None, progress=False)

    tiles = archive_tiles(out)
    sizes = [len(d) for _, d in tiles]
    assert max(sizes) <= LIMIT
    assert report.largest_tile_bytes == max(sizes)
    assert report.tiles_written == len(tiles)
    for z in (12, 13, 14):
        ids = set()
        for (tz, _, _), data in tiles:
            if tz == z:
                ids |= {f["properties"]["id"] for f in decode(data)["dense"]["features"]}
        assert 0 < len(ids) < n  # the limit forced drops...
        assert report.dropped_per_zoom[z] == n - len(ids)  # ...and the report counts them exactly


def test_bad_field_leaves_the_previous_archive(built, tmp_path):
    store, out, _ = built
    before = out.read_bytes()
    with pytest.raises(SourceError, match="no_such_field"):
        build_pmtiles(store, "buildings", out, 14, 16, ["name", "no_such_field"], progress=False)
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["buildings.json", "buildings.pmtiles"]


# -- PMTiles source -------------------------------------------------------------------
def test_source_serves_uncompressed_tiles_and_none_elsewhere(built, target_tile):
    _, out, _ = built
    src = PMTilesSource(out)
    data = src.tile(*target_tile)
    assert data[:2] != b"\x1f\x8b"
    assert "buildings" in decode(data)
    z, x, y = target_tile
    assert src.tile(z, x + 40, y) is None  # inside the zoom range, outside the data
    assert src.tile(10, *lonlat_to_tile(*SEOUL, 10)) is None  # below minzoom
    assert src.tile(16, 1 << 16, 0) is None  # not a tile
    info = src.info()
    assert (info.layer, info.minzoom, info.maxzoom) == ("buildings", 14, 16)
    assert info.vector_layers[0]["fields"]["height"] == "Number"


def test_source_is_thread_safe(built, target_tile):
    _, out, _ = built
    src = PMTilesSource(out)
    z, x, y = target_tile
    keys = [(z, x + dx, y + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)] * 20
    expected = {k: src.tile(*k) for k in set(keys)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda k: src.tile(*k), keys))
    assert got == [expected[k] for k in keys]


def test_source_sees_a_rebuild(tmp_path, buildings, target_tile):
    store = GeoPackageStore(tmp_path / "store.gpkg")
    store.publish("buildings", buildings)
    out = tmp_path / "buildings.pmtiles"
    build_pmtiles(store, "buildings", out, 14, 16, ["name"], progress=False)
    src = PMTilesSource(out)
    seed = src.info().etag_seed
    first = interior_ids(decode(src.tile(*target_tile))["buildings"])

    fewer = buildings.iloc[::2].reset_index(drop=True)
    store.publish("buildings", fewer)
    build_pmtiles(store, "buildings", out, 14, 16, ["name"], progress=False)
    assert src.info().etag_seed != seed
    second = interior_ids(decode(src.tile(*target_tile))["buildings"])
    assert second == first & set(fewer["id"])
    assert len(second) < len(first)


# -- PostGIS source ---------------------------------------------------------------------
@pytest.mark.postgis
def test_postgis_tile_matches_the_independent_expectation(pg_db_url, buildings, target_tile):
    from pipelines.store.postgis import PostGISStore
    from tiles.postgis_source import PostGISTileSource

    store = PostGISStore(pg_db_url)
    try:
        store.publish("buildings", buildings)
        src = PostGISTileSource(store.pool, "buildings", 14, 16, ["name"])
        z, x, y = target_tile
        layers = decode(src.tile(z, x, y))
        assert list(layers) == ["buildings"]
        tile = shapely.box(*tile_lonlat_bounds(z, x, y))
        expected = set(buildings.loc[shapely.intersects(buildings.geometry.values, tile), "id"])
        assert len(expected) > 100
        assert interior_ids(layers["buildings"]) == expected
        assert all(set(f["properties"]) == {"id", "name"} for f in layers["buildings"]["features"])

        assert src.tile(z, x + 40, y) is None
        assert src.tile(10, x >> 6, y >> 6) is None  # below minzoom

        info = src.info()
        assert info.bounds == pytest.approx(tuple(buildings.total_bounds), abs=1e-9)
        assert info.vector_layers[0]["fields"] == {"id": "String", "name": "String"}
        seed = info.etag_seed
        store.publish("buildings", buildings.iloc[::2].reset_index(drop=True))
        assert src.info().etag_seed != seed
        assert len(interior_ids(decode(src.tile(z, x, y))["buildings"])) < len(expected)
    finally:
        store.close()


@pytest.mark.postgis
def test_postgis_dense_tile_keeps_the_largest_features_under_the_limit(pg_db_url):
    """A z13 tile over 20k footprints with long text is ~2 MB of MVT; made per request it is
    cut to the limit by leaving out the smallest footprints, like the PMTiles build does."""
    from pipelines.store.postgis import PostGISStore
    from tiles.postgis_source import PostGISTileSource

    z, (x, y) = 13, lonlat_to_tile(*SEOUL, 13)
    west, south, east, north = tile_lonlat_bounds(z, x, y)
    n = 20_000
    rng = np.random.default_rng(5)
    cx, cy = rng.uniform(west + 0.001, east - 0.001, n), rng.uniform(south + 0.001, north - 0.001, n)
    size = rng.uniform(0.00001, 0.0002, n)
    gdf = gpd.GeoDataFrame(
        {"id": [f"p{i:05d}" for i in range(n)],
         "note": [f"{i:05d} " + "a long attribute value that does not compress away " * 2 for i in range(n)]},
        geometry=shapely.box(cx, cy, cx + size, cy + size * 0.8), crs="EPSG:4326")
    store = PostGISStore(pg_db_url)
    try:
        store.publish("dense", gdf)
        unlimited = PostGISTileSource(store.pool, "dense", 12, 16, max_tile_bytes=10**9).tile(z, x, y)
        assert len(unlimited) > LIMIT  # the case the limit is for
        assert len(decode(unlimited)["dense"]["features"]) > 0.99 * n  # a few collapse below a tile pixel

        data = PostGISTileSource(store.pool, "dense", 12, 16).tile(z, x, y)
        assert len(data) <= LIMIT
        kept = {f["properties"]["id"] for f in decode(data)["dense"]["features"]}
        assert n // 10 < len(kept) < n
        area = pd.Series(shapely.area(gdf.to_crs(3857).geometry.values), index=gdf["id"])  # as the build ranks
        dropped = area.drop(index=list(kept))
        assert area[list(kept)].min() >= dropped.max()  # the largest were kept
    finally:
        store.close()


@pytest.mark.postgis
def test_postgis_rebuild_is_byte_identical_after_rows_move(pg_db_url, tmp_path):
    """Equal-size footprints tie on the largest-first order; a build from PostGIS must not follow
    the table's physical row order, which an UPDATE changes (the updated rows move to the end)."""
    from psycopg import connect, sql

    from pipelines.store.postgis import PostGISStore

    side = 0.0001
    cells = [(SEOUL[0] + i * side * 1.5, SEOUL[1] + j * side * 1.5) for i in range(40) for j in range(40)]
    squares = gpd.GeoDataFrame({"id": [f"b{k}" for k in range(len(cells))], "name": ["same"] * len(cells)},
                               geometry=[shapely.box(x, y, x + side, y + side) for x, y in cells], crs="EPSG:4326")
    store = PostGISStore(pg_db_url)
    try:
        store.publish("squares", squares)
        first, second = tmp_path / "a.pmtiles", tmp_path / "b.pmtiles"
        build_pmtiles(store, "squares", first, 12, 15, ["name"], progress=False)
        with connect(pg_db_url, autocommit=True) as conn:
            schema, name = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                                        "WHERE table_name = 'squares'").fetchone()
            conn.execute(sql.SQL("UPDATE {}.{} SET name = name WHERE id < 'b5'").format(
                sql.Identifier(schema), sql.Identifier(name)))
        build_pmtiles(store, "squares", second, 12, 15, ["name"], progress=False)
        assert first.read_bytes() == second.read_bytes()
    finally:
        store.close()

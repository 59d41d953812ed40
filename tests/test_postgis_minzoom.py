"""PostGIS tiles thinned at publish time: each feature's first drawn zoom and its Web Mercator
geometry are stored in the layer's tiling side table, and the tiles follow the PMTiles build's rules.

The layer is generated here: rotated rectangles from 0.3 m to 90 m across, so that every zoom
from 10 to 16 has features too small to draw. The PMTiles archive is built from the same store
table; tiles are decoded with mapbox_vector_tile and feature sizes measured with pyproj.
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import psycopg
import pytest
import shapely
from psycopg import sql
from psycopg_pool import ConnectionPool
from pyproj import Transformer

from api.features_plan import _dropped
from api.features_sql import read_columns
from pipelines.store.postgis import HIDDEN_COLUMNS, MERCATOR_COLUMN, MINZOOM_COLUMN, PostGISStore, tiling_table
from test_tiles import SEOUL, archive_tiles, decode
from tiles.mvt_geometry import EXTENT, tile_size
from tiles.pmtiles_build import build_pmtiles
from tiles.postgis_source import PostGISTileSource

pytestmark = pytest.mark.postgis

ZOOMS = range(10, 17)


def dense_layer(n: int = 6000, seed: int = 3) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    x = SEOUL[0] + rng.uniform(-0.02, 0.02, n)
    y = SEOUL[1] + rng.uniform(-0.015, 0.015, n)
    side = np.exp(rng.uniform(np.log(0.000003), np.log(0.0008), n))
    boxes = shapely.box(x, y, x + side, y + side * rng.uniform(0.3, 1.0, n))
    turned = [shapely.affinity.rotate(b, a) for b, a in zip(boxes, rng.uniform(0, 180, n))]
    return gpd.GeoDataFrame({"id": [f"f{i:05d}" for i in range(n)], "kind": rng.choice(["a", "b", "c"], n)},
                            geometry=turned, crs="EPSG:4326")


def minzooms(url: str, layer: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(sql.SQL("SELECT id, {} FROM {}").format(
            sql.Identifier(MINZOOM_COLUMN), sql.Identifier(tiling_table(layer)))).fetchall()
    return dict(rows)


def tile_ids(data: bytes | None, layer: str) -> set[str]:
    return {f["properties"]["id"] for f in decode(data or b"").get(layer, {"features": []})["features"]}


def merc_extent_units(gdf: gpd.GeoDataFrame, z: int) -> np.ndarray:
    """Width and height of each feature's Web Mercator bbox in tile units of zoom ``z``."""
    to_merc = Transformer.from_crs(4326, 3857, always_xy=True)
    b = gdf.geometry.bounds.to_numpy()
    x0, y0 = to_merc.transform(b[:, 0], b[:, 1])
    x1, y1 = to_merc.transform(b[:, 2], b[:, 3])
    return np.c_[np.asarray(x1) - x0, np.asarray(y1) - y0] * EXTENT / tile_size(z)


@pytest.fixture
def published(pg_db_url, tmp_path):
    layer = dense_layer()
    store = PostGISStore(pg_db_url)
    store.publish("dense", layer)
    pool = ConnectionPool(pg_db_url, min_size=1, max_size=2, open=True)
    try:
        yield store, pool, layer, tmp_path
    finally:
        pool.close()
        store.close()


def test_tiles_follow_the_pmtiles_build(published, pg_db_url):
    store, pool, layer, tmp_path = published
    report = build_pmtiles(store, "dense", tmp_path / "d.pmtiles", 10, 16, None, progress=False)
    assert all(r.dropped_for_size == 0 for r in report.zooms)  # under the budget: only size drops
    first = minzooms(pg_db_url, "dense")
    assert set(first) == set(layer["id"])
    built: dict[int, dict[tuple[int, int], set[str]]] = {}
    for (z, x, y), raw in archive_tiles(tmp_path / "d.pmtiles"):
        built.setdefault(z, {})[(x, y)] = tile_ids(raw, "dense")
    source = PostGISTileSource(pool, "dense", 10, 16)
    assert source.stored_mercator
    by_id = layer.set_index("id")
    for z in ZOOMS:
        drawn = set().union(*built[z].values())
        # the stored first zoom is the build's own "too small to draw": nothing is drawn before
        # it, everything at it (later zooms may still round a tiny feature away)
        assert drawn <= {i for i, m in first.items() if m <= z}, z
        assert {i for i, m in first.items() if m == z} <= drawn, z
        live = {xy: tile_ids(source.tile(z, *xy), "dense") for xy in built[z]}
        served = set().union(*live.values())
        assert served <= {i for i, m in first.items() if m <= z}, z  # the query's filter
        # what only the live tile draws was drawn by the build at an earlier zoom, and its rounding
        # at z left nothing (PostGIS rounds after making the geometry valid, which can keep it)
        assert all(first[i] < z for i in served - drawn), z
        # what only the build draws is a few tile units at most: PostGIS's ST_AsMVTGeom drops
        # more of the shapes that round to a sliver (it snaps, then makes the result valid)
        only_built = sorted(drawn - served)
        span = merc_extent_units(by_id.loc[only_built].reset_index(), z)
        assert (span.min(axis=1) < 4).all(), (z, span.min(axis=1).max())
    # the full-detail zoom holds every feature in the build; live, all but a few slivers under
    # 4 tile units that ST_AsMVTGeom snaps flat (without the stored columns as well: the test below)
    assert set().union(*built[16].values()) == set(layer["id"])
    missing = sorted(set(layer["id"]) - live_ids(source, 16, built[16]))
    assert len(missing) < 0.001 * len(layer)
    assert (merc_extent_units(by_id.loc[missing].reset_index(), 16) < 4).all()


def live_ids(source: PostGISTileSource, z: int, tiles) -> set[str]:
    return set().union(*(tile_ids(source.tile(z, x, y), source.layer) for x, y in tiles))


def test_republishing_recomputes_the_columns(published, pg_db_url):
    """Features shrunk to a few centimetres and others moved: the stored zoom and geometry follow."""
    store, pool, layer, _ = published
    before = minzooms(pg_db_url, "dense")
    big = [i for i, m in before.items() if m <= 10][:20]
    changed = layer.copy()
    rows = changed["id"].isin(big)
    centres = changed.loc[rows].geometry.centroid
    changed.loc[rows, "geometry"] = shapely.box(centres.x, centres.y, centres.x + 3e-7, centres.y + 3e-7)
    moved = layer["id"].iloc[-1]
    changed.loc[changed["id"] == moved, "geometry"] = shapely.box(SEOUL[0] + 0.05, SEOUL[1] + 0.05,
                                                                  SEOUL[0] + 0.0505, SEOUL[1] + 0.0505)
    store.publish("dense", changed)
    after = minzooms(pg_db_url, "dense")
    assert all(after[i] > 14 for i in big)  # 3 cm at z14 is 0.05 tile units
    source = PostGISTileSource(pool, "dense", 10, 16)
    z = 12
    x, y = _tile_of(SEOUL[0], SEOUL[1], z)
    assert not set(big) & tile_ids(source.tile(z, x, y), "dense")
    mx, my = _tile_of(SEOUL[0] + 0.0502, SEOUL[1] + 0.0502, 16)
    assert moved in tile_ids(source.tile(16, mx, my), "dense")


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    from test_tiles import lonlat_to_tile
    return lonlat_to_tile(lon, lat, z)


@pytest.mark.parametrize("inside", [False, True], ids=["no-tiling-columns", "tiling-columns-inside"])
def test_an_old_table_still_serves_tiles(published, pg_db_url, inside):
    """A table published before the side table is read as before: one without tiling columns,
    or one from the version that kept them inside the layer table (rebuilt here from the side table)."""
    store, pool, layer, _ = published
    new = PostGISTileSource(pool, "dense", 10, 16)
    tiles = [_tile_of(SEOUL[0] + dx, SEOUL[1] + dy, 16) for dx in (-0.01, 0, 0.01) for dy in (-0.01, 0, 0.01)]
    expected = live_ids(new, 16, tiles)
    minzoom, merc, side = sql.Identifier(MINZOOM_COLUMN), sql.Identifier(MERCATOR_COLUMN), sql.Identifier(tiling_table("dense"))
    with psycopg.connect(pg_db_url, autocommit=True) as conn:
        if inside:
            conn.execute(sql.SQL("ALTER TABLE dense ADD COLUMN {} smallint, ADD COLUMN {} geometry").format(minzoom, merc))
            conn.execute(sql.SQL("UPDATE dense d SET {mz} = s.{mz}, {g} = s.{g} FROM {side} s WHERE s.id = d.id").format(
                mz=minzoom, g=merc, side=side))
        conn.execute(sql.SQL("DROP TABLE {}").format(side))
    old = PostGISTileSource(pool, "dense", 10, 16)
    assert not old.stored_mercator
    assert list(old.fields) == ["id", "kind"] == list(new.fields)
    assert live_ids(old, 16, tiles) == expected != set()


def test_hidden_columns_stay_hidden(published, pg_db_url):
    store, pool, layer, _ = published
    assert set(store.info("dense").fields) == {"id", "kind"}
    assert list(store.read("dense").columns) == ["id", "kind", "geometry"]
    with psycopg.connect(pg_db_url) as conn:
        columns = read_columns(conn, sql.Identifier("dense"))
    assert columns.names == ("id", "kind")
    assert set(HIDDEN_COLUMNS) <= set(_dropped(None, columns)) and set(HIDDEN_COLUMNS) <= set(_dropped("kind", columns))
    props = decode(PostGISTileSource(pool, "dense", 10, 16).tile(16, *_tile_of(*SEOUL, 16)))["dense"]["features"]
    assert {k for f in props for k in f["properties"]} == {"id", "kind"}


def test_a_field_named_like_a_hidden_column_is_refused(pg_db_url):
    layer = dense_layer(10)
    layer[MINZOOM_COLUMN] = 1
    with PostGISStore(pg_db_url) as store, pytest.raises(Exception, match=f"'{MINZOOM_COLUMN}' is the store's own"):
        store.publish("dense", layer)


def test_pygeoapi_provider_hides_the_columns(published, pg_db_url):
    """Queryables (get_fields), an items page and one item through pygeoapi's provider as configured."""
    from api.providers.postgis_features import TimedPostgreSQLProvider
    from api.pygeoapi_config import postgres_data

    data, options = postgres_data(pg_db_url)
    provider = TimedPostgreSQLProvider({"name": "x", "type": "feature", "data": data, "options": options,
                                        "table": "dense", "id_field": "id", "geom_field": "geometry"})
    assert set(provider.get_fields()) == {"id", "kind"}
    page = provider.query(limit=3)
    assert [set(f["properties"]) for f in page["features"]] == [{"kind"}] * 3
    assert set(provider.get("f00001")["properties"]) == {"kind"}

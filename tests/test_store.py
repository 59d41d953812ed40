"""Behaviour of both stores (GeoPackage and PostGIS), checked with the same tests.

Expectations come from the input data through geopandas/shapely directly, never from
the store under test. PostGIS runs on the session's throw-away server.
"""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, box

from geo.errors import LayerNameError, StoreError
from pipelines.store.base import Store
from pipelines.store.gpkg import GeoPackageStore
from pipelines.store.postgis import PostGISStore

KOREAN = "세종대로 110"
BAD_NAMES = ["x; DROP TABLE y", "../etc", "Buildings", "", "1abc", "a" * 64, "with space", 'q"uote', "ü"]


# -- data ----------------------------------------------------------------------
def buildings(n: int = 60, seed: int = 7) -> gpd.GeoDataFrame:
    """Random building-like quads around Seoul City Hall, with every attribute type."""
    rng = np.random.default_rng(seed)
    cx = 126.97 + rng.uniform(0, 0.02, n)
    cy = 37.56 + rng.uniform(0, 0.02, n)
    w = rng.uniform(0.0001, 0.0008, n)
    h = rng.uniform(0.0001, 0.0008, n)
    shear = rng.uniform(-0.0004, 0.0004, n)  # skewed quads: envelope and shape differ
    geoms = [Polygon([(x - a, y - b), (x + a, y - b + s), (x + a, y + b + s), (x - a, y + b)])
             for x, y, a, b, s in zip(cx, cy, w, h, shear)]
    # One long thin diagonal sliver: its envelope covers much more than the shape.
    geoms[0] = Polygon([(126.970, 37.560), (126.9901, 37.5800), (126.9900, 37.5801)])
    height = rng.uniform(3, 120, n).round(3)
    height[::9] = np.nan
    names = [f"건물 {i}" if i % 5 else None for i in range(n)]
    names[1] = KOREAN
    return gpd.GeoDataFrame(
        {
            "id": [f"b{i:04d}" for i in range(n)],
            "name": names,
            "height": height,
            "floors": rng.integers(1, 40, n),
            "is_public": rng.random(n) < 0.3,
        },
        geometry=geoms,
        crs="EPSG:4326",
    )


def by_id(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    return gdf.sort_values("id").reset_index(drop=True)


def assert_same_features(got: gpd.GeoDataFrame, want: gpd.GeoDataFrame) -> None:
    """Same ids, exactly the same geometries, same attribute values (NaN/None as missing)."""
    got, want = by_id(got), by_id(want)
    assert list(got["id"]) == list(want["id"])
    assert got.crs.to_epsg() == 4326
    assert shapely.equals_exact(got.geometry.values, want.geometry.values, tolerance=0).all()
    for col in want.columns.drop(["id", "geometry"]):
        g, w = got[col], want[col]
        assert list(g.isna()) == list(w.isna()), col
        present = ~w.isna()
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g[present].astype(float), w[present], rtol=0, atol=0)
        else:
            assert list(g[present]) == list(w[present]), col


# -- the two stores --------------------------------------------------------------
@pytest.fixture(params=["gpkg", pytest.param("postgis", marks=pytest.mark.postgis)])
def store(request, tmp_path: Path):
    if request.param == "gpkg":
        s: Store = GeoPackageStore(tmp_path / "build" / "citytwin.gpkg")
    else:
        s = PostGISStore(request.getfixturevalue("pg_db_url"))
    yield s
    s.close()


def snapshot(store: Store) -> object:
    """Everything a store has written: file bytes (GeoPackage) or table list + rows (PostGIS)."""
    if isinstance(store, GeoPackageStore):
        d = store.path.parent
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())} if d.exists() else {}
    with store.pool.connection() as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                              "AND tablename <> 'spatial_ref_sys' ORDER BY 1").fetchall()
        rows = {}
        for (t,) in tables:
            q = psycopg.sql.SQL("SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {} AS x")
            rows[t] = conn.execute(q.format(psycopg.sql.Identifier(t))).fetchone()[0]
        return rows


def leftovers(store: Store) -> list[str]:
    """Staging tables or temporary files a publish left behind."""
    if isinstance(store, GeoPackageStore):
        keep = {store.path.name, store.path.with_suffix(".lock").name}
        return sorted(p.name for p in store.path.parent.iterdir() if p.name not in keep)
    with store.pool.connection() as conn:
        rows = conn.execute("SELECT relname FROM pg_class WHERE relname LIKE '\\_stage\\_%'").fetchall()
    return [r[0] for r in rows]


# -- shared behaviour ----------------------------------------------------------------
def test_publish_info_matches_input(store: Store):
    gdf = buildings()
    info = store.publish("buildings", gdf)
    assert info == store.info("buildings")
    assert info.count == len(gdf)
    np.testing.assert_allclose(info.bounds, gdf.total_bounds, rtol=0, atol=1e-12)
    assert info.geometry_type == "Polygon"
    assert info.fields == {"id": "string", "name": "string", "height": "number",
                           "floors": "integer", "is_public": "boolean"}
    assert store.layers() == ["buildings"]


def test_read_returns_what_was_published(store: Store):
    gdf = buildings()
    store.publish("buildings", gdf)
    got = store.read("buildings")
    assert set(got.columns) == set(gdf.columns)
    assert_same_features(got, gdf)


def test_read_bbox_returns_exactly_the_intersecting_features(store: Store):
    gdf = buildings()
    store.publish("buildings", gdf)
    bbox = (126.982, 37.562, 126.989, 37.570)  # below the sliver's diagonal
    hits = shapely.intersects(gdf.geometry.values, box(*bbox))
    envelope_hits = shapely.intersects(gdf.geometry.envelope.values, box(*bbox))
    # The data must make the test meaningful: some but not all hit, and the sliver's
    # envelope overlaps the bbox while the sliver itself does not.
    assert 0 < hits.sum() < len(gdf)
    assert envelope_hits[0] and not hits[0]
    got = store.read("buildings", bbox=bbox)
    assert sorted(got["id"]) == sorted(gdf.loc[hits, "id"])
    assert_same_features(got, gdf[hits])


def test_row_slices_add_up_to_the_whole_read(store: Store):
    gdf = buildings()
    store.publish("buildings", gdf)
    whole = store.read("buildings")
    parts = [store.read("buildings", rows=r) for r in ((0, 17), (17, 17), (17, 40), (40, None))]
    assert [len(p) for p in parts] == [17, 0, 23, len(gdf) - 40]
    for part, start in zip(parts, (0, 17, 17, 40)):  # each the whole read's rows, in its order
        assert list(part["id"]) == list(whole["id"][start:start + len(part)])
        assert_same_features(part, whole.iloc[start:start + len(part)])
    assert len(store.read("buildings", rows=(55, 1000))) == len(gdf) - 55
    assert len(store.read("buildings", rows=(len(gdf), None))) == 0
    for bad in ((-1, 3), (5, 2)):
        with pytest.raises(StoreError, match="no slice of a layer"):
            store.read("buildings", rows=bad)
    with pytest.raises(StoreError, match="bbox or a slice"):
        store.read("buildings", bbox=(126.9, 37.5, 127.0, 37.6), rows=(0, 5))


def test_count_bbox_is_the_envelopes_meeting_it(store: Store):
    gdf = buildings()
    store.publish("buildings", gdf)
    bbox = (126.982, 37.562, 126.989, 37.570)
    envelope_hits = shapely.intersects(gdf.geometry.envelope.values, box(*bbox))
    assert 0 < envelope_hits.sum() < len(gdf)
    assert store.count("buildings", bbox) == envelope_hits.sum()  # the sliver's envelope counts: an estimate
    assert store.count("buildings", (10.0, 10.0, 10.1, 10.1)) == 0
    assert store.count("buildings", (126.0, 37.0, 128.0, 38.0)) == len(gdf)
    for bad in [(1, 2, 3), (127.0, 37.0, 126.0, 38.0), (float("nan"), 37.0, 127.0, 38.0), ("a", 1, 2, 3)]:
        with pytest.raises(StoreError, match="bbox"):
            store.count("buildings", bad)


def test_read_bbox_with_no_hits_keeps_the_columns(store: Store):
    gdf = buildings()
    store.publish("buildings", gdf)
    got = store.read("buildings", bbox=(10.0, 10.0, 10.1, 10.1))
    assert len(got) == 0
    assert list(got.columns) == list(store.read("buildings").columns)
    assert got.crs.to_epsg() == 4326


def test_republish_replaces_the_layer(store: Store):
    first = buildings(60, seed=1)
    store.publish("buildings", first)
    second = buildings(25, seed=2).drop(columns=["floors"]).assign(roof=lambda d: ["flat"] * len(d))
    second["id"] = [f"n{i}" for i in range(len(second))]
    info = store.publish("buildings", second)
    assert info.count == 25
    assert "floors" not in info.fields and info.fields["roof"] == "string"
    np.testing.assert_allclose(info.bounds, second.total_bounds, rtol=0, atol=1e-12)
    assert_same_features(store.read("buildings"), second)
    assert store.layers() == ["buildings"]
    assert leftovers(store) == []


def test_korean_text_round_trips(store: Store):
    gdf = gpd.GeoDataFrame(
        {"id": ["k1", "k2"], "도로명주소": [KOREAN, "세종특별자치시 한누리대로 2130"], "name": [KOREAN, "서울"]},
        geometry=[Point(126.9779, 37.5663), Point(127.2890, 36.4800)], crs="EPSG:4326",
    )
    info = store.publish("addresses", gdf)
    assert info.fields["도로명주소"] == "string"
    got = by_id(store.read("addresses"))
    assert list(got["도로명주소"]) == [KOREAN, "세종특별자치시 한누리대로 2130"]
    assert list(got["name"]) == [KOREAN, "서울"]


def test_geometry_type_labels_agree(store: Store):
    mixed = gpd.GeoDataFrame(
        {"id": ["p", "m"]},
        geometry=[box(0, 0, 1, 1), MultiPolygon([box(2, 2, 3, 3), box(4, 4, 5, 5)])], crs="EPSG:4326",
    )
    assert store.publish("mixed", mixed).geometry_type == "Unknown"
    points3d = gpd.GeoDataFrame({"id": ["a", "b"]}, geometry=[Point(1, 2, 3), Point(4, 5, 6.5)], crs="EPSG:4326")
    assert store.publish("points3d", points3d).geometry_type == "Point Z"
    got = by_id(store.read("points3d"))
    assert shapely.get_coordinates(got.geometry.values, include_z=True).tolist() == [[1, 2, 3], [4, 5, 6.5]]


def test_empty_layer(store: Store):
    empty = gpd.GeoDataFrame({"id": pd.Series([], dtype=str)}, geometry=[], crs="EPSG:4326")
    info = store.publish("empty", empty)
    assert info.count == 0 and np.isnan(info.bounds).all()
    got = store.read("empty")
    assert len(got) == 0 and list(got.columns) == ["id", "geometry"]


def _surrogate_at_end(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    # A lone surrogate cannot be encoded as UTF-8: the write fails at the last feature,
    # after the others have been sent.
    bad = gdf.copy()
    bad["name"] = [f"새 이름 {i}" for i in range(len(bad))]
    bad.loc[bad.index[-1], "name"] = "broken \ud800"
    return bad


def test_failed_publish_leaves_previous_layer_untouched(store: Store):
    good = buildings()
    store.publish("buildings", good)
    before = snapshot(store)
    with pytest.raises(StoreError, match="buildings"):
        store.publish("buildings", _surrogate_at_end(buildings(200, seed=3)))
    assert snapshot(store) == before
    assert leftovers(store) == []
    assert store.info("buildings").count == len(good)
    assert_same_features(store.read("buildings"), good)


def test_failed_first_publish_creates_nothing(store: Store):
    with pytest.raises(StoreError):
        store.publish("buildings", _surrogate_at_end(buildings()))
    assert store.layers() == []
    with pytest.raises(StoreError, match="buildings"):
        store.info("buildings")
    if isinstance(store, GeoPackageStore):
        assert not store.path.exists()
        if not store.path.parent.exists():
            return
    assert leftovers(store) == []


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_layer_names_are_refused(store: Store, bad: str):
    store.publish("y", buildings(5))
    before = snapshot(store)
    with pytest.raises(LayerNameError, match="not allowed"):
        store.publish(bad, buildings(5))
    with pytest.raises(LayerNameError):
        store.read(bad)
    with pytest.raises(LayerNameError):
        store.info(bad)
    assert snapshot(store) == before
    assert store.layers() == ["y"]


def test_unknown_layer_is_a_store_error(store: Store):
    with pytest.raises(StoreError, match="'nothing_here'.*ingest it first"):
        store.read("nothing_here")


def test_non_wgs84_data_is_refused(store: Store):
    with pytest.raises(StoreError, match="EPSG:4326"):
        store.publish("buildings", buildings().to_crs("EPSG:5186"))
    assert store.layers() == []


# -- PostGIS only ------------------------------------------------------------------------
@pytest.fixture
def pg(pg_db_url: str):
    s = PostGISStore(pg_db_url)
    yield s
    s.close()


def _indexes(store: PostGISStore, table: str) -> dict[str, str]:
    with store.pool.connection() as conn:
        rows = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                            "AND tablename = %s", [table]).fetchall()
    return dict(rows)


def test_postgis_table_has_gist_index_and_primary_key(pg: PostGISStore):
    for _ in range(2):  # the second publish goes through the rename path with an old table present
        pg.publish("buildings", buildings())
        idx = _indexes(pg, "buildings")
        assert any("USING gist (geometry)" in d for d in idx.values()), idx
        assert set(idx) == {"buildings_pkey", "buildings_geometry_idx"}
        # the tile server's side table: Web Mercator geometry (GiST) and first drawn zoom
        side = _indexes(pg, "_citytwin_tiling_buildings")
        assert set(side) == {f"_citytwin_tiling_buildings{s}" for s in ("_geom3857_idx", "_minzoom_idx")}
        assert any("USING gist (_citytwin_geom_3857)" in d for d in side.values()), side
        with pg.pool.connection() as conn:
            pk = conn.execute(
                "SELECT a.attname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid "
                "AND a.attnum = ANY (c.conkey) WHERE c.conrelid = 'public.buildings'::regclass AND c.contype = 'p'"
            ).fetchall()
            geom = conn.execute("SELECT type, srid FROM geometry_columns WHERE f_table_name = 'buildings' "
                                "ORDER BY f_geometry_column = 'geometry' DESC").fetchall()
            types = dict(conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'buildings'"
            ).fetchall())
        assert pk == [("id",)]
        # one geometry column, as other tools (tipg, pygeoapi, QGIS, ogr2ogr) expect
        assert geom == [("POLYGON", 4326)]
        assert types == {"id": "text", "name": "text", "height": "double precision", "floors": "bigint",
                         "is_public": "boolean", "geometry": "USER-DEFINED"}


def test_postgis_readers_see_the_old_layer_until_the_swap_commits(pg: PostGISStore, pg_db_url: str):
    old, new = buildings(20, seed=1), buildings(30, seed=2)
    pg.publish("buildings", old)
    outcome: list[object] = []

    def publish_new() -> None:
        try:
            outcome.append(pg.publish("buildings", new))
        except Exception as exc:  # handed to the main thread
            outcome.append(exc)

    with psycopg.connect(pg_db_url) as reader, psycopg.connect(pg_db_url, autocommit=True) as watcher:
        # An open read transaction holds the old table: the swap must wait for it.
        assert reader.execute("SELECT count(*) FROM buildings").fetchone()[0] == 20
        publisher = threading.Thread(target=publish_new)
        publisher.start()
        deadline = time.monotonic() + 120  # a bound on the wait, not a timing assertion
        while not watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted "
                                  "AND relation = 'public.buildings'::regclass").fetchone()[0]:
            assert publisher.is_alive(), outcome
            assert time.monotonic() < deadline, "the publisher never reached the swap"
            time.sleep(0.05)
        # The new data is loaded and indexed, yet nothing of it is visible.
        assert reader.execute("SELECT count(*) FROM buildings").fetchone()[0] == 20
        assert watcher.execute("SELECT version FROM citytwin_layers WHERE name = 'buildings'").fetchone() == (1,)
        assert watcher.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '\\_stage\\_%'").fetchone() == (0,)
        reader.rollback()
        publisher.join(120)
    assert not publisher.is_alive()
    assert outcome and outcome[0] == pg.info("buildings")
    assert pg.version("buildings") == 2
    assert_same_features(pg.read("buildings"), new)


def test_postgis_layer_mixing_2d_and_3d_round_trips(pg: PostGISStore):
    gdf = gpd.GeoDataFrame({"id": ["flat", "tall"]}, geometry=[Point(1, 2), Point(3, 4, 5)], crs="EPSG:4326")
    info = pg.publish("mixed_dims", gdf)
    assert (info.count, info.geometry_type) == (2, "Unknown")
    got = by_id(pg.read("mixed_dims"))
    assert list(shapely.has_z(got.geometry.values)) == [False, True]
    assert shapely.get_coordinates(got.geometry.values[1:], include_z=True).tolist() == [[3, 4, 5]]


def test_postgis_long_layer_name_keeps_distinct_index_names(pg: PostGISStore):
    name = "l" * 63
    pg.publish(name, buildings(5))
    pg.publish(name, buildings(6))
    idx = _indexes(pg, name)
    assert len(idx) == 2 and all(len(i) <= 63 for i in idx)
    with pg.pool.connection() as conn:  # the tiling side table, its name shortened with a hash
        side = conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE '\\_citytwin\\_tiling\\_%'").fetchall()
    assert len(side) == 1 and len(side[0][0]) == 63
    side_idx = _indexes(pg, side[0][0])
    assert len(side_idx) == 2 and all(len(i) <= 63 for i in side_idx)
    assert pg.info(name).count == 6


def test_postgis_version_counts_publishes(pg: PostGISStore):
    pg.publish("buildings", buildings())
    assert pg.version("buildings") == 1
    pg.publish("buildings", buildings(10))
    assert pg.version("buildings") == 2
    with pytest.raises(StoreError):
        pg.publish("buildings", _surrogate_at_end(buildings()))
    assert pg.version("buildings") == 2
    with pg.pool.connection() as conn:
        row = conn.execute("SELECT geometry_type, updated_at IS NOT NULL FROM citytwin_layers "
                           "WHERE name = 'buildings'").fetchone()
    assert row == ("Polygon", True)


def _nul_byte(gdf):
    gdf = gdf.copy()
    gdf.loc[gdf.index[-1], "name"] = "nul \x00 byte"
    return gdf


def _duplicate_id(gdf):
    gdf = gdf.copy()
    gdf.loc[gdf.index[-1], "id"] = gdf["id"].iloc[0]
    return gdf


def _bigint_overflow(gdf):
    gdf = gdf.copy()
    gdf["floors"] = np.arange(len(gdf), dtype="uint64")
    gdf.loc[gdf.index[-1], "floors"] = np.uint64(2**64 - 1)  # too big for bigint
    return gdf


@pytest.mark.parametrize("spoil, message", [
    (_nul_byte, r"field 'name' of feature id 'b0199' holds a NUL character"),
    (_duplicate_id, r"ids must be unique, but id 'b0000' is used by 2 features"),
])
def test_both_stores_refuse_repeated_ids_and_nul_text_alike(store: Store, spoil, message: str):
    """GeoPackage once kept repeated ids and cut text at a NUL where PostGIS refused them."""
    good = buildings()
    store.publish("buildings", good)
    before = snapshot(store)
    with pytest.raises(StoreError, match=message):
        store.publish("buildings", spoil(buildings(200, seed=5)))
    assert snapshot(store) == before
    assert leftovers(store) == []
    assert_same_features(store.read("buildings"), good)


def test_postgis_failure_midway_rolls_back(pg: PostGISStore):
    good = buildings()
    pg.publish("buildings", good)
    before = snapshot(pg)
    with pytest.raises(StoreError, match="b0199"):  # COPY fails on the last row, server-side
        pg.publish("buildings", _bigint_overflow(buildings(200, seed=5)))
    assert snapshot(pg) == before
    assert leftovers(pg) == []
    assert pg.version("buildings") == 1
    assert_same_features(pg.read("buildings"), good)


def test_postgis_refuses_to_replace_a_table_it_did_not_publish(pg: PostGISStore):
    with pg.pool.connection() as conn:
        conn.execute("CREATE TABLE roads (name text)")
        conn.execute("INSERT INTO roads VALUES ('세종대로')")
    with pytest.raises(StoreError, match="not published by citytwin"):
        pg.publish("roads", buildings(3))
    with pg.pool.connection() as conn:
        assert conn.execute("SELECT name FROM roads").fetchall() == [("세종대로",)]
    assert pg.layers() == []


def test_postgis_unreachable_database_names_host_not_password(free_port):
    port = free_port()  # nothing listens there
    store = PostGISStore(f"postgresql://citytwin:s3cret-pw@127.0.0.1:{port}/citydb")
    with pytest.raises(StoreError) as err:
        store.layers()
    msg = str(err.value)
    assert f"127.0.0.1:{port}/citydb" in msg and "citytwin@" in msg
    assert "s3cret-pw" not in msg
    assert "CITYTWIN_DATABASE_URL" in msg


def test_postgis_missing_database_is_named(pg_db_url: str):
    from postgis_server import with_dbname

    store = PostGISStore(with_dbname(pg_db_url, "no_such_db"))
    with pytest.raises(StoreError, match=r"/no_such_db: .*does not exist"):
        store.info("buildings")


def test_postgis_refuses_objects_it_cannot_store_as_text(pg: PostGISStore):
    gdf = buildings(4)
    gdf["extra"] = [{"a": 1}, "ok", "ok", "ok"]
    with pytest.raises(StoreError, match="'extra' of feature id 'b0000' holds a dict"):
        pg.publish("buildings", gdf)
    assert pg.layers() == []

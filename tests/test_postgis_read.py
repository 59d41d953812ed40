"""PostGISStore.read fetches a layer in batches: the result must be the frame that building it
from all rows at once gives (same columns, dtypes, values, order, index and CRS)."""
from __future__ import annotations

import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pytest
import shapely
from geopandas.testing import assert_geoseries_equal
from psycopg import sql
from shapely.geometry import Point, Polygon

import pipelines.store.postgis as postgis
from pipelines.store.base import GEOMETRY_COLUMN, STORE_CRS
from pipelines.store.postgis import PostGISStore

N = 11  # with a batch of 3 rows: four batches, the last one short
BATCH = 3
BBOX = (126.95, 37.45, 126.985, 37.55)  # holds rows 5..8 (lon 126.90 + 0.01 * i, squares 0.004 wide)


def every_type() -> gpd.GeoDataFrame:
    """Each column type the store publishes, with NULLs placed so that some batches hold none,
    some only NULLs, and one column is NULL throughout."""
    i = np.arange(N)
    late_null = i >= 9  # the last batch only
    early_null = i < BATCH  # the whole first batch
    return gpd.GeoDataFrame({
        "id": [f"b{k:02d}" for k in i[::-1]],  # ids descend: the read's id order is not the table's
        "name": [None if k in (1, 7) else f"건물 {k}" for k in i],
        "name_late": [None if n else f"x{k}" for k, n in zip(i, early_null)],
        "nothing": [None] * N,  # text, NULL in every row
        "height": [np.nan if k == 4 else 3.25 * k for k in i],
        "height_none": [np.nan] * N,
        "floors": i * 1_000_000_007,
        "floors_late_null": pd.array([None if n else k for k, n in zip(i, late_null)], dtype="Int64"),
        "floors_early_null": pd.array([None if n else k for k, n in zip(i, early_null)], dtype="Int64"),
        "listed": i % 2 == 0,
        "listed_null": pd.array([None if k == 5 else k % 3 == 0 for k in i], dtype="boolean"),
        "surveyed": pd.to_datetime([None if k == 2 else f"2024-03-{k + 1:02d}T10:30:00" for k in i]),
        "opened": [None if k == 6 else dt.date(2000 + k, 1, 2) for k in i],
    }, geometry=[Polygon([(126.90 + 0.01 * k, 37.5), (126.904 + 0.01 * k, 37.5), (126.904 + 0.01 * k, 37.504)])
                 if k % 3 else Point(126.90 + 0.01 * k, 37.5) for k in i], crs=STORE_CRS)


def read_at_once(url: str, layer: str, bbox=None) -> gpd.GeoDataFrame:
    """The frame as reads made it before batching: every row fetched, then pandas infers each column."""
    with psycopg.connect(url) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum", [layer]).fetchall()]
        select = sql.SQL(", ").join(
            sql.SQL("ST_AsBinary({0}) AS {0}").format(sql.Identifier(c)) if c == GEOMETRY_COLUMN
            else sql.Identifier(c) for c in columns)
        q = sql.SQL("SELECT {} FROM {}").format(select, sql.Identifier(layer))
        if bbox is not None:
            q += sql.SQL(" WHERE ST_Intersects(geometry, ST_MakeEnvelope(%s, %s, %s, %s, 4326))")
        rows = conn.execute(q + sql.SQL(" ORDER BY id"), list(bbox or [])).fetchall()
    data = {}
    for j, col in enumerate(columns):
        values = [r[j] for r in rows]
        data[col] = (gpd.GeoSeries(shapely.from_wkb(np.array(values, dtype=object)), crs=STORE_CRS)
                     if col == GEOMETRY_COLUMN else values)
    return gpd.GeoDataFrame(data, geometry=GEOMETRY_COLUMN, crs=STORE_CRS)


def assert_same_frame(got: gpd.GeoDataFrame, want: gpd.GeoDataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert got.dtypes.astype(str).to_dict() == want.dtypes.astype(str).to_dict()
    assert got.crs == want.crs
    assert got.index.equals(want.index) and isinstance(got.index, pd.RangeIndex)
    attrs = [c for c in want.columns if c != GEOMETRY_COLUMN]
    pd.testing.assert_frame_equal(pd.DataFrame(got[attrs]), pd.DataFrame(want[attrs]), check_exact=True)
    for col in attrs:  # None stays None and NaN stays NaN, as before
        assert [type(v) for v in got[col].tolist()] == [type(v) for v in want[col].tolist()], col
    assert_geoseries_equal(got.geometry, want.geometry, check_less_precise=False)


@pytest.fixture
def pg(pg_db_url: str):
    store = PostGISStore(pg_db_url)
    store.publish("things", every_type())
    yield store
    store.close()


@pytest.fixture
def fetches(monkeypatch) -> list[int]:
    """Rows each FETCH of a server-side cursor returned, with batches of BATCH rows."""
    monkeypatch.setattr(postgis, "READ_BATCH_ROWS", BATCH)
    sizes: list[int] = []
    fetchmany = psycopg.ServerCursor.fetchmany

    def counted(self, size: int = 0):
        rows = fetchmany(self, size)
        sizes.append(len(rows))
        return rows

    monkeypatch.setattr(psycopg.ServerCursor, "fetchmany", counted)
    return sizes


def test_a_read_in_batches_is_the_frame_read_at_once(pg: PostGISStore, pg_db_url: str, fetches: list[int]):
    got = pg.read("things")
    assert fetches == [3, 3, 3, 2, 0]  # the rows came in batches, none held all at once
    want = read_at_once(pg_db_url, "things")
    assert len(want) == N and want["id"].tolist() == sorted(want["id"].tolist())
    # the NULL patterns the batches must not change: all-NULL columns stay object, nullable ints float
    assert want["nothing"].dtype == object and want["height_none"].dtype == object
    assert want["floors_late_null"].dtype == want["floors_early_null"].dtype == "float64"
    assert want["listed_null"].dtype == object and want["floors"].dtype == "int64"
    assert_same_frame(got, want)


def test_a_bbox_read_in_batches_is_the_frame_read_at_once(pg: PostGISStore, pg_db_url: str, fetches: list[int]):
    got = pg.read("things", bbox=BBOX)
    assert sum(fetches) == len(got) == 4 and len(fetches) > 2
    assert_same_frame(got, read_at_once(pg_db_url, "things", BBOX))


def test_an_empty_read_keeps_the_layer_schema(pg: PostGISStore, fetches: list[int]):
    got = pg.read("things", bbox=(10.0, 10.0, 10.1, 10.1))
    assert len(got) == 0 and got.crs == STORE_CRS
    assert list(got.columns) == list(pg.read("things").columns)
    assert got["floors"].dtype == "int64" and got["height"].dtype == "float64" and got["listed"].dtype == bool


def test_a_statement_timeout_bounds_each_batch_not_the_whole_read(pg_db_url: str, fetches: list[int]):
    """The server's stores have a statement_timeout; a read longer than it still succeeds when
    each batch is within it (the build's store has none, but a layer read must not depend on it)."""
    PostGISStore(pg_db_url).publish("things", every_type())
    dbname = sql.Identifier(pg_db_url.rsplit("/", 1)[1])
    with psycopg.connect(pg_db_url, autocommit=True) as conn:
        # every row's WKB now takes 0.1 s to make, fetched in id order (an index scan, no sort first)
        conn.execute("CREATE SCHEMA slow")
        conn.execute("CREATE FUNCTION slow.st_asbinary(g public.geometry) RETURNS bytea LANGUAGE sql VOLATILE "
                     "AS $$ SELECT public.st_asbinary(g) FROM pg_sleep(0.1) $$")
        conn.execute(sql.SQL("ALTER DATABASE {} SET search_path = slow, public").format(dbname))
        conn.execute(sql.SQL("ALTER DATABASE {} SET enable_sort = off").format(dbname))
    timeout_ms = 700  # a batch of 3 rows takes 0.3 s, all 11 rows 1.1 s
    with psycopg.connect(pg_db_url, options=f"-c statement_timeout={timeout_ms}") as conn:
        with pytest.raises(psycopg.errors.QueryCanceled):  # all rows in one statement: too long
            conn.execute("SELECT id, ST_AsBinary(geometry) FROM things ORDER BY id").fetchall()
    store = PostGISStore(pg_db_url, statement_timeout_ms=timeout_ms)
    try:
        got = store.read("things")
    finally:
        store.close()
    assert got["id"].tolist() == sorted(every_type()["id"]) and fetches == [3, 3, 3, 2, 0]


def test_the_read_cursor_is_planned_for_all_its_rows(pg: PostGISStore, monkeypatch):
    """A server-side cursor is planned for its first rows unless told otherwise; a bbox read then
    walks the id index over the whole table instead of using the spatial index."""
    seen: list[str] = []
    execute = psycopg.ServerCursor.execute

    def noted(self, query, params=None, **kwargs):
        seen.append(self.connection.execute("SHOW cursor_tuple_fraction").fetchone()[0])
        return execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.ServerCursor, "execute", noted)
    pg.read("things", bbox=BBOX)
    assert seen == ["1"]
    # the setting ends with the read's transaction: the pooled connection's next queries plan as before
    assert pg.access.run(lambda conn: conn.execute("SHOW cursor_tuple_fraction").fetchone()[0]) == "0.1"

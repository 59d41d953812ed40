"""PostGIS tiles on the request path: read on the event loop on one connection, no transaction left behind.

The pool is a real psycopg pool on a throw-away database; its own counters (``get_stats``)
say how many times a connection was asked for. Expected tile contents come from the input
rectangles and the Web Mercator formulas (test_tiles' helpers), decoded with
mapbox_vector_tile.
"""
from __future__ import annotations

import asyncio
import json

import httpx
import psycopg
import pytest
import shapely
from psycopg import sql
from psycopg_pool import ConnectionPool

from api.tiles_routes import GZIP_ON_LOOP_BYTES
from api_server import CITY_HALL, make_project, sample_buildings, serve
from pipelines.store.postgis import PostGISStore
from test_tiles import decode, interior_ids, lonlat_to_tile, tile_lonlat_bounds
from tiles.postgis_source import PostGISTileSource

pytestmark = pytest.mark.postgis

Z = 15


@pytest.fixture
def source(pg_db_url: str):
    buildings = sample_buildings(300)
    with PostGISStore(pg_db_url) as store:
        store.publish("buildings", buildings)
    pool = ConnectionPool(pg_db_url, min_size=1, max_size=4, open=True)
    try:
        yield PostGISTileSource(pool, "buildings", 10, 16), buildings
    finally:
        pool.close()


def _expected_ids(buildings, z: int, x: int, y: int) -> set[str]:
    box = shapely.box(*tile_lonlat_bounds(z, x, y))
    return set(buildings.loc[buildings.geometry.within(box), "id"].astype(str))


def _features(data: bytes) -> list[str]:
    """The tile's features in a canonical order."""
    return sorted(json.dumps(f, sort_keys=True) for f in decode(data)["buildings"]["features"])


def test_the_event_loop_reads_version_and_tile_on_an_async_connection(source, pg_db_url):
    src, buildings = source
    x, y = lonlat_to_tile(*CITY_HALL, Z)
    inside = _expected_ids(buildings, Z, x, y)
    assert inside, "the sample city has buildings wholly inside the City Hall tile"

    async def read(store: PostGISStore):
        access = await store.async_access()
        assert access is await store.async_access()  # one pool per store
        return await access.run(lambda conn: _version_and_tile(src, conn, x, y))

    with PostGISStore(pg_db_url) as store:
        version, data = asyncio.run(read(store))
    assert version == 1
    assert inside <= interior_ids(decode(data)["buildings"])
    assert _features(data) == _features(src.tile(Z, x, y))  # the thread's read gives the same tile


async def _version_and_tile(src: PostGISTileSource, conn, x: int, y: int) -> tuple[int, bytes | None]:
    assert conn.autocommit is True  # single statements: no COMMIT round trip
    return await src.version_on(conn), await src.tile_on(conn, Z, x, y)


def test_a_tile_over_the_budget_is_thinned_alike_on_both_drivers(source, pg_db_url):
    """The 500 kB rule (here 2,000 bytes) keeps the same largest features whichever driver reads."""
    src, buildings = source
    small = PostGISTileSource(src.pool, "buildings", 10, 16, max_tile_bytes=2_000)
    x, y = lonlat_to_tile(*CITY_HALL, 14)
    full = decode(src.tile(14, x, y))["buildings"]["features"]
    threaded = small.tile(14, x, y)

    async def on_loop():
        store = PostGISStore(pg_db_url)
        try:
            access = await store.async_access()
            return await access.run(lambda conn: small.tile_on(conn, 14, x, y))
        finally:
            store.close()

    looped = asyncio.run(on_loop())
    assert len(threaded) <= 2_000 and len(looped) <= 2_000
    kept = decode(threaded)["buildings"]["features"]
    assert 0 < len(kept) < len(full)
    assert _features(looped) == _features(threaded)
    # the largest footprints by Mercator area, as the PMTiles build ranks them
    area = buildings.set_index(buildings["id"].astype(str)).to_crs(3857).area
    ids = [str(f["properties"]["id"]) for f in full]
    largest = set(area[ids].sort_values(ascending=False).index[:len(kept)])
    assert {str(f["properties"]["id"]) for f in kept} == largest


class _CountingConnection:
    """An AsyncConnection that counts the statements sent through it."""

    def __init__(self, conn):
        self.conn, self.statements = conn, 0

    async def execute(self, *args, **kwargs):
        self.statements += 1
        return await self.conn.execute(*args, **kwargs)


def test_an_over_budget_tile_is_cut_in_the_statement_that_made_it(source, pg_db_url):
    """The heaviest tiles are the slowest: their first cut reuses the rows already clipped, in the
    same statement, instead of scanning and clipping them again in a second one."""
    src, _ = source
    small = PostGISTileSource(src.pool, "buildings", 10, 16, max_tile_bytes=2_000)
    x, y = lonlat_to_tile(*CITY_HALL, 14)
    full = decode(src.tile(14, x, y))["buildings"]["features"]

    async def on_loop():
        store = PostGISStore(pg_db_url)
        try:
            access = await store.async_access()
            counting = await access.run(lambda conn: _count(small, conn, x, y))
            return counting
        finally:
            store.close()

    data, statements = asyncio.run(on_loop())
    kept = decode(data)["buildings"]["features"]
    assert len(data) <= 2_000 and 0 < len(kept) < len(full)
    assert statements == 1


async def _count(src: PostGISTileSource, conn, x: int, y: int) -> tuple[bytes | None, int]:
    counting = _CountingConnection(conn)
    data = await src.tile_on(counting, 14, x, y)
    return data, counting.statements


def test_reads_leave_the_pooled_connection_as_they_found_it(source):
    src, _ = source
    x, y = lonlat_to_tile(*CITY_HALL, Z)
    src.info(), src.tile(Z, x, y)
    with src.pool.connection() as conn:
        # the tile reads run outside a transaction; other users of the pool still get one
        assert conn.autocommit is False
        conn.execute("SELECT 1")
        assert conn.info.transaction_status.name == "INTRANS"


def test_a_version_is_read_once_until_a_publish_notifies(pg_db_url):
    """The tile route reads a layer's version once while the listener hears publishes, and
    again after each one (its NOTIFY arrives at commit)."""
    buildings = sample_buildings(20)

    async def scenario(store: PostGISStore) -> tuple[list[int], list[int]]:
        versions = store.layer_versions()
        reads: list[int] = []

        async def read() -> int:
            reads.append(store.version("buildings"))
            return reads[-1]

        for _ in range(100):  # the listener connects in the background
            if versions.listening:
                break
            await asyncio.sleep(0.05)
        assert versions.listening
        seen = [await versions.get("buildings", read) for _ in range(3)]
        await asyncio.to_thread(store.publish, "buildings", buildings)
        for _ in range(100):
            if await versions.get("buildings", read) == 2:
                break
            await asyncio.sleep(0.02)
        seen += [await versions.get("buildings", read) for _ in range(3)]
        return seen, reads

    with PostGISStore(pg_db_url) as store:
        store.publish("buildings", buildings)
        seen, reads = asyncio.run(scenario(store))
    assert seen == [1, 1, 1, 2, 2, 2]
    assert reads == [1, 2]  # one read per version: none while the version was known


def test_served_tiles_answer_alike_through_the_front_and_the_route(tmp_path, pg_db_url):
    """A real server: the first request opens the layer through the route, the next ones are
    answered in front of the middleware stack (api.tile_front) with the same tile, headers and
    errors; CORS still applies; a tile over GZIP_ON_LOOP_BYTES (packed on a thread) is intact."""
    project = tmp_path / "city"
    make_project(project, database_url=pg_db_url)
    buildings = sample_buildings(3000, seed=3)  # a z13 tile of them is over GZIP_ON_LOOP_BYTES
    with PostGISStore(pg_db_url) as store:
        store.publish("buildings", buildings)
    x, y = lonlat_to_tile(*CITY_HALL, 13)
    path = f"/collections/buildings/tiles/WebMercatorQuad/13/{y}/{x}"
    box = shapely.box(*tile_lonlat_bounds(13, x, y))
    expected = set(buildings.loc[shapely.intersects(buildings.geometry.values, box), "id"].astype(str))
    with serve(project, database_url=pg_db_url) as base, httpx.Client(base_url=base, timeout=60) as client:
        first = client.get(path, headers={"Accept-Encoding": "gzip", "Origin": "http://map.example"})
        assert first.status_code == 200 and first.headers["content-encoding"] == "gzip"
        assert len(first.content) > GZIP_ON_LOOP_BYTES  # httpx undid the gzip
        assert interior_ids(decode(first.content)["buildings"]) == expected
        again = client.get(path, headers={"Accept-Encoding": "gzip", "Origin": "http://map.example"})
        assert again.headers["access-control-allow-origin"] == "*"  # CORS wraps the front too
        assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
        plain = client.get(path + "?f=mvt", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == first.content
        assert client.get(path, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
        head = client.head(path)
        assert head.status_code == 200 and head.content == b""
        refused = client.get(path + "?f=json")
        assert refused.status_code == 400 and "f='json' is not offered" in refused.json()["description"]
        outside = client.get("/collections/buildings/tiles/WebMercatorQuad/17/0/0")
        assert outside.status_code == 404
        assert outside.json()["description"] == "zoom 17 is outside the zoom range 13-16 of layer 'buildings'"
        unknown = client.get(f"/collections/nowhere/tiles/WebMercatorQuad/13/{y}/{x}")
        assert unknown.status_code == 404 and "'nowhere' does not exist" in unknown.json()["description"]
        stats = client.get("/stats").json()["tile_cache"]
    assert (stats["misses"], stats["hits"]) == (1, 3)  # made once; again, f=mvt and HEAD from the cache


def _rewrite_rows(pg_db_url: str, table: str, order: str) -> None:
    """Write the table's rows again sorted by ``order`` (SQL text): a sequential scan then meets
    them in another physical order, as after updates or a reload of the same data."""
    with psycopg.connect(pg_db_url, autocommit=True) as conn:
        t = sql.Identifier(table)
        conn.execute(sql.SQL("CREATE TEMP TABLE moved AS SELECT * FROM {} ORDER BY {}").format(t, sql.SQL(order)))
        conn.execute(sql.SQL("TRUNCATE {}").format(t))
        conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM moved").format(t))
        conn.execute(sql.SQL("ANALYZE {}").format(t))


def test_a_tile_is_the_same_bytes_whatever_order_the_rows_are_stored_in(source, pg_db_url):
    """ST_AsMVT's feature order and value dictionary follow its input's order, and a tile's size
    decides whether it is thinned and how many features the thinned tile keeps: fed in a fixed
    order, a tile is the same bytes on every request, in every process, before and after rows move."""
    src, _ = source
    x13, y13 = lonlat_to_tile(*CITY_HALL, 13)
    x14, y14 = lonlat_to_tile(*CITY_HALL, 14)
    x, y = lonlat_to_tile(*CITY_HALL, Z)
    over = PostGISTileSource(src.pool, "buildings", 10, 16, max_tile_bytes=2_000)
    # a budget of exactly this tile's size: a byte more in another row order would thin it
    edge = PostGISTileSource(src.pool, "buildings", 10, 16, max_tile_bytes=len(src.tile(13, x13, y13)))

    def tiles() -> tuple[bytes, bytes, bytes]:
        return over.tile(14, x14, y14), edge.tile(13, x13, y13), src.tile(Z, x, y)

    first = tiles()
    assert len(first[0]) <= 2_000 < len(src.tile(14, x14, y14))  # thinned
    assert first[1] == src.tile(13, x13, y13)  # not thinned
    assert len(decode(first[2])["buildings"]["features"]) > 1
    for order in ("id DESC", "md5(id)", "height", "id"):
        _rewrite_rows(pg_db_url, "_citytwin_tiling_buildings", order)
        assert tiles() == first, f"rows stored by {order}"

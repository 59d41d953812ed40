"""PostGIS tiles on the request path: one turn at the pool per tile, no transaction left behind.

The pool is a real psycopg pool on a throw-away database; its own counters (``get_stats``)
say how many times a connection was asked for. Expected tile contents come from the input
rectangles and the Web Mercator formulas (test_tiles' helpers), decoded with
mapbox_vector_tile.
"""
from __future__ import annotations

import pytest
import shapely
from psycopg_pool import ConnectionPool

from api.tile_sources import on_one_connection
from api_server import CITY_HALL, sample_buildings
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


def test_version_and_tile_take_one_connection(source):
    src, buildings = source
    x, y = lonlat_to_tile(*CITY_HALL, Z)
    asked = lambda: src.pool.get_stats().get("requests_num", 0)  # noqa: E731

    fresh = PostGISTileSource(src.pool, "buildings", 10, 16)
    before = asked()
    fresh.info(), fresh.tile(Z, x, y)
    assert asked() - before == 3  # apart, the version, the bounds and the tile queue for the pool each

    before = asked()
    info, data = on_one_connection(src, lambda: (src.info(), src.tile(Z, x, y)))
    assert asked() - before == 1

    before = asked()
    apart = src.tile(Z, x, y)
    assert asked() - before == 1
    assert info.etag_seed.endswith("-v1")
    inside = _expected_ids(buildings, Z, x, y)
    assert inside, "the sample city has buildings wholly inside the City Hall tile"
    for tile in (data, apart):
        ids = interior_ids(decode(tile)["buildings"])
        assert inside <= ids


def test_reads_leave_the_pooled_connection_as_they_found_it(source):
    src, _ = source
    x, y = lonlat_to_tile(*CITY_HALL, Z)
    on_one_connection(src, lambda: (src.info(), src.tile(Z, x, y)))
    src.tile(Z, x, y)
    with src.pool.connection() as conn:
        # the tile reads run outside a transaction; other users of the pool still get one
        assert conn.autocommit is False
        conn.execute("SELECT 1")
        assert conn.info.transaction_status.name == "INTRANS"

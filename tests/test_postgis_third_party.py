"""Third-party tools read a published PostGIS layer table as a plain table: one geometry column,
``geometry`` in EPSG:4326, and no column of the tile server's (those live in a side table).

pygeoapi's own PostgreSQL provider (as a user would configure it, not our subclass) and GDAL's
PostgreSQL driver (Debian's ogrinfo) read the table; the expected ids are computed here with shapely from
the input rows.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import geopandas as gpd
import numpy as np
import psycopg
import pytest
import shapely
from pygeoapi.provider.sql import PostgreSQLProvider
from pygeoapi.util import to_json

from api.pygeoapi_config import postgres_data
from pipelines.store.postgis import PostGISStore

pytestmark = pytest.mark.postgis

BBOX = (126.99, 37.55, 127.01, 37.57)


def city(n: int = 400, seed: int = 5) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(126.97, 127.03, n), rng.uniform(37.53, 37.59, n)
    side = rng.uniform(0.0001, 0.001, n)
    return gpd.GeoDataFrame({"id": [f"b{i:04d}" for i in range(n)], "height": rng.uniform(3, 90, n)},
                            geometry=shapely.box(x, y, x + side, y + side), crs="EPSG:4326")


@pytest.fixture
def published(pg_db_url: str) -> gpd.GeoDataFrame:
    layer = city()
    with PostGISStore(pg_db_url) as store:
        store.publish("buildings", layer)
        store.publish("buildings", layer)  # the second goes through the swap with an old table present
    return layer


def test_pygeoapi_postgresql_provider_answers_a_bbox_query(published, pg_db_url):
    expected = sorted(published.loc[published.intersects(shapely.box(*BBOX)), "id"])
    assert 0 < len(expected) < len(published)
    data, _ = postgres_data(pg_db_url)
    provider = PostgreSQLProvider({"name": "PostgreSQL", "type": "feature", "data": data, "table": "buildings",
                                   "id_field": "id", "geom_field": "geometry"})
    assert set(provider.get_fields()) == {"id", "height"}
    page = provider.query(bbox=list(BBOX), limit=len(published))
    assert page["numberMatched"] == len(expected)
    assert sorted(f["id"] for f in page["features"]) == expected
    assert {k for f in page["features"] for k in f["properties"]} == {"height"}
    to_json(page)  # what pygeoapi answers with: a geometry among the properties made it a 500


def _ogrinfo(*args: str) -> str:
    ogrinfo = shutil.which("ogrinfo")
    assert ogrinfo, "Debian's gdal-bin is missing: run 'make system-deps'"
    return subprocess.run([ogrinfo, "-ro", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def test_gdal_sees_one_geometry_column(published, pg_db_url):
    """Debian's GDAL (pyogrio's wheel has no PostgreSQL driver): the layer's summary and a bbox read."""
    summary = _ogrinfo("-so", f"PG:{pg_db_url}", "buildings")
    assert re.findall(r"^Geometry Column.*$", summary, re.M) == ["Geometry Column = geometry"]
    assert re.findall(r"^Geometry: (.*)$", summary, re.M) == ["Polygon"]
    assert re.findall(r'^    ID\["EPSG",(\d+)\]\]$', summary, re.M) == ["4326"]
    assert re.findall(r"^Feature Count: (\d+)$", summary, re.M) == [str(len(published))]
    assert re.findall(r"^(\w+): \w+", summary.split("Geometry Column = geometry", 1)[1], re.M) == ["id", "height"]
    # axis-aligned boxes: GDAL's envelope filter and shapely's intersects agree
    read = _ogrinfo("-q", "-spat", *map(str, BBOX), f"PG:{pg_db_url}", "buildings")
    expected = sorted(published.loc[published.intersects(shapely.box(*BBOX)), "id"])
    assert sorted(re.findall(r"^  id \(String\) = (\S+)$", read, re.M)) == expected
    with psycopg.connect(pg_db_url) as conn:
        columns = conn.execute("SELECT f_geometry_column, srid, type FROM geometry_columns "
                               "WHERE f_table_name = 'buildings'").fetchall()
    assert columns == [("geometry", 4326, "POLYGON")]

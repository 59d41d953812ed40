"""CQL2 answers that were silently wrong, and CQL2 mistakes, on a real ``citytwin serve`` of both stores.

Expected sets are computed here with shapely and plain Python over the published layer.
"""
from __future__ import annotations

import json

import httpx
import pytest
import shapely

from api_server import make_project, serve

ITEMS = "/collections/buildings/items"
BOX = (126.970, 37.560, 126.985, 37.572)  # lon/lat
EPSG4326 = "http://www.opengis.net/def/crs/EPSG/0/4326"


def _matched(r: httpx.Response) -> int:
    assert r.status_code == 200, r.text
    return r.json()["numberMatched"]


def _check(base: str, buildings) -> None:
    inside = int(buildings.intersects(shapely.box(*BOX)).sum())
    polygon = shapely.geometry.mapping(shapely.box(*BOX))
    like = sum(len(n) == 11 and n.startswith("Building 1") for n in buildings["name"])
    hits = {"resulttype": "hits", "limit": 1}
    as_json = {"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": list(BOX)}]}
    with httpx.Client(base_url=base, timeout=60) as c:
        assert 0 < inside < len(buildings)
        assert _matched(c.get(ITEMS, params={**hits, "bbox": ",".join(map(str, BOX))})) == inside
        # the bbox literal is minx, miny, maxx, maxy (GET and POST), as bbox= and a Polygon
        assert _matched(c.get(ITEMS, params={**hits, "filter": json.dumps(as_json), "filter-lang": "cql2-json"})) \
            == inside
        assert _matched(c.post(ITEMS, params=hits, content=json.dumps(as_json),
                               headers={"Content-Type": "application/query-cql-json"})) == inside
        poly = {"op": "s_intersects", "args": [{"property": "geometry"}, polygon]}
        assert _matched(c.post(ITEMS, params=hits, content=json.dumps(poly),
                               headers={"Content-Type": "application/query-cql-json"})) == inside
        text = "S_INTERSECTS(geometry,BBOX({},{},{},{}))".format(*BOX)
        assert _matched(c.get(ITEMS, params={**hits, "filter": text})) == inside
        # a filter-crs with latitude first: the same box written lat/lon
        lat_lon = "S_INTERSECTS(geometry,BBOX({1},{0},{3},{2}))".format(*BOX)
        assert _matched(c.get(ITEMS, params={**hits, "filter": lat_lon, "filter-crs": EPSG4326})) == inside
        # '_' is any one character
        assert like == 10
        assert _matched(c.get(ITEMS, params={**hits, "filter": "name LIKE 'Building 1_'"})) == like
        assert _matched(c.get(ITEMS, params={**hits, "filter": "name like 'B_ilding 1_' and not (height < 0)"})) \
            == like
        # mistakes: one line that says what is wrong
        for params, words in [
            ({"filter": "height > 'tall'"}, "property 'height' is a number and 'tall' is text"),
            ({"filter": "height >"}, "filter: the cql2-text filter does not parse at line:column 1:9"),
            ({"filter": "height > 1", "filter-lang": "ecql"}, "filter-lang 'ecql' is not supported"),
            ({"filter": "{\"op\": \"=\""}, "filter: the cql2-text filter does not parse"),
            ({"filter": "{\"op\": \"=\"", "filter-lang": "cql2-json"}, "the cql2-json filter is not JSON"),
            ({"filter": "T_AFTER(name, DATE('2022-01-01'))"},
             "temporal functions compare dates, timestamps and intervals; property 'name' is text"),
            ({"filter": "frobnicate(height) = 1"}, "unknown CQL2 operator or function 'frobnicate'"),
            ({"filter": json.dumps({"op": "=", "args": [{"property": "name"}]}), "filter-lang": "cql2-json"},
             "= takes 2 arguments, got 1"),
            ({"filter": json.dumps({"op": "between", "args": [{"property": "height"}, 1]}),
              "filter-lang": "cql2-json"}, "BETWEEN takes 3 arguments, got 2"),
        ]:
            r = c.get(ITEMS, params=params)
            assert r.status_code == 400, (params, r.text)
            description = r.json()["description"]
            assert words in description and "\n" not in description, (params, description)


def test_cql2_fixed_answers_on_the_embedded_store(tmp_path):
    buildings = make_project(tmp_path)["buildings"]
    with serve(tmp_path) as base:
        _check(base, buildings)


@pytest.mark.postgis
def test_cql2_fixed_answers_on_postgis(tmp_path, pg_db_url):
    buildings = make_project(tmp_path, database_url=pg_db_url)["buildings"]
    with serve(tmp_path, database_url=pg_db_url) as base:
        _check(base, buildings)

"""The PostGIS fast path for items answers exactly what pygeoapi's provider answers.

Each query goes to the server twice: as asked (the fast path) and with ``skipGeometry=false``,
which changes nothing but is not a fast-path parameter, so pygeoapi's own PostgreSQL provider
answers (its answers carry ``X-Powered-By: pygeoapi``, the fast path's do not). Features, order,
properties, coordinates (1e-9), counts, links and Content-Crs must agree; counts and
coordinates are also checked against expectations computed here with pandas and pyproj.
"""
from __future__ import annotations

import datetime as dt
import json

import httpx
import numpy as np
import pandas as pd
import pytest
import shapely
from api_server import make_project, serve
from pyproj import Transformer
from shapely.geometry import box, shape

ITEMS = "/collections/buildings/items"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/"
BOX = (126.970, 37.560, 126.980, 37.570)


def richer(buildings: pd.DataFrame) -> pd.DataFrame:
    """The sample buildings with an integer, a boolean and a date field (some missing), Korean
    names, and one feature without geometry."""
    rng = np.random.default_rng(3)
    b = buildings.copy()
    n = len(b)
    b["floors"] = pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(1, 30, n)), dtype="Int64")
    b["listed"] = rng.random(n) < 0.3
    b["built"] = [None if i % 17 == 0 else dt.date(1950 + i % 70, 1 + i % 12, 1 + i % 28) for i in range(n)]
    b["name_ko"] = [f"건물 {i}" if i % 2 else f"Édifice {i}" for i in range(n)]
    extra = b.iloc[[0]].copy()
    extra["id"], extra["name"], extra["geometry"] = "no-geometry", "Building without footprint", None
    return pd.concat([b, extra], ignore_index=True).set_geometry("geometry", crs="EPSG:4326")


def answer(c: httpx.Client, params: dict, slow: bool) -> httpx.Response:
    r = c.get(ITEMS, params={**params, **({"skipGeometry": "false"} if slow else {})})
    if r.status_code == 200:  # proof of which path answered
        assert ("x-powered-by" in r.headers) == slow, (params, r.headers)
    return r


def same_answer(c: httpx.Client, params: dict) -> dict:
    fast, slow = answer(c, params, slow=False), answer(c, params, slow=True)
    assert fast.status_code == slow.status_code, (params, fast.text[:300], slow.text[:300])
    if fast.status_code != 200:
        assert fast.json()["description"] == slow.json()["description"]
        return {}
    a, b = fast.json(), slow.json()
    assert fast.headers["content-crs"] == slow.headers["content-crs"], params
    assert fast.headers["content-type"] == "application/geo+json"
    assert (a["numberMatched"], a["numberReturned"]) == (b["numberMatched"], b["numberReturned"]), params
    assert a["numberReturned"] == len(a["features"])
    assert [f["id"] for f in a["features"]] == [f["id"] for f in b["features"]], params
    for f, s in zip(a["features"], b["features"]):
        if s["geometry"] is None:  # pygeoapi 0.21 leaves the empty geometry column among the properties
            assert f["geometry"] is None and s["properties"].pop("geometry") is None
        else:
            assert shapely.equals_exact(shape(f["geometry"]), shape(s["geometry"]), 1e-9), (params, f["id"])
        assert f["properties"] == s["properties"], (params, f["id"])
    unslowed = [{**link, "href": link["href"].replace("&skipGeometry=false", "")} for link in b["links"]]
    assert a["links"] == unslowed, params
    return a


@pytest.mark.postgis
def test_fast_answers_equal_pygeoapi(tmp_path, pg_db_url):
    from pipelines.store.postgis import PostGISStore

    make_project(tmp_path, database_url=pg_db_url)
    from api_server import sample_buildings

    b = richer(sample_buildings())
    with PostGISStore(pg_db_url) as store:
        store.publish("buildings", b)
    located = b[b.geometry.notna()]
    in_box = set(located.loc[located.intersects(box(*BOX)), "id"])
    tall_1 = b[(b["height"] > 50) & b["name"].str.startswith("Building 1")]
    typed = b[b["listed"] & b["floors"].between(2, 10).fillna(False).astype(bool)
              & b["built"].map(lambda d: d is not None and d > dt.date(2000, 1, 1))]
    lat_lon_box = f"{BOX[1]},{BOX[0]},{BOX[3]},{BOX[2]}"
    as_json = json.dumps({"op": "and", "args": [{"op": ">", "args": [{"property": "height"}, 50]},
                                                 {"op": "like", "args": [{"property": "name"}, "Building 1%"]}]})
    queries = [
        ({}, len(b)),  # the feature without geometry too
        ({"limit": "7", "offset": "7", "sortby": "-height,name"}, len(b)),
        ({"limit": "50", "sortby": "name", "properties": "height"}, len(b)),
        ({"limit": "5", "sortby": "+name_ko,-id", "properties": "name_ko,name_ko"}, len(b)),
        ({"limit": "5", "properties": "id"}, len(b)),
        ({"limit": "5", "properties": "name,height,built", "bbox": ",".join(map(str, BOX))}, len(in_box)),
        ({"limit": "10", "filter": "height > 50 AND name LIKE 'Building 1%'", "sortby": "-height,id"}, len(tall_1)),
        ({"limit": "10", "filter": as_json, "filter-lang": "cql2-json", "sortby": "name"}, len(tall_1)),
        ({"limit": "20", "filter": "listed = true AND floors BETWEEN 2 AND 10 AND built > DATE('2000-01-01')",
          "sortby": "-floors,name"}, len(typed)),
        ({"limit": "9", "sortby": "-floors,name", "properties": "floors,listed"}, len(b)),  # missing values sort first
        ({"limit": "10", "filter": "ACCENTI(CASEI(name_ko)) LIKE 'edifice 1%'"},
         sum(n.startswith("Édifice 1") for n in b["name_ko"])),
        ({"limit": "10", "crs": EPSG + "5186", "sortby": "name"}, len(b)),
        ({"limit": "10", "crs": EPSG + "4326", "bbox": lat_lon_box, "bbox-crs": EPSG + "4326"}, len(in_box)),
        ({"limit": "10", "crs": EPSG + "3857", "filter": "S_INTERSECTS(geometry, BBOX({},{},{},{}))".format(*BOX)},
         len(in_box)),
        ({"limit": "10", "filter": f"S_INTERSECTS(geometry, BBOX({lat_lon_box}))", "filter-crs": EPSG + "4326",
          "bbox": ",".join(map(str, BOX))}, len(in_box)),
        ({"limit": str(len(in_box)), "bbox": ",".join(map(str, BOX))}, len(in_box)),  # a full last page: 'next'
    ]
    with serve(tmp_path, database_url=pg_db_url) as url, httpx.Client(base_url=url, timeout=60) as c:
        for params, matched in queries:
            doc = same_answer(c, params)
            assert doc["numberMatched"] == matched, params
        # what pygeoapi refuses stays its 400, with its words
        for params in [{"sortby": "height;drop"}, {"properties": "name,geometry"}, {"filter": "nope > 1"},
                       {"crs": EPSG + "9999"}, {"bbox-crs": EPSG + "4326"}, {"bbox": "127,38,128,37"},
                       {"f": "geojson"}, {"bbox": "1,2,3,4", "bbox-crs": EPSG + "9999"}]:
            assert answer(c, params, slow=False).status_code == 400, params
            same_answer(c, params)
        # sort keys are bounded: each is work for the database
        assert answer(c, {"sortby": ",".join(["name"] * 16), "limit": "1"}, slow=False).status_code == 200
        many = answer(c, {"sortby": ",".join(["name"] * 17), "limit": "1"}, slow=False)
        assert many.status_code == 400
        assert many.json()["description"] == "sortby has 17 entries; at most 16 sort keys are accepted"
        # coordinates in EPSG:5186 are (northing, easting), as pyproj's authority order gives them
        doc = answer(c, {"crs": EPSG + "5186", "sortby": "name", "limit": "3"}, slow=False).json()
        to_5186 = Transformer.from_crs("EPSG:4326", "EPSG:5186")
        for feature in doc["features"]:
            lon, lat = np.array(b.set_index("id").geometry[feature["id"]].exterior.coords).T
            north, east = to_5186.transform(lat, lon)
            assert np.allclose(np.array(feature["geometry"]["coordinates"][0]), np.column_stack([north, east]),
                               atol=1e-6, rtol=0)
        # a sort key with ties pages without overlap: the id breaks them
        seen = []
        for offset in range(0, len(b), 40):
            page = answer(c, {"sortby": "height", "limit": "40", "offset": str(offset)}, slow=False).json()
            seen += [(f["properties"]["height"], f["id"]) for f in page["features"]]
        assert len(b["height"]) > b["height"].nunique()
        assert seen == sorted(zip(b["height"], b["id"]))


@pytest.mark.postgis
def test_fast_bbox_pages_equal_pygeoapi(tmp_path, pg_db_url):
    layers = make_project(tmp_path, database_url=pg_db_url)
    b = layers["buildings"]
    minx, miny, maxx, maxy = b.total_bounds
    bbox = (minx, miny, (minx + maxx) / 2, (miny + maxy) / 2)
    expected = set(b.loc[b.intersects(box(*bbox)), "id"])
    assert 10 < len(expected) < len(b)
    with serve(tmp_path, database_url=pg_db_url) as url, httpx.Client(base_url=url, timeout=60) as c:
        seen = []
        for offset in range(0, len(expected) + 7, 7):  # every page, and one empty page after the last
            fast = same_answer(c, {"bbox": ",".join(map(str, bbox)), "limit": "7", "offset": str(offset)})
            assert fast["numberMatched"] == len(expected)
            seen += [f["id"] for f in fast["features"]]
        assert sorted(seen) == sorted(expected)
        # what the fast path leaves to pygeoapi
        assert c.get(ITEMS, params={"bbox": "1,2,3"}).status_code == 400
        html = c.get(ITEMS, headers={"Accept": "text/html"})
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        ld = c.get(ITEMS, headers={"Accept": "application/ld+json"})
        assert ld.status_code == 200 and ld.headers["x-powered-by"].startswith("pygeoapi")
        assert c.get("/collections/nope/items", params={"bbox": "0,0,1,1"}).status_code == 404


@pytest.mark.postgis
def test_fast_items_pass_schemathesis(tmp_path, pg_db_url):
    """Generated items requests (every documented parameter, valid and not) on PostGIS, where the
    fast path answers: no 5xx, statuses and bodies as /openapi documents them."""
    from test_schemathesis import _failures, _st_run

    make_project(tmp_path / "city", database_url=pg_db_url)
    with serve(tmp_path / "city", database_url=pg_db_url) as url:
        report, log = _st_run(url, tmp_path / "report.json", "--include-path-regex", "^/collections/buildings/items$",
                              "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance",
                              "--max-examples", "300", "--seed", "20261202")
    assert report["errors"] == [] and report["failures"] == [], _failures(report, log)
    assert report["test_cases"]["generated"] >= 300, report["test_cases"]

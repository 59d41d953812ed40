"""The PostGIS fast path for bbox pages answers exactly what pygeoapi's provider answers."""
from __future__ import annotations

import httpx
import numpy as np
import pytest
import shapely
from api_server import make_project, serve
from shapely.geometry import box, shape

JSONLD = "application/ld+json"


def page(c: httpx.Client, **params) -> dict:
    r = c.get("/collections/buildings/items", params=params)
    assert r.status_code == 200, r.text
    return r.json()


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
            fast = page(c, bbox=",".join(map(str, bbox)), limit=7, offset=offset)
            # skipGeometry=false changes nothing, but it is not a parameter of the fast path:
            # the same page then comes from pygeoapi's own PostgreSQL provider
            slow = page(c, bbox=",".join(map(str, bbox)), limit=7, offset=offset, skipGeometry="false")
            assert not any(l["type"] == JSONLD for l in fast["links"])
            assert any(l["type"] == JSONLD for l in slow["links"])  # proof each path answered
            assert fast["numberMatched"] == slow["numberMatched"] == len(expected)
            assert fast["numberReturned"] == slow["numberReturned"] == len(fast["features"])
            assert [f["id"] for f in fast["features"]] == [f["id"] for f in slow["features"]]
            for f, s in zip(fast["features"], slow["features"]):
                assert f["properties"] == pytest.approx(s["properties"])
                assert shapely.equals_exact(shape(f["geometry"]), shape(s["geometry"]), 1e-9)
            rels = lambda d: {l["rel"] for l in d["links"] if l["rel"] in ("next", "prev")}  # noqa: E731
            assert rels(fast) == rels(slow)
            seen += [f["id"] for f in fast["features"]]
        assert sorted(seen) == sorted(expected)
        # whole layer, default limit, and what the fast path leaves to pygeoapi
        assert page(c)["numberMatched"] == len(b)
        assert c.get("/collections/buildings/items", params={"bbox": "1,2,3"}).status_code == 400
        html = c.get("/collections/buildings/items", headers={"Accept": "text/html"})
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assert c.get("/collections/nope/items", params={"bbox": "0,0,1,1"}).status_code == 404
        assert np.isfinite(bbox).all()

"""The served API over real HTTP: ``citytwin serve`` as a subprocess on a free port.

Embedded store (GeoPackage + PMTiles) for most tests; PostGIS (CQL2 filters, dynamic
ST_AsMVT tiles) in the ``postgis`` tests. Expectations come from the data we inserted,
computed with shapely / pyproj / pandas, never from the code under test.
"""
from __future__ import annotations

import ast
import gzip
import math
import shutil
import subprocess
import sys

import httpx
import mapbox_vector_tile
import numpy as np
import pytest
import shapely
from pyproj import CRS, Transformer

from api_server import CITYTWIN, REPO, make_project, serve, serve_output

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG5186 = "http://www.opengis.net/def/crs/EPSG/0/5186"
MVT = "application/vnd.mapbox-vector-tile"
HALF_WORLD = 20037508.342789244


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """XYZ column/row of a lon/lat (the textbook formula, independent of the server)."""
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def tile_box_3857(z: int, x: int, y: int, pad: float = 0.0) -> shapely.Polygon:
    size = 2 * HALF_WORLD / 2 ** z
    minx, maxy = -HALF_WORLD + x * size, HALF_WORLD - y * size
    return shapely.box(minx - pad * size, maxy - size - pad * size, minx + size + pad * size, maxy + pad * size)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("apiproj")
    layers = make_project(root)
    return root, layers


@pytest.fixture(scope="module")
def base(project):
    root, _ = project
    with serve(root) as url:
        yield url


@pytest.fixture(scope="module")
def buildings(project):
    return project[1]["buildings"]


@pytest.fixture(scope="module")
def client(base):
    with httpx.Client(base_url=base, timeout=30) as c:
        yield c


# -- OGC API Common ------------------------------------------------------------------
def test_conformance_lists_features_crs_and_tiles(client):
    classes = set(client.get("/conformance").json()["conformsTo"])
    for c in (
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
        "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
        "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
        "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
        "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    ):
        assert c in classes, c
    # Nothing is editable here: no claim of Features Part 4, and writes are refused.
    assert not [c for c in classes if "ogcapi-features-4" in c]
    created = client.post("/collections/buildings/items", json={"type": "Feature", "properties": {},
                                                                "geometry": {"type": "Point", "coordinates": [0, 0]}})
    assert 400 <= created.status_code < 500


@pytest.mark.parametrize("path", ["/", "/conformance", "/collections", "/openapi"])
def test_json_and_html_on_common_resources(client, path):
    j = client.get(path, params={"f": "json"})
    assert j.status_code == 200
    assert "json" in j.headers["content-type"]
    j.json()
    h = client.get(path, params={"f": "html"})
    assert h.status_code == 200
    assert h.headers["content-type"].startswith("text/html")
    assert "<html" in h.text.lower()


def test_landing_page_links_the_viewer(client, base):
    links = client.get("/", params={"f": "json"}).json()["links"]
    viewer = [link for link in links if link["href"] == f"{base}/viewer/"]
    assert len(viewer) == 1 and viewer[0]["type"] == "text/html" and viewer[0]["title"] == "Map viewer"
    html = client.get("/", params={"f": "html"}).text
    assert f'href="{base}/viewer/"' in html


def test_collections_list_layers_with_crs_and_extent(client, project):
    _, layers = project
    cols = {c["id"]: c for c in client.get("/collections", params={"f": "json"}).json()["collections"]}
    assert set(cols) == {"buildings", "landmarks", "catalog"}  # the layers and the Records catalog
    assert cols["catalog"]["itemType"] == "record"
    b = cols["buildings"]
    assert EPSG5186 in b["crs"] and CRS84 in b["crs"]
    assert "http://www.opengis.net/def/crs/EPSG/0/3857" in b["crs"]
    assert "http://www.opengis.net/def/crs/EPSG/0/5179" in b["crs"]
    assert b["storageCrs"] == CRS84
    np.testing.assert_allclose(b["extent"]["spatial"]["bbox"][0], layers["buildings"].total_bounds, atol=1e-6)
    rels = {link["rel"] for link in b["links"]}
    assert "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector" in rels


# -- Features --------------------------------------------------------------------
def test_bbox_returns_exactly_the_intersecting_features(client, buildings):
    # ~300 m around City Hall: cuts through many rotated rectangles.
    bbox = (126.9750, 37.5640, 126.9810, 37.5690)
    expected = set(buildings.loc[buildings.intersects(shapely.box(*bbox)), "id"])
    assert 20 < len(expected) < len(buildings)
    r = client.get("/collections/buildings/items", params={"bbox": ",".join(map(str, bbox)), "limit": 1000})
    assert r.status_code == 200
    doc = r.json()
    assert doc["numberMatched"] == len(expected)
    assert {f["id"] for f in doc["features"]} == expected


def test_bbox_numbermatched_with_paging(client, buildings):
    bbox = (126.9750, 37.5640, 126.9810, 37.5690)
    expected = set(buildings.loc[buildings.intersects(shapely.box(*bbox)), "id"])
    seen = []
    for offset in range(0, len(expected), 7):
        doc = client.get("/collections/buildings/items",
                         params={"bbox": ",".join(map(str, bbox)), "limit": 7, "offset": offset}).json()
        assert doc["numberMatched"] == len(expected)
        seen += [f["id"] for f in doc["features"]]
    assert len(seen) == len(set(seen)) and set(seen) == expected


def test_paging_limit_offset_and_links(client, buildings):
    ids = []
    for offset in range(0, 300, 40):
        doc = client.get("/collections/buildings/items", params={"limit": 40, "offset": offset}).json()
        assert doc["numberMatched"] == len(buildings)
        assert doc["numberReturned"] == len(doc["features"]) == min(40, len(buildings) - offset)
        ids += [f["id"] for f in doc["features"]]
    assert len(ids) == len(set(ids)) == len(buildings)
    assert set(ids) == set(buildings["id"])
    first = client.get("/collections/buildings/items", params={"limit": 40}).json()
    nxt = [link["href"] for link in first["links"] if link["rel"] == "next"]
    assert nxt and "offset=40" in nxt[0]


def test_crs_5186_coordinates_match_pyproj(client, buildings):
    r = client.get("/collections/buildings/items", params={"crs": EPSG5186, "limit": 25})
    assert r.status_code == 200
    assert r.headers["content-crs"] == f"<{EPSG5186}>"
    # EPSG:5186 axis order is northing, easting (OGC API Features Part 2 follows it).
    axes = [a.direction for a in CRS.from_epsg(5186).axis_info]
    assert axes == ["north", "east"]
    to5186 = Transformer.from_crs("EPSG:4326", "EPSG:5186", always_xy=True)
    by_id = buildings.set_index("id")
    for f in r.json()["features"]:
        src = np.asarray(by_id.loc[f["id"], "geometry"].exterior.coords)
        east, north = to5186.transform(src[:, 0], src[:, 1])
        got = np.asarray(f["geometry"]["coordinates"][0])
        np.testing.assert_allclose(got[:, 0], north, atol=0.01)
        np.testing.assert_allclose(got[:, 1], east, atol=0.01)


def test_bbox_crs_5186_finds_the_building_under_it(client, buildings):
    target = buildings.iloc[42]
    c = target.geometry.representative_point()
    east, north = Transformer.from_crs("EPSG:4326", "EPSG:5186", always_xy=True).transform(c.x, c.y)
    # bbox in the axis order of EPSG:5186: north, east
    bbox = f"{north - 0.5},{east - 0.5},{north + 0.5},{east + 0.5}"
    doc = client.get("/collections/buildings/items", params={"bbox": bbox, "bbox-crs": EPSG5186}).json()
    ids = {f["id"] for f in doc["features"]}
    assert target["id"] in ids
    expected = set(buildings.loc[buildings.intersects(c.buffer(0.0001)), "id"])
    assert ids <= expected


def test_unsupported_crs_is_400(client):
    r = client.get("/collections/buildings/items", params={"crs": "http://www.opengis.net/def/crs/EPSG/0/2097"})
    assert r.status_code == 400
    assert "not supported" in r.json()["description"]


def test_item_by_id_and_unknown_id(client, buildings):
    row = buildings.iloc[17]
    f = client.get(f"/collections/buildings/items/{row['id']}").json()
    assert f["id"] == row["id"]
    assert f["properties"]["name"] == row["name"]
    assert f["properties"]["height"] == pytest.approx(row["height"])
    assert shapely.geometry.shape(f["geometry"]).equals_exact(row.geometry, 1e-9)
    r = client.get("/collections/buildings/items/no-such-id")
    assert r.status_code == 404
    assert "no-such-id" in r.json()["description"]


def test_items_and_item_as_html(client, buildings):
    r = client.get("/collections/buildings/items", params={"f": "html", "limit": 5})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    ident = buildings.iloc[3]["id"]
    r = client.get(f"/collections/buildings/items/{ident}", params={"f": "html"})
    assert r.status_code == 200 and ident in r.text


def test_property_filter_sort_and_select(client, buildings):
    doc = client.get("/collections/buildings/items", params={"name": "Building 7"}).json()
    assert [f["id"] for f in doc["features"]] == ["bld-0007"]
    top = buildings.sort_values("height", ascending=False).head(5)
    doc = client.get("/collections/buildings/items", params={"sortby": "-height", "limit": 5}).json()
    assert [f["properties"]["height"] for f in doc["features"]] == pytest.approx(list(top["height"]))
    doc = client.get("/collections/buildings/items", params={"properties": "height", "limit": 3}).json()
    assert all(set(f["properties"]) == {"height"} for f in doc["features"])
    doc = client.get("/collections/buildings/items", params={"height": "not-a-number"})
    assert doc.status_code == 400 and "height" in doc.json()["description"]


PLAZA = shapely.box(126.9750, 37.5640, 126.9810, 37.5690)


def _cql_cases(b):
    """(cql2-text or cql2-json filter, the ids it should keep, computed here with pandas/shapely)."""
    h, name = b["height"], b["name"]
    inside = b.intersects(PLAZA)
    return [
        ("height > 50", h > 50),
        ("height >= 20 AND height < 40", (h >= 20) & (h < 40)),
        ("height < 10 OR height > 110", (h < 10) | (h > 110)),
        ({"op": "not", "args": [{"op": ">", "args": [{"property": "height"}, 50]}]}, ~(h > 50)),
        ("height BETWEEN 30 AND 60", h.between(30, 60)),
        ("name LIKE 'Building 1%'", name.str.startswith("Building 1")),
        ("name IN ('Building 3', 'Building 42', 'nobody')", name.isin(["Building 3", "Building 42"])),
        ("name IS NULL", name.isna()),
        (f"INTERSECTS(geometry, {PLAZA.wkt}) AND height > 40", inside & (h > 40)),
        ({"op": "and", "args": [{"op": "s_intersects", "args": [{"property": "geometry"},
                                                                  shapely.geometry.mapping(PLAZA)]},
                                {"op": "<=", "args": [{"property": "height"}, 60]}]}, inside & (h <= 60)),
    ]


def test_cql2_filters_on_the_embedded_store(client, buildings):
    import json as _json

    b = buildings
    for cql, want in _cql_cases(b):
        expected = set(b.loc[want, "id"])
        if isinstance(cql, dict):
            params = {"filter": _json.dumps(cql), "filter-lang": "cql2-json", "limit": 1000}
        else:
            params = {"filter": cql, "filter-lang": "cql2-text", "limit": 1000}
        r = client.get("/collections/buildings/items", params=params)
        assert r.status_code == 200, (cql, r.text)
        doc = r.json()
        assert doc["numberMatched"] == len(expected), cql
        assert {f["id"] for f in doc["features"]} == expected, cql
    # paging, bbox and sort order still apply to the filtered rows
    want = b[b["height"] > 50].sort_values(["height", "id"], ascending=[False, True])  # ties: publish order
    r = client.get("/collections/buildings/items", params={"filter": "height > 50", "filter-lang": "cql2-text",
                                                            "sortby": "-height", "limit": 5, "offset": 5}).json()
    assert [f["id"] for f in r["features"]] == list(want["id"].iloc[5:10])
    box = (126.9750, 37.5640, 126.9810, 37.5690)
    r = client.get("/collections/buildings/items", params={"filter": "height > 50", "filter-lang": "cql2-text",
                                                            "bbox": ",".join(map(str, box)), "limit": 1000}).json()
    assert {f["id"] for f in r["features"]} == set(b.loc[(b["height"] > 50) & b.intersects(PLAZA), "id"])


@pytest.mark.parametrize("cql, needle", [
    ("nope > 3", "unknown property 'nope'"),
    ("height > 'tall'", "is a number"),
    ("name > 3", "is text"),
    ("height LIKE '1%'", "LIKE needs a text property"),
])
def test_cql2_mistakes_on_the_embedded_store_are_clear_400s(client, cql, needle):
    r = client.get("/collections/buildings/items", params={"filter": cql, "filter-lang": "cql2-text"})
    assert r.status_code == 400
    assert needle in r.json()["description"]


# -- Tiles -------------------------------------------------------------------------
def _tile_path(z: int, y: int, x: int, layer: str = "buildings") -> str:
    return f"/collections/{layer}/tiles/WebMercatorQuad/{z}/{y}/{x}"


def test_tile_decodes_and_holds_the_buildings_in_it(client, buildings):
    z = 16
    x, y = tile_of(126.9779692, 37.5662952, z)
    r = client.get(_tile_path(z, y, x), params={"f": "mvt"})
    assert r.status_code == 200
    assert r.headers["content-type"] == MVT
    tile = mapbox_vector_tile.decode(r.content)
    assert "buildings" in tile
    got = {f["properties"]["id"] for f in tile["buildings"]["features"]}
    merc = buildings.to_crs(3857)
    inside = set(merc.loc[merc.intersects(tile_box_3857(z, x, y)), "id"])
    with_buffer = set(merc.loc[merc.intersects(tile_box_3857(z, x, y, pad=64 / 4096)), "id"])
    assert inside and inside <= got <= with_buffer
    heights = {f["properties"]["id"]: f["properties"]["height"] for f in tile["buildings"]["features"]}
    src = buildings.set_index("id")["height"]
    assert all(heights[i] == pytest.approx(src[i]) for i in inside)


def test_tile_etag_304_and_cache_headers(client):
    x, y = tile_of(126.9779692, 37.5662952, 15)
    r = client.get(_tile_path(15, y, x))
    etag = r.headers["etag"]
    assert r.status_code == 200 and etag.startswith('"')
    assert "max-age=" in r.headers["cache-control"]
    again = client.get(_tile_path(15, y, x), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    other = client.get(_tile_path(15, y, x + 1))
    assert other.headers.get("etag") != etag


def test_tile_gzip_only_when_accepted(base):
    x, y = tile_of(126.9779692, 37.5662952, 16)
    url = base + _tile_path(16, y, x)
    # Raw transport, so the bytes on the wire are what we check.
    with httpx.Client(timeout=30) as c:
        with c.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as r:
            wire = b"".join(r.iter_raw())
            assert r.headers["content-encoding"] == "gzip"
        with c.stream("GET", url, headers={"Accept-Encoding": "identity"}) as r:
            plain = b"".join(r.iter_raw())
            assert "content-encoding" not in r.headers
    assert wire[:2] == b"\x1f\x8b"
    assert gzip.decompress(wire) == plain
    assert "buildings" in mapbox_vector_tile.decode(plain)


def test_empty_tile_inside_range_is_204(client):
    r = client.get(_tile_path(13, 0, 0))  # the Arctic: inside the grid and zooms, no data
    assert r.status_code == 204 and r.content == b""


@pytest.mark.parametrize("path,status,words", [
    (_tile_path(16, 0, 2 ** 16), 404, "outside"),
    (_tile_path(16, 2 ** 16, 0), 404, "outside"),
    (_tile_path(17, 0, 0), 404, "zoom range 13-16"),
    (_tile_path(12, 0, 0), 404, "zoom range 13-16"),
    (_tile_path(15, 0, 0, layer="nosuchlayer"), 404, "does not exist"),
    (_tile_path(15, 0, 0, layer="Bad..Name"), 404, "does not exist"),
    (_tile_path("x", 0, 0), 400, "tileMatrix"),
    (_tile_path(15, -1, 0), 400, "tileRow"),
])
def test_bad_tile_addresses_get_a_clear_4xx(client, path, status, words):
    r = client.get(path)
    assert r.status_code == status
    assert words in r.json()["description"]


def test_tile_format_other_than_mvt_is_400(client):
    r = client.get(_tile_path(15, 0, 0), params={"f": "png"})
    assert r.status_code == 400 and "f=mvt" in r.json()["description"]


def test_tilejson_has_absolute_template_and_layer(client, base):
    doc = client.get("/collections/buildings/tiles/WebMercatorQuad/tilejson.json").json()
    assert doc["tiles"] == [f"{base}/collections/buildings/tiles/WebMercatorQuad/{{z}}/{{y}}/{{x}}"]
    assert [v["id"] for v in doc["vector_layers"]] == ["buildings"]
    assert (doc["minzoom"], doc["maxzoom"]) == (13, 16)
    alias = client.get("/tilejson/buildings.json").json()
    assert alias == doc
    # The template works: fill it in and fetch a tile.
    x, y = tile_of(126.9779692, 37.5662952, 16)
    url = doc["tiles"][0].format(z=16, x=x, y=y)
    assert httpx.get(url).status_code == 200


def test_pygeoapi_tileset_metadata(client):
    sets = client.get("/collections/buildings/tiles", params={"f": "json"}).json()["tilesets"]
    assert [s["tileMatrixSetURI"] for s in sets] == [  # WorldCRS84Quad: made per request, for GDAL's OGCAPI driver
        "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad",
        "http://www.opengis.net/def/tilematrixset/OGC/1.0/WorldCRS84Quad"]
    meta = client.get("/collections/buildings/tiles/WebMercatorQuad/metadata")
    assert meta.status_code == 200
    items = [link for link in meta.json()["links"] if link["rel"] == "item"]
    assert items and items[0]["href"].endswith("/collections/buildings/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}?f=mvt")


# -- viewer, styles, CORS -------------------------------------------------------------
def test_viewer_vendor_and_styles(client):
    assert client.get("/viewer", follow_redirects=False).status_code in (307, 308)
    r = client.get("/viewer/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    pkg = client.get("/viewer/vendor/maplibre-gl/package.json")
    assert pkg.status_code == 200 and pkg.json()["name"] == "maplibre-gl"
    mjs = client.get("/viewer/vendor/maplibre-gl/dist/maplibre-gl.mjs")
    assert mjs.status_code == 200 and "javascript" in mjs.headers["content-type"]  # ES modules need it
    # only the viewer's declared dependencies are exposed, not all of node_modules
    assert client.get("/viewer/vendor/minimist/package.json").status_code == 404
    style = client.get("/styles/base")
    assert style.status_code == 200 and style.json()["version"] == 8
    assert client.get("/styles/nope").status_code == 404
    assert client.get("/styles/..%2Fpyproject").status_code == 404


def test_cors_on_pygeoapi_and_our_routes(client):
    x, y = tile_of(126.9779692, 37.5662952, 15)
    for path in ("/collections/buildings/items?limit=1", _tile_path(15, y, x), "/styles/base"):
        r = client.get(path, headers={"Origin": "https://example.org"})
        assert r.headers.get("access-control-allow-origin") == "*", path
    pre = client.options(_tile_path(15, y, x), headers={
        "Origin": "https://example.org", "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"


def test_server_log_line(project, base):
    assert f"serving {base} (viewer at /viewer/)" in serve_output(project[0])


# -- no store: fail early ------------------------------------------------------------
def test_serve_without_a_built_store_fails_with_advice(tmp_path):
    (tmp_path / "citytwin.yaml").write_text("name: empty\nlayers: {}\n", encoding="utf-8")
    exe = [str(CITYTWIN)] if CITYTWIN.exists() else [sys.executable, "-m", "pipelines.cli"]
    r = subprocess.run([*exe, "serve", "--project", str(tmp_path), "--port", "9"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "citytwin build" in r.stderr and "Traceback" not in r.stderr


# -- PostGIS: CQL2 and dynamic tiles ---------------------------------------------------
@pytest.mark.postgis
def test_postgis_cql2_filters_and_dynamic_tiles(tmp_path, pg_db_url):
    layers = make_project(tmp_path, database_url=pg_db_url)
    b = layers["buildings"]
    with serve(tmp_path, database_url=pg_db_url) as url, httpx.Client(base_url=url, timeout=60) as c:
        items = "/collections/buildings/items"
        expected = int((b["height"] > 50).sum())
        assert 0 < expected < len(b)

        r = c.get(items, params={"filter": "height>50", "filter-lang": "cql2-text", "limit": 1000})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["numberMatched"] == expected
        assert {f["id"] for f in doc["features"]} == set(b.loc[b["height"] > 50, "id"])

        cql_json = {"op": "and", "args": [
            {"op": ">", "args": [{"property": "height"}, 50]},
            {"op": "<=", "args": [{"property": "height"}, 90]}]}
        expected2 = int(((b["height"] > 50) & (b["height"] <= 90)).sum())
        import json as _json
        r = c.post(items, content=_json.dumps(cql_json), params={"limit": 1000},
                   headers={"Content-Type": "application/query-cql-json"})
        assert r.status_code == 200, r.text
        assert r.json()["numberMatched"] == expected2
        r = c.get(items, params={"filter": _json.dumps(cql_json), "filter-lang": "cql2-json", "limit": 1000})
        assert r.status_code == 200, r.text
        assert r.json()["numberMatched"] == expected2

        bbox = (126.9750, 37.5640, 126.9810, 37.5690)
        r = c.get(items, params={"bbox": ",".join(map(str, bbox)), "limit": 1000}).json()
        assert {f["id"] for f in r["features"]} == set(b.loc[b.intersects(shapely.box(*bbox)), "id"])

        x, y = tile_of(126.9779692, 37.5662952, 16)
        t = c.get(_tile_path(16, y, x))
        assert t.status_code == 200 and t.headers["content-type"] == MVT
        tile = mapbox_vector_tile.decode(t.content)
        got = {f["properties"]["id"] for f in tile["buildings"]["features"]}
        merc = b.to_crs(3857)
        inside = set(merc.loc[merc.intersects(tile_box_3857(16, x, y)), "id"])
        assert inside and inside <= got
        assert c.get(_tile_path(16, y, x), headers={"If-None-Match": t.headers["etag"]}).status_code == 304
        assert c.get(_tile_path(17, y, x)).status_code == 404


def test_conformance_requests_do_not_grow_pygeoapi_state(project, tmp_path):
    """pygeoapi 0.21 extends a module-level list on every /conformance call; our route
    restores it. Checked in a fresh process (one pygeoapi config per process)."""
    script = (
        "import sys, warnings; warnings.simplefilter('ignore')\n"
        "from starlette.testclient import TestClient\n"
        "from api.app import create_app\n"
        "import pygeoapi.api as core\n"
        "client = TestClient(create_app(sys.argv[1], '127.0.0.1', 8000))\n"
        "sizes = []\n"
        "for _ in range(5):\n"
        "    assert client.get('/conformance').status_code == 200\n"
        "    sizes.append(len(core.CONFORMANCE_CLASSES))\n"
        "print(sizes)\n"
    )
    copy = tmp_path / "project"  # create_app rewrites build/pygeoapi: keep the served one intact
    shutil.copytree(project[0], copy, ignore=shutil.ignore_patterns("serve.log"))
    r = subprocess.run([sys.executable, "-c", script, str(copy)], capture_output=True, text=True,
                       timeout=120, cwd=str(REPO))
    assert r.returncode == 0, r.stderr
    sizes = ast.literal_eval(r.stdout.strip().splitlines()[-1])
    assert len(set(sizes)) == 1


def test_cql2_on_the_embedded_store_holds_a_bounded_number_of_rows(project, monkeypatch):
    """The provider itself (no server): over the cap, a clear refusal instead of loading them all."""
    from api.cql2.parse import parse_text as parse
    from pygeoapi.provider.base import ProviderInvalidQueryError

    import api.providers.gpkg_features as gpkg

    provider = gpkg.GeoPackageProvider({"name": "gpkg", "type": "feature", "data": str(project[0] / "build" /
                                        "citytwin.gpkg"), "table": "buildings", "id_field": "id"})
    assert provider.query(filterq=parse("height > 50"), limit=1000)["numberMatched"] == \
        int((project[1]["buildings"]["height"] > 50).sum())
    monkeypatch.setattr(gpkg, "MAX_FILTER_ROWS", 100)
    with pytest.raises(ProviderInvalidQueryError, match="add a bbox"):
        provider.query(filterq=parse("height > 50"))
    b = project[1]["buildings"]
    box = [126.9750, 37.5640, 126.9810, 37.5690]
    assert b.intersects(shapely.box(*box)).sum() <= 100  # a bbox keeps the candidates under the cap
    want = set(b.loc[(b["height"] > 50) & b.intersects(shapely.box(*box)), "id"])
    got = provider.query(filterq=parse("height > 50"), bbox=box, limit=1000)
    assert {f["id"] for f in got["features"]} == want and got["numberMatched"] == len(want) > 0

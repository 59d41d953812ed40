"""Real clients against the served sample city (the demo): GDAL's OAPIF and OGCAPI drivers, both
Debian's ogrinfo and the GDAL inside pyogrio, and OWSLib, on every collection; and the details
of OGC API Features and Tiles those clients rely on. Expected counts come from the store file
read directly, tile ranges from pyproj."""
from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyogrio
import pytest
import yaml
from owslib.ogcapi.features import Features
from pyproj import Transformer

from api_server import serve
from shared_data import shared_data

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
MVT = "application/vnd.mapbox-vector-tile"
OGRINFO = shutil.which("ogrinfo")
needs_ogrinfo = pytest.mark.skipif(OGRINFO is None, reason="Debian's gdal-bin is not installed (make system-deps)")


@pytest.fixture(scope="module")
def base(built_sample_city: Path) -> Iterator[str]:
    with serve(built_sample_city) as url:
        yield url


@pytest.fixture(scope="module")
def expected_counts(built_sample_city: Path) -> dict[str, int]:
    """Features per collection: the store's layers read straight from the GeoPackage, and the
    models the catalog places."""
    gpkg = built_sample_city / "build" / "citytwin.gpkg"
    counts = {str(name): pyogrio.read_info(gpkg, layer=str(name))["features"]
              for name, _ in pyogrio.list_layers(gpkg)}
    catalog = yaml.safe_load((built_sample_city / "citytwin.yaml").read_text(encoding="utf-8"))
    counts["landmark_models"] = len(catalog["layers"]["landmark_models"]["models"])
    return counts


def _collections(base: str) -> dict[str, dict]:
    return {c["id"]: c for c in httpx.get(f"{base}/collections?f=json").json()["collections"]}


def _ogrinfo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OGRINFO, *args], capture_output=True, text=True, timeout=300)


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("ERROR", "FAILURE"))]


# -- collection descriptions ----------------------------------------------------------------
def test_every_collection_has_a_2d_crs84_extent_and_items(base: str, expected_counts: dict[str, int]) -> None:
    listed = _collections(base)
    assert set(expected_counts) <= set(listed)
    for name in expected_counts:
        doc = listed[name]
        spatial = doc["extent"]["spatial"]
        assert spatial["crs"] == CRS84, name
        assert [len(b) for b in spatial["bbox"]] == [4], name
        assert doc.get("itemType") == "feature", name
        assert "items" in [lk["rel"] for lk in doc["links"]], name


def test_3d_extent_is_the_tileset_heights(base: str, built_sample_city: Path) -> None:
    import json

    region = json.loads((built_sample_city / "build" / "3dtiles" / "buildings" / "tileset.json").read_text())
    w, s, e, n, lo, hi = region["root"]["boundingVolume"]["region"]
    doc = httpx.get(f"{base}/collections/buildings?f=json").json()
    assert doc["extent"]["vertical"]["interval"] == [[pytest.approx(lo, abs=1e-3), pytest.approx(hi, abs=1e-3)]]
    bbox = doc["extent"]["spatial"]["bbox"][0]
    assert bbox[0] <= math.degrees(w) + 1e-6 and bbox[2] >= math.degrees(e) - 1e-6
    assert bbox[1] <= math.degrees(s) + 1e-6 and bbox[3] >= math.degrees(n) - 1e-6


def test_landmark_models_items_are_the_placed_models(base: str, built_sample_city: Path) -> None:
    catalog = yaml.safe_load((built_sample_city / "citytwin.yaml").read_text(encoding="utf-8"))
    models = catalog["layers"]["landmark_models"]["models"]
    page = httpx.get(f"{base}/collections/landmark_models/items?f=json").json()
    got = {f["id"]: f for f in page["features"]}
    assert set(got) == {m["id"] for m in models}
    for m in models:
        assert got[m["id"]]["geometry"]["coordinates"] == pytest.approx([m["lon"], m["lat"]])
        assert got[m["id"]]["properties"]["heading"] == pytest.approx(m["heading"])
    html = httpx.get(f"{base}/collections/landmark_models?f=html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "<html" in html.text.lower()


# -- GDAL ---------------------------------------------------------------------------------------
@needs_ogrinfo
def test_debian_ogrinfo_oapif_lists_every_collection_without_errors(base: str, expected_counts: dict[str, int]) -> None:
    proc = _ogrinfo("-ro", "-so", f"OAPIF:{base}")
    assert proc.returncode == 0, proc.stderr
    assert _error_lines(proc) == []
    for name in expected_counts:
        assert f": {name} (title:" in proc.stdout


@needs_ogrinfo
def test_debian_ogrinfo_oapif_counts_every_collection(base: str, expected_counts: dict[str, int]) -> None:
    for name, count in expected_counts.items():
        proc = _ogrinfo("-ro", "-so", f"OAPIF:{base}", name)
        assert _error_lines(proc) == [], name
        assert f"Feature Count: {count}\n" in proc.stdout, (name, proc.stdout[-400:])


@needs_ogrinfo
def test_debian_ogrinfo_ogcapi_items_opens_every_collection(base: str, expected_counts: dict[str, int]) -> None:
    # API=ITEMS: Debian's GDAL 3.6.2 was built without the OGCAPI driver's vector-tile branch (it sits
    # under #ifdef OGR_ENABLE_DRIVER_GML; the library holds none of its strings, e.g. "vectorType"),
    # so in its default mode it gives up, silently, on any collection that offers vector tiles.
    # The GDAL in pyogrio reads the tiles (test_wheel_gdal_ogcapi_opens_every_tiled_collection_as_tiles).
    for name, count in expected_counts.items():
        proc = _ogrinfo("-ro", "-so", "-oo", "API=ITEMS", f"OGCAPI:{base}/collections/{name}", name)
        assert _error_lines(proc) == [], (name, proc.stdout[-400:], proc.stderr[-400:])
        assert f"Feature Count: {count}\n" in proc.stdout, name


def test_wheel_gdal_oapif_reads_every_collection(base: str, expected_counts: dict[str, int]) -> None:
    listed = {str(n) for n, _ in pyogrio.list_layers(f"OAPIF:{base}")}
    assert listed == set(expected_counts) | (listed - set(expected_counts))
    assert set(expected_counts) <= listed
    for name, count in expected_counts.items():
        df = pyogrio.read_dataframe(f"OAPIF:{base}", layer=name)
        assert len(df) == count, name


def test_wheel_gdal_ogcapi_items_opens_every_collection(base: str, expected_counts: dict[str, int]) -> None:
    for name, count in expected_counts.items():
        df = pyogrio.read_dataframe(f"OGCAPI:{base}/collections/{name}", layer=name, API="ITEMS")
        assert len(df) == count, name


# -- OWSLib -----------------------------------------------------------------------------------
def test_owslib_lists_and_reads_every_collection(base: str, expected_counts: dict[str, int]) -> None:
    api = Features(base)
    ids = {c["id"] for c in api.collections()["collections"]}
    assert set(expected_counts) <= ids
    for name, count in expected_counts.items():
        page = api.collection_items(name, limit=10)
        assert page["numberMatched"] == count, name
        assert len(page["features"]) == min(10, count), name


def test_owslib_typo_parameter_is_an_error_not_an_empty_page(base: str) -> None:
    resp = httpx.get(f"{base}/collections/buildings/items", params={"bbox_crs": CRS84, "limit": 1})
    assert resp.status_code == 400
    assert "'bbox_crs'" in resp.json()["description"]
    # the collection's properties are equality filters, so they are known parameters
    assert httpx.get(f"{base}/collections/buildings/items", params={"usage": "residential", "limit": 1}).status_code == 200


# -- Features details -----------------------------------------------------------------------------
def test_items_are_geojson(base: str) -> None:
    for url in (f"{base}/collections/gu/items?f=json", f"{base}/collections/gu/items"):
        resp = httpx.get(url, headers={"Accept": "application/geo+json"})
        assert resp.status_code == 200
        assert resp.headers["content-type"].split(";")[0] == "application/geo+json"
    fid = httpx.get(f"{base}/collections/gu/items?f=json").json()["features"][0]["id"]
    one = httpx.get(f"{base}/collections/gu/items/{fid}?f=json")
    assert one.headers["content-type"].split(";")[0] == "application/geo+json"


@pytest.mark.parametrize("value", ["../..", "2024-05-01", "2024-05-01T09:00:00Z", "2020-01-01/..",
                                   "../2030-12-31T23:59:59+09:00", "2020-01-01/2021-01-01"])
def test_datetime_on_a_collection_without_time_matches_everything(base: str, expected_counts, value: str) -> None:
    resp = httpx.get(f"{base}/collections/gu/items", params={"datetime": value, "f": "json"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["numberMatched"] == expected_counts["gu"]


@pytest.mark.parametrize("value", ["2020-13", "yesterday", "2021-01-01/2020-01-01", "a/b/c", ""])
def test_malformed_datetime_is_a_400(base: str, value: str) -> None:
    resp = httpx.get(f"{base}/collections/gu/items", params={"datetime": value})
    assert resp.status_code == 400
    assert resp.json()["description"].startswith("datetime=")


def test_no_500s_on_odd_items_requests(base: str) -> None:
    empty = httpx.post(f"{base}/collections/gu/items")
    assert empty.status_code == 400 and "needs a body" in empty.json()["description"]
    huge = httpx.get(f"{base}/collections/buildings/items", params={"height": "99999999999999999999999"})
    assert huge.status_code == 400 and "height" in huge.json()["description"]


# -- Tiles ----------------------------------------------------------------------------------------
def _tile_ranges(bounds: list[float], z: int) -> tuple[int, int, int, int]:
    """minRow, maxRow, minCol, maxCol of WebMercatorQuad tiles over lon/lat ``bounds``, via pyproj."""
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    half = 20037508.342789244
    size = 2 * half / (1 << z)
    x0, y0 = to_merc.transform(bounds[0], bounds[1])
    x1, y1 = to_merc.transform(bounds[2], bounds[3])
    return (int((half - y1) // size), int((half - y0) // size), int((x0 + half) // size), int((x1 + half) // size))


def test_tileset_metadata_links_and_limits(base: str) -> None:
    for name in ("buildings", "gu", "landmarks"):
        tilejson = httpx.get(f"{base}/collections/{name}/tiles/WebMercatorQuad/tilejson.json").json()
        doc = httpx.get(f"{base}/collections/{name}/tiles/WebMercatorQuad?f=json").json()
        assert all("type_" not in lk for lk in doc["links"])
        by_rel = {lk["rel"]: lk for lk in doc["links"]}
        assert by_rel["item"]["type"] == MVT
        assert by_rel["http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"]["type"] == "application/json"
        limits = doc["tileMatrixSetLimits"]
        assert [lim["tileMatrix"] for lim in limits] == [str(z) for z in range(tilejson["minzoom"], tilejson["maxzoom"] + 1)]
        for lim in limits:
            expected = _tile_ranges(tilejson["bounds"], int(lim["tileMatrix"]))
            assert (lim["minTileRow"], lim["maxTileRow"], lim["minTileCol"], lim["maxTileCol"]) == expected
        # a tile inside the limits of the deepest zoom holds data
        lim = limits[-1]
        z, row, col = lim["tileMatrix"], (lim["minTileRow"] + lim["maxTileRow"]) // 2, lim["minTileCol"]
        assert httpx.get(f"{base}/collections/{name}/tiles/WebMercatorQuad/{z}/{row}/{col}").status_code in (200, 204)


def test_tile_matrix_set_definition_reads_as_tms_1_and_2(base: str) -> None:
    doc = httpx.get(f"{base}/TileMatrixSets/WebMercatorQuad").json()
    assert doc["id"] == doc["identifier"] == "WebMercatorQuad"
    assert doc["type"] == "TileMatrixSetType"
    assert len(doc["tileMatrix"]) == len(doc["tileMatrices"])
    for old, new in zip(doc["tileMatrix"], doc["tileMatrices"]):
        assert old["topLeftCorner"] == new["pointOfOrigin"] and old["matrixWidth"] == new["matrixWidth"]
    listed = httpx.get(f"{base}/TileMatrixSets?f=json").json()["tileMatrixSets"]
    assert sorted(t["id"] for t in listed) == ["WebMercatorQuad", "WorldCRS84Quad"]
    crs84 = httpx.get(f"{base}/TileMatrixSets/WorldCRS84Quad").json()
    assert crs84["boundingBox"]["lowerCorner"] == [-180, -90] and crs84["tileMatrix"][0]["topLeftCorner"] == [-180, 90]


@pytest.mark.parametrize("path", ["/tiles/WorldCRS84Quad", "/tiles/Foo", "/TileMatrixSets/WorldMercatorWGS84Quad",
                                  "/TileMatrixSets/Foo", "/collections/gu/tiles/Foo",
                                  "/collections/gu/tiles/EuropeanETRS89_LAEAQuad/metadata",
                                  "/collections/gu/tiles/Foo/1/1/1?f=mvt",
                                  "/collections/gu/tiles/WorldCRS84Quad/1/1/1?f=mvt",  # a level the layer lacks
                                  "/collections/gu/tiles/WebMercatorQuad/3/1/1?f=mvt",
                                  "/collections/nope/tiles", "/collections/landmark_models/tiles"])
def test_tiles_that_do_not_exist_are_json_404s(base: str, path: str) -> None:
    resp = httpx.get(f"{base}{path}")
    assert resp.status_code == 404
    assert resp.headers["content-type"].split(";")[0] == "application/json"
    assert resp.json()["code"] == "NotFound" and resp.json()["description"]


def test_geovolumes_conformance_uris_are_http(base: str) -> None:
    classes = httpx.get(f"{base}/conformance?f=json").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-geovolumes-1/1.0/conf/core" in classes
    assert not [c for c in classes if c.startswith("https://")]


def test_html_conformance_lists_no_features_part_4(base: str) -> None:
    page = httpx.get(f"{base}/conformance?f=html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "ogcapi-features-1/1.0/conf/core" in page.text
    assert "ogcapi-features-4" not in page.text


# -- 3D Tiles files -----------------------------------------------------------------------------
def test_tileset_is_served_as_its_link_says(base: str) -> None:
    doc = httpx.get(f"{base}/collections/buildings?f=json").json()
    (link,) = [lk for lk in doc["links"] if lk["rel"].endswith("/3d-geovolumes")]
    resp = httpx.get(link["href"])
    assert resp.headers["content-type"].split(";")[0] == link["type"]


def test_3d_tiles_files_are_readable_by_range(base: str, built_sample_city: Path) -> None:
    import json

    folder = built_sample_city / "build" / "3dtiles" / "landmark_models"
    tileset = json.loads((folder / "tileset.json").read_text())
    uri = tileset["root"]["content"]["uri"] if "content" in tileset["root"] else tileset["root"]["children"][0]["content"]["uri"]
    data = (folder / uri).read_bytes()
    url = f"{base}/collections/landmark_models/3dtiles/{uri}"
    assert httpx.get(url).headers["accept-ranges"] == "bytes"
    head = httpx.get(url, headers={"Range": "bytes=0-11"})
    assert head.status_code == 206
    assert head.content == data[:12] and head.content[:4] == b"glTF"
    assert head.headers["content-range"] == f"bytes 0-11/{len(data)}"
    tail = httpx.get(url, headers={"Range": "bytes=-8"})
    assert tail.status_code == 206 and tail.content == data[-8:]
    assert tail.headers["content-range"] == f"bytes {len(data) - 8}-{len(data) - 1}/{len(data)}"
    rest = httpx.get(url, headers={"Range": f"bytes={len(data) - 3}-"})
    assert rest.status_code == 206 and rest.content == data[-3:]
    past = httpx.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{len(data)}"
    assert past.headers["content-type"].split(";")[0] == "application/json"
    stale = httpx.get(url, headers={"Range": "bytes=0-3", "If-Range": '"not-the-etag"'})
    assert stale.status_code == 200 and stale.content == data


# -- OpenAPI ----------------------------------------------------------------------------------------
def test_openapi_describes_tile_metadata_as_served(base: str) -> None:
    import jsonschema

    doc = httpx.get(f"{base}/openapi?f=json").json()
    cases = {"/TileMatrixSets": "/TileMatrixSets?f=json",
             "/TileMatrixSets/{tileMatrixSetId}": "/TileMatrixSets/WebMercatorQuad?f=json",
             "/collections/{collectionId}/tiles/{tileMatrixSetId}": "/collections/gu/tiles/WebMercatorQuad?f=json"}
    for path, url in cases.items():
        responses = doc["paths"][path]["get"]["responses"]
        got = httpx.get(f"{base}{url}")
        assert got.status_code == 200
        jsonschema.validate(got.json(), responses["200"]["content"]["application/json"]["schema"])
    # pygeoapi's own /collections/{id}/tiles path points at the shared 'tiles' schema
    listed = httpx.get(f"{base}/collections/gu/tiles?f=json").json()
    jsonschema.validate(listed, doc["components"]["schemas"]["tiles"])
    assert listed["tilesets"][0]["dataType"] == "vector"
    missing = httpx.get(f"{base}/collections/gu/tiles/Foo")
    schema = doc["paths"]["/collections/{collectionId}/tiles/{tileMatrixSetId}"]["get"]["responses"]["404"]
    jsonschema.validate(missing.json(), schema["content"]["application/json"]["schema"])


# -- the same details on PostGIS (pygeoapi's PostgreSQL provider and the fast path) -------------------
@pytest.mark.postgis
def test_postgis_items_details(tmp_path, pg_db_url) -> None:
    from api_server import make_project

    layers = make_project(tmp_path, database_url=pg_db_url)
    with serve(tmp_path, database_url=pg_db_url) as url, httpx.Client(base_url=url, timeout=60) as c:
        for params in ({"f": "json"}, {"f": "json", "skipGeometry": "false"}):  # fast path, then pygeoapi
            resp = c.get("/collections/buildings/items", params=params, headers={"Accept": "application/geo+json"})
            assert resp.status_code == 200
            assert resp.headers["content-type"].split(";")[0] == "application/geo+json"
        one = c.get("/collections/buildings/items/bld-0001?f=json")
        assert one.headers["content-type"].split(";")[0] == "application/geo+json"
        huge = c.get("/collections/buildings/items", params={"height": "99999999999999999999999"})
        assert huge.status_code == 400 and "height" in huge.json()["description"]
        assert c.post("/collections/buildings/items").status_code == 400
        anytime = c.get("/collections/buildings/items", params={"datetime": "../..", "limit": 1})
        assert anytime.status_code == 200 and anytime.json()["numberMatched"] == len(layers["buildings"])
        typo = c.get("/collections/buildings/items", params={"bbox_crs": CRS84})
        assert typo.status_code == 400 and "'bbox_crs'" in typo.json()["description"]


# -- WorldCRS84Quad: the tile set GDAL's OGCAPI driver opens ------------------------------------------
def test_crs84_tileset_limits(base: str) -> None:
    listed = httpx.get(f"{base}/collections/gu/tiles?f=json").json()["tilesets"]
    assert {t["tileMatrixSetURI"].rsplit("/", 1)[1] for t in listed} == {"WebMercatorQuad", "WorldCRS84Quad"}
    tilejson = httpx.get(f"{base}/collections/gu/tiles/WebMercatorQuad/tilejson.json").json()
    doc = httpx.get(f"{base}/collections/gu/tiles/WorldCRS84Quad?f=json").json()
    assert doc["crs"] == CRS84
    w, s, e, n = tilejson["bounds"]
    levels = [int(lim["tileMatrix"]) for lim in doc["tileMatrixSetLimits"]]
    # a level-L tile spans 180/2^L degrees, as a Web Mercator tile at zoom L+1 spans 360/2^(L+1)
    assert levels == list(range(tilejson["minzoom"] - 1, tilejson["maxzoom"]))
    for lim in doc["tileMatrixSetLimits"]:
        size = 180 / 2 ** int(lim["tileMatrix"])
        assert (lim["minTileCol"], lim["maxTileCol"]) == (int((w + 180) // size), int((e + 180) // size))
        assert (lim["minTileRow"], lim["maxTileRow"]) == (int((90 - n) // size), int((90 - s) // size))


def test_wheel_gdal_ogcapi_opens_every_tiled_collection_as_tiles(base: str, built_sample_city: Path) -> None:
    gpkg = built_sample_city / "build" / "citytwin.gpkg"
    for name in ("gu", "dong", "streets", "landmarks", "buildings"):
        tilejson = httpx.get(f"{base}/collections/{name}/tiles/WebMercatorQuad/tilejson.json").json()
        layers = [str(n) for n, _ in pyogrio.list_layers(f"OGCAPI:{base}/collections/{name}")]
        levels = range(tilejson["minzoom"] - 1, tilejson["maxzoom"])
        assert layers == [f"Zoom level {level}" for level in levels], name
        # every feature of the store is in the tiles of the first level, where it lies (lon/lat)
        df = pyogrio.read_dataframe(f"OGCAPI:{base}/collections/{name}", layer=layers[0])
        src = pyogrio.read_dataframe(gpkg, layer=name)
        assert set(df["id"]) == set(src["id"]), name
        one = src.iloc[0]
        got = df[df["id"] == one["id"]].geometry.union_all()
        assert got.distance(one.geometry) < 1e-4, name  # within the tile grid's rounding (~10 m at this level)


def test_pmtiles_archive_is_readable_by_range(base: str, built_sample_city: Path) -> None:
    data = (built_sample_city / "build" / "tiles" / "gu.pmtiles").read_bytes()
    meta = httpx.get(f"{base}/collections/gu/tiles/WebMercatorQuad?f=json").json()
    (url,) = [lk["href"] for lk in meta["links"] if lk["type"] == "application/vnd.pmtiles"]
    assert url == f"{base}/collections/gu/tiles/WebMercatorQuad/archive.pmtiles"
    assert "/collections/{collectionId}/tiles/WebMercatorQuad/archive.pmtiles" in httpx.get(f"{base}/openapi?f=json").json()["paths"]
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    header = httpx.get(url, headers={"Range": "bytes=0-126"})  # the PMTiles v3 header
    assert header.status_code == 206 and header.content == data[:127] and header.content[:7] == b"PMTiles"
    assert header.headers["content-range"] == f"bytes 0-126/{len(data)}"
    middle = httpx.get(url, headers={"Range": f"bytes=127-{len(data) + 50}"})  # an end past the file is cut
    assert middle.status_code == 206 and middle.content == data[127:]
    past = httpx.get(url, headers={"Range": f"bytes={len(data)}-{len(data) + 9}"})
    assert past.status_code == 416 and past.headers["content-type"].split(";")[0] == "application/json"
    assert httpx.get(url, headers={"If-None-Match": whole.headers["etag"]}).status_code == 304
    gone = httpx.get(f"{base}/collections/landmark_models/tiles/WebMercatorQuad/archive.pmtiles")
    assert gone.status_code == 404 and gone.headers["content-type"].split(";")[0] == "application/json"


# -- a collection that is only 3D Tiles (city_model) ------------------------------------------------
@pytest.mark.realdata
def test_city_model_collection_page_is_html(tmp_path) -> None:
    from api_server import make_project, run_citytwin

    plateau = shared_data("citygml", "plateau_yokosuka_52397519_bldg_6697_op.gml")
    make_project(tmp_path)
    with open(tmp_path / "citytwin.yaml", "a", encoding="utf-8") as fh:
        fh.write(f"  plateau:\n    kind: city_model\n    title: Yokosuka <PLATEAU>\n    source: {plateau}\n")
    run_citytwin("build", "--project", str(tmp_path), "--layer", "plateau")
    with serve(tmp_path) as url:
        page = httpx.get(f"{url}/collections/plateau?f=html")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<h1>Yokosuka &lt;PLATEAU&gt;</h1>" in page.text  # the catalog title, escaped
        assert f'href="{url}/collections/plateau/3dtiles/tileset.json"' in page.text
        browser = httpx.get(f"{url}/collections/plateau", headers={"Accept": "text/html"})
        assert browser.headers["content-type"].startswith("text/html")
        doc = httpx.get(f"{url}/collections/plateau?f=json")
        assert doc.headers["content-type"].split(";")[0] == "application/json"
        assert doc.json()["extent"]["spatial"]["crs"] == CRS84 and len(doc.json()["extent"]["spatial"]["bbox"][0]) == 4

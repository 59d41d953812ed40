"""OGC API Records on the served sample city: OWSLib's Records client lists and searches the
catalog; a client finds the buildings layer by keyword and bbox and follows its links to
features, tiles and 3D Tiles; q, bbox, type, datetime, ids and paging give the subsets computed
here from the catalog file, the styles folder, the store file and the COGs read directly.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import mapbox_vector_tile
import pyogrio
import pytest
import rasterio
import yaml
from owslib.ogcapi.records import Records
from pyproj import Transformer

from api_server import CITY_HALL, CITYTWIN, REPO, make_project, serve
from postgis_server import free_port
from test_live import write_live_project

GEOJSON = "application/geo+json"
GEOVOLUMES = "http://www.opengis.net/def/rel/ogc/1.0/3d-geovolumes"
RECORDS_CLASSES = {f"http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/{c}" for c in (
    "record-core", "record-collection", "record-core-query-parameters", "records-api", "searchable-catalog", "json")}
ITEMS = "/collections/catalog/items"
FAR_AWAY = (129.0, 35.0, 129.2, 35.2)  # Busan: nothing of the sample city is there


@pytest.fixture(scope="module")
def base(built_sample_city: Path) -> Iterator[str]:
    with serve(built_sample_city) as url:
        yield url


@pytest.fixture(scope="module")
def layers(built_sample_city: Path) -> dict[str, dict]:
    return yaml.safe_load((built_sample_city / "citytwin.yaml").read_text(encoding="utf-8"))["layers"]


@pytest.fixture(scope="module")
def styles(layers) -> dict[str, dict]:
    """Style id -> style, for the styles that draw a layer of the project."""
    out = {}
    for path in sorted((REPO / "styles").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if set(doc["sources"]) & set(layers):
            out[path.stem] = doc
    return out


@pytest.fixture(scope="module")
def extents(built_sample_city: Path, layers) -> dict[str, tuple[float, float, float, float]]:
    """Lon/lat extents read from the data: the store's layers, the COGs, the placed models."""
    gpkg = built_sample_city / "build" / "citytwin.gpkg"
    out = {}
    for name, _ in pyogrio.list_layers(gpkg):
        if name in layers:
            out[name] = tuple(pyogrio.read_info(gpkg, layer=name, force_total_bounds=True)["total_bounds"])
    for name, cfg in layers.items():
        if cfg["kind"] == "raster":
            with rasterio.open(built_sample_city / "build" / "cog" / f"{name}.tif") as ds:
                to_lonlat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
                out[name] = to_lonlat.transform_bounds(*ds.bounds)
        if cfg["kind"] == "landmark_models":
            lons, lats = [m["lon"] for m in cfg["models"]], [m["lat"] for m in cfg["models"]]
            out[name] = (min(lons), min(lats), max(lons), max(lats))
    return out


def search(base: str, **params) -> dict:
    resp = httpx.get(f"{base}{ITEMS}", params={"limit": 1000, **params}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith(GEOJSON)
    body = resp.json()
    assert body["numberReturned"] == len(body["features"])
    return body


def ids(base: str, **params) -> set[str]:
    return {f["id"] for f in search(base, **params)["features"]}


def all_ids(layers, styles) -> set[str]:
    return set(layers) | {f"style-{s}" for s in styles}


def href(record: dict, rel: str, title: str | None = None) -> str:
    (found,) = [lk["href"] for lk in record["links"] if lk["rel"] == rel and title in (None, lk.get("title"))]
    return found


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
    half = 20037508.342789244
    return int((x + half) / (2 * half) * 2 ** z), int((half - y) / (2 * half) * 2 ** z)


# -- discovery -----------------------------------------------------------------------------------
def test_owslib_records_client_lists_and_searches_the_catalog(base, layers, styles):
    client = Records(base)
    assert client.records() == ["catalog"]
    assert client.collection("catalog")["itemType"] == "record"
    everything = client.collection_items("catalog", limit=100)
    assert {f["id"] for f in everything["features"]} == all_ids(layers, styles)
    found = client.collection_items("catalog", q="footprints", bbox=list(CITY_HALL) * 2)
    assert [f["id"] for f in found["features"]] == ["buildings"]


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="Debian's gdal-bin is not installed (make system-deps)")
def test_gdal_reads_the_catalog_as_a_collection_without_errors(base, layers, styles):
    count = len(all_ids(layers, styles))
    for args in ([f"OAPIF:{base}"], ["-oo", "API=ITEMS", f"OGCAPI:{base}/collections/catalog"]):
        proc = subprocess.run(["ogrinfo", "-ro", "-so", *args, "catalog"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert not [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith(("ERROR", "FAILURE"))]
        assert f"Feature Count: {count}\n" in proc.stdout, args
    assert len(pyogrio.read_dataframe(f"OAPIF:{base}", layer="catalog")) == count


def test_conformance_landing_and_openapi_announce_the_catalog(base):
    classes = set(httpx.get(f"{base}/conformance", params={"f": "json"}, timeout=30).json()["conformsTo"])
    assert RECORDS_CLASSES <= classes
    landing = httpx.get(f"{base}/", params={"f": "json"}, timeout=30).json()
    (catalog,) = [lk for lk in landing["links"] if lk["rel"] == "http://www.opengis.net/def/rel/ogc/1.0/catalog"]
    assert catalog["href"] == f"{base}/collections/catalog"
    assert httpx.get(catalog["href"], timeout=30).json()["itemType"] == "record"
    paths = httpx.get(f"{base}/openapi", params={"f": "json"}, timeout=60).json()["paths"]
    names = {p["name"] for p in paths[ITEMS]["get"]["parameters"]}
    assert {"q", "bbox", "type", "datetime", "limit", "offset"} <= names
    assert "/collections/catalog/items/{recordId}" in paths


def test_every_record_has_the_core_properties(base, layers, built_sample_city):
    for record in search(base)["features"]:
        assert record["type"] == "Feature"
        assert "http://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core" in record["conformsTo"]
        props = record["properties"]
        assert props["type"] in ("dataset", "style") and props["title"] and props["keywords"]
        assert "time" in record and "geometry" in record
        self_link = href(record, "self")
        assert httpx.get(self_link, timeout=30).json() == record
    one = httpx.get(f"{base}{ITEMS}/buildings", timeout=30)
    assert one.headers["content-type"].startswith(GEOJSON)
    props = one.json()["properties"]
    assert props["title"] == layers["buildings"]["title"]
    assert props["description"] == layers["buildings"]["description"]
    assert props["kind"] == "buildings" and "buildings" in props["keywords"]
    assert "http://www.opengis.net/def/crs/OGC/1.3/CRS84" in props["crs"]


def test_dataset_records_carry_the_catalogs_licence(base, layers, built_sample_city):
    catalog = yaml.safe_load((built_sample_city / "citytwin.yaml").read_text(encoding="utf-8"))
    default = catalog["server"]["license"]
    datasets = [r for r in search(base)["features"] if r["properties"]["type"] == "dataset"]
    assert {r["id"]: r["properties"]["license"] for r in datasets} == {
        name: layers[name].get("license", default) for name in (r["id"] for r in datasets)}
    assert default == "Apache-2.0"


# -- a client finds the buildings and follows the links ------------------------------------------
def test_buildings_found_by_keyword_and_bbox_lead_to_features_tiles_and_3d_tiles(base, layers):
    lon, lat = CITY_HALL
    box = f"{lon - 0.001},{lat - 0.001},{lon + 0.001},{lat + 0.001}"
    (record,) = search(base, q="buildings", bbox=box, type="dataset")["features"]
    assert record["id"] == "buildings"

    items = httpx.get(href(record, "items"), params={"limit": 5}, timeout=60)
    assert items.status_code == 200 and items.headers["content-type"].startswith(GEOJSON)
    assert items.json()["type"] == "FeatureCollection" and len(items.json()["features"]) == 5

    tilejson = httpx.get(href(record, "describedby", "TileJSON"), timeout=30)
    assert tilejson.status_code == 200
    z = layers["buildings"]["maxzoom"]
    x, y = tile_of(lon, lat, z)
    url = tilejson.json()["tiles"][0].replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))
    tile = httpx.get(url, timeout=30)
    assert tile.status_code == 200
    decoded = mapbox_vector_tile.decode(tile.content)
    assert decoded["buildings"]["features"]

    tilesets = httpx.get(href(record, "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"),
                         params={"f": "json"}, timeout=30)
    assert tilesets.status_code == 200 and tilesets.json()["tilesets"]

    tileset = httpx.get(href(record, GEOVOLUMES), timeout=30)
    assert tileset.status_code == 200 and tileset.json()["asset"]["version"]


def test_raster_record_links_its_cog_tiles(base, built_sample_city):
    record = httpx.get(f"{base}{ITEMS}/flood_depth", timeout=30).json()
    tilejson = httpx.get(href(record, "describedby", "COG TileJSON"), timeout=60)
    assert tilejson.status_code == 200 and tilejson.json()["tiles"]
    with rasterio.open(built_sample_city / "build" / "cog" / "flood_depth.tif") as ds:
        epsg = ds.crs.to_epsg()
    assert record["properties"]["crs"] == [f"http://www.opengis.net/def/crs/EPSG/0/{epsg}"]


# -- searches give the subsets computed from the files -------------------------------------------
def test_q_matches_title_description_or_keywords(base, layers, styles):
    def has(text: str, term: str) -> bool:
        return term.casefold() in text.casefold()

    for terms in (["synthetic"], ["Jongno", "palaces"], ["hazard"]):
        want = {n for n, c in layers.items()
                if any(has(c.get("title", "") + " " + c.get("description", ""), t) for t in terms)}
        want |= {f"style-{s}" for s, doc in styles.items()
                 if any(has(doc["name"] + " " + doc["metadata"].get("citytwin:description", ""), t) for t in terms)}
        assert ids(base, q=",".join(terms)) == want, terms
    # a keyword from the layer's kind: every buildings layer, whatever its title says
    assert ids(base, q="footprints") == {n for n, c in layers.items() if c["kind"] == "buildings"}


def test_bbox_gives_the_layers_whose_data_reaches_into_it(base, extents):
    lon, lat = CITY_HALL
    for box in ((lon - 0.0005, lat - 0.0005, lon + 0.0005, lat + 0.0005), (126.95, 37.55, 126.97, 37.56), FAR_AWAY):
        want = {n for n, (w, s, e, n_) in extents.items()
                if w <= box[2] and e >= box[0] and s <= box[3] and n_ >= box[1]}
        assert ids(base, bbox=",".join(map(str, box))) == want, box
    assert ids(base, bbox=",".join(map(str, FAR_AWAY))) == set()


def test_record_extent_is_the_data_extent(base, extents):
    for name in ("buildings", "dem"):
        ring = httpx.get(f"{base}{ITEMS}/{name}", timeout=30).json()["geometry"]["coordinates"][0]
        got = (min(p[0] for p in ring), min(p[1] for p in ring), max(p[0] for p in ring), max(p[1] for p in ring))
        assert got == pytest.approx(extents[name], abs=1e-6)


def test_type_matches_record_type_or_layer_kind(base, layers, styles):
    assert ids(base, type="raster") == {n for n, c in layers.items() if c["kind"] == "raster"}
    assert ids(base, type="boundaries,buildings") == {n for n, c in layers.items()
                                                      if c["kind"] in ("boundaries", "buildings")}
    assert ids(base, type="style") == {f"style-{s}" for s in styles}
    assert ids(base, type="dataset") == set(layers)
    assert ids(base, type="nothing-of-that-type") == set()


def test_datetime_matches_the_build_time(base, layers, styles, built_sample_city):
    built = datetime.fromtimestamp((built_sample_city / "build" / "citytwin.gpkg").stat().st_mtime, timezone.utc)
    day = built.date().isoformat()
    style_days = {s: datetime.fromtimestamp((REPO / "styles" / f"{s}.json").stat().st_mtime, timezone.utc).date()
                  for s in styles}
    assert ids(base, datetime="../..") == all_ids(layers, styles)
    assert ids(base, datetime="2000-01-01/2000-12-31") == set()
    assert ids(base, datetime=day) == set(layers) | {f"style-{s}" for s, d in style_days.items() if d == built.date()}
    assert ids(base, datetime=f"../{day}") == all_ids(layers, styles) - {
        f"style-{s}" for s, d in style_days.items() if d > built.date()}
    later = f"{built.year + 1}-01-01T00:00:00Z/.."
    assert ids(base, datetime=later) == {f"style-{s}" for s, d in style_days.items() if d.year > built.year}


def test_ids_and_paging(base, layers, styles):
    assert ids(base, ids="gu,dong,nowhere") == {"gu", "dong"}
    everyone, seen, url = all_ids(layers, styles), [], f"{base}{ITEMS}?limit=3"
    pages = 0
    while url:
        body = httpx.get(url, timeout=30).json()
        assert body["numberMatched"] == len(everyone) and body["numberReturned"] <= 3
        seen += [f["id"] for f in body["features"]]
        url = next((lk["href"] for lk in body["links"] if lk["rel"] == "next"), None)
        pages += 1
        assert pages <= len(everyone)
    assert sorted(seen) == sorted(everyone) and pages == math.ceil(len(everyone) / 3)


def test_empty_parameters_are_no_filter(base, layers, styles):
    empty = {"q": "", "bbox": "", "type": "", "datetime": "", "ids": "", "externalIds": ""}
    assert search(base, **empty)["features"] == search(base)["features"]
    assert ids(base, **empty) == all_ids(layers, styles)


@pytest.mark.parametrize("params,needle", [
    ({"bbox_crs": "x"}, "unknown query parameter 'bbox_crs'"),
    ({"bbox": "1,2,3"}, "parameter 'bbox' must be 4 numbers"),
    ({"bbox": "126,38,127,37"}, "minlat not above maxlat"),
    ({"datetime": "yesterday"}, "is not an RFC 3339 date"),
    ({"datetime": "2024-05-02/2024-05-01"}, "the interval ends before it starts"),
    ({"limit": "0"}, "parameter 'limit' must be at least 1"),
    ({"f": "html"}, "offered as JSON only"),
])
def test_bad_search_parameters_are_400(base, params, needle):
    resp = httpx.get(f"{base}{ITEMS}", params=params, timeout=30)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["type"] == "InvalidParameterValue" and needle in body["description"], body


def test_unknown_record_is_404(base):
    resp = httpx.get(f"{base}{ITEMS}/no_such_layer", timeout=30)
    assert resp.status_code == 404 and resp.json()["type"] == "NotFound"


# -- live layers, and the reserved id --------------------------------------------------------------
def test_live_layers_are_records_without_extent_with_their_tile_template(tmp_path):
    project = write_live_project(tmp_path / "live")
    live = {n for n, c in yaml.safe_load((project / "citytwin.yaml").read_text())["layers"].items()
            if c["kind"] == "live"}
    with serve(project) as url:
        assert ids(url, type="live") == live
        lon, lat = CITY_HALL
        assert not live & ids(url, bbox=f"{lon - 1},{lat - 1},{lon + 1},{lat + 1}")
        for name in live:
            record = httpx.get(f"{url}{ITEMS}/{name}", timeout=30).json()
            assert record["geometry"] is None and record["time"] is None
            assert href(record, "alternate") == f"{url}/live/{name}/items"
            (template,) = record["linkTemplates"]
            assert template["uriTemplate"] == f"{url}/live/{name}/tiles/{{z}}/{{x}}/{{y}}"
            assert httpx.get(href(record, "items"), timeout=30).status_code == 200


def test_a_layer_named_catalog_is_refused_at_serve(tmp_path):
    project = tmp_path / "city"
    make_project(project)
    text = (project / "citytwin.yaml").read_text(encoding="utf-8")
    (project / "citytwin.yaml").write_text(text.replace("  landmarks:\n", "  catalog:\n"), encoding="utf-8")
    exe = [str(CITYTWIN)] if CITYTWIN.exists() else [sys.executable, "-m", "pipelines.cli"]
    proc = subprocess.run([*exe, "serve", "--project", str(project), "--port", str(free_port())], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: layer name 'catalog'") and "reserved for the OGC API Records catalog" in line
    assert "rename the layer" in line and "citytwin.yaml" in line


def test_postgis_project_has_the_same_catalog(tmp_path, pg_db_url):
    layers = make_project(tmp_path, database_url=pg_db_url)
    with serve(tmp_path, database_url=pg_db_url) as url:
        assert ids(url, type="dataset") == set(layers)
        for name, gdf in layers.items():
            record = httpx.get(f"{url}{ITEMS}/{name}", timeout=30).json()
            ring = record["geometry"]["coordinates"][0]
            got = (min(p[0] for p in ring), min(p[1] for p in ring), max(p[0] for p in ring), max(p[1] for p in ring))
            assert got == pytest.approx(tuple(gdf.total_bounds), abs=1e-6)
            items = httpx.get(href(record, "items"), params={"limit": 1000}, timeout=60).json()
            assert len(items["features"]) == len(gdf)

"""The AR endpoints over real HTTP (``citytwin serve``) on a constructed scene.

The scene is drawn in EPSG:5186 metres around a device near Seoul City Hall and reprojected
with pyproj: a 60 m tower 80-110 m north of the device, a POI behind it, one in clear view
to the east, one on the tower's roof, streets forming a known route. Expectations come
from that geometry, from pyproj's own ECEF transform and from a rotation written here.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import httpx
import numpy as np
import pytest
import shapely
from pyproj import Transformer

from api_server import serve

CATALOG = """\
name: AR test city
server:
  title: AR test city
layers:
  buildings:
    kind: buildings
    title: Buildings
  landmarks:
    kind: pois
    title: Landmarks
  records_pois:
    kind: pois
    title: Geotagged records
  streets:
    kind: generic
    title: Streets
"""
DEVICE = (126.9780, 37.5665)
TO_M = Transformer.from_crs("EPSG:4326", "EPSG:5186", always_xy=True)
TO_LL = Transformer.from_crs("EPSG:5186", "EPSG:4326", always_xy=True)
ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
X0, Y0 = TO_M.transform(*DEVICE)


def ll(x: float, y: float) -> tuple[float, float]:
    return TO_LL.transform(X0 + x, Y0 + y)


def _poly(x0, y0, x1, y1) -> shapely.Polygon:
    return shapely.Polygon([ll(x0, y0), ll(x1, y0), ll(x1, y1), ll(x0, y1)])


def _line(*pts) -> shapely.LineString:
    return shapely.LineString([ll(x, y) for x, y in pts])


def make_scene(root: Path) -> None:
    from pipelines.catalog import load_catalog
    from pipelines.export3d import footprints_to_tileset
    from pipelines.store import open_store

    root.mkdir(parents=True, exist_ok=True)
    (root / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    catalog = load_catalog(root)
    buildings = gpd.GeoDataFrame(
        {"id": ["tower", "far_block"], "name": ["Tower", "Far block"], "height": [60.0, 10.0]},
        geometry=[_poly(-15, 80, 15, 110), _poly(-300, -300, -280, -280)], crs="EPSG:4326")
    landmarks = gpd.GeoDataFrame(
        {"id": ["behind", "clear", "on_tower"],
         "name_ko": ["뒤쪽 사당", "동쪽 시장", "타워 전망대"],
         "name_en": ["Hidden Shrine", "East Market", None],
         "name_ja": ["裏の祠", None, None],
         "name_zh": ["后面祠堂", "东市场", None],
         "description_en": ["Behind the tower", "In plain view", None],
         "category": ["heritage", "market", "landmark"]},
        geometry=[shapely.Point(ll(0, 200)), shapely.Point(ll(150, 0)), shapely.Point(ll(0, 95))], crs="EPSG:4326")
    records = gpd.GeoDataFrame(
        {"id": ["rec-1"], "name_ko": ["민원 사진"], "name_en": ["Complaint photo"], "category": ["safety"]},
        geometry=[shapely.Point(ll(100, 60))], crs="EPSG:4326")
    streets = gpd.GeoDataFrame(
        {"id": ["alpha", "beta", "gamma"], "name_en": ["Alpha-ro", "Beta-gil", "Gamma-ro"],
         "name_ko": ["알파로", "베타길", "감마로"]},
        geometry=[_line((-300, -30), (300, -30)), _line((60, -300), (60, 300)), _line((60, 210), (-200, 210))],
        crs="EPSG:4326")
    store = open_store(catalog.build_path)
    for name, gdf in {"buildings": buildings, "landmarks": landmarks, "records_pois": records,
                      "streets": streets}.items():
        store.publish(name, gdf)
    footprints_to_tileset(store.read("buildings"), catalog.build_path / "3dtiles" / "buildings",
                          source="buildings", progress=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ar") / "city"
    make_scene(root)
    return root


@pytest.fixture(scope="module")
def base(project: Path) -> Iterator[str]:
    with serve(project) as url:
        yield url


def get(base: str, path: str, **params) -> httpx.Response:
    return httpx.get(f"{base}{path}", params=params, timeout=30)


def view(base: str, **params) -> dict:
    q = {"lon": DEVICE[0], "lat": DEVICE[1], "alt": 1.6, "heading": 45, "pitch": 0, "fov": 120, "radius": 400}
    q.update(params)
    r = get(base, "/ar/view", **q)
    assert r.status_code == 200, r.text
    return r.json()


def enu_reference(origin: tuple[float, float, float], p: tuple[float, float, float]) -> np.ndarray:
    x0, y0, z0 = ECEF.transform(*origin)
    x, y, z = ECEF.transform(*p)
    d = np.array([x - x0, y - y0, z - z0])
    lo, la = math.radians(origin[0]), math.radians(origin[1])
    rot = np.array([[-math.sin(lo), math.cos(lo), 0],
                    [-math.sin(la) * math.cos(lo), -math.sin(la) * math.sin(lo), math.cos(la)],
                    [math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)]])
    return rot @ d


def test_view_occlusion_enu_and_order(base):
    doc = view(base)
    items = {it["id"]: it for it in doc["items"]}
    assert set(items) == {"behind", "clear", "on_tower", "rec-1"}  # both pois layers
    assert items["behind"]["occluded"] is True
    assert items["behind"]["occluded_by"] == {"layer": "buildings", "id": "tower"}
    assert items["clear"]["occluded"] is False and items["clear"]["occluded_by"] is None
    assert items["on_tower"]["occluded"] is False  # its own building does not hide it
    assert items["on_tower"]["on_roof"] is True and items["on_tower"]["height"] == pytest.approx(60.0)
    assert items["behind"]["height"] == 0.0
    dists = [it["distance_m"] for it in doc["items"]]
    assert dists == sorted(dists)
    for it in doc["items"]:
        want = enu_reference((DEVICE[0], DEVICE[1], 1.6), (it["lon"], it["lat"], it["height"]))
        assert np.abs(np.array(it["enu"]) - want).max() < 0.01, it["id"]
        e, n, u = want
        assert it["bearing_deg"] == pytest.approx(math.degrees(math.atan2(e, n)) % 360, abs=0.01)
        assert it["elevation_deg"] == pytest.approx(math.degrees(math.atan2(u, math.hypot(e, n))), abs=0.01)
        assert it["distance_m"] == pytest.approx(float(np.linalg.norm(want)), abs=0.02)
    # The scene's own numbers: 'clear' is 150 m east, 'behind' 200 m north (EPSG:5186 grid ~ true north).
    assert items["clear"]["ground_distance_m"] == pytest.approx(150, abs=0.1)
    assert items["clear"]["bearing_deg"] == pytest.approx(90, abs=0.1)
    assert items["behind"]["bearing_deg"] == pytest.approx(0, abs=0.1) or items["behind"]["bearing_deg"] > 359.9
    assert doc["height_reference"] == "ellipsoid" and doc["terrain"] == "none"
    assert doc["tileset"].endswith("/collections/buildings/3dtiles/tileset.json")
    assert httpx.get(doc["tileset"], timeout=30).status_code == 200


def test_view_from_above_sees_over_the_tower(base):
    doc = view(base, alt=200, pitch=-30, vfov=120)
    behind = next(it for it in doc["items"] if it["id"] == "behind")
    # Line from 200 m down to 0 m crosses the tower's footprint at t in [0.4, 0.55]: 120..90 m > 60 m.
    assert behind["occluded"] is False


def test_view_frustum_and_radius(base):
    north = view(base, heading=0, fov=40, vfov=90)
    assert {it["id"] for it in north["items"]} == {"behind", "on_tower"}  # 'clear' is 90 deg off
    # The roof POI is atan(58.4 / 95) = 31.6 deg up: outside a 40 deg vertical field of view.
    low = view(base, heading=0, fov=40)
    assert {it["id"] for it in low["items"]} == {"behind"}
    near = view(base, radius=120)
    assert "behind" not in {it["id"] for it in near["items"]}
    capped = view(base, radius=1e6)
    assert capped["radius_capped_to"] == 3000 and capped["pose"]["radius"] == 3000
    assert any("capped" in n for n in capped["notes"])


def test_view_language_fallback(base):
    ja = {it["id"]: it for it in view(base, lang="ja")["items"]}
    assert (ja["behind"]["name"], ja["behind"]["name_lang"]) == ("裏の祠", "ja")
    assert (ja["clear"]["name"], ja["clear"]["name_lang"]) == ("East Market", "en")  # ja missing -> en
    assert (ja["on_tower"]["name"], ja["on_tower"]["name_lang"]) == ("타워 전망대", "ko")  # ja, en missing -> ko
    assert ja["behind"]["description"] == "Behind the tower" and ja["behind"]["description_lang"] == "en"
    zh = {it["id"]: it for it in view(base, lang="zh-CN")["items"]}
    assert zh["clear"]["name"] == "东市场" and zh["rec-1"]["name"] == "Complaint photo"


@pytest.mark.parametrize("params, fragment", [
    ({"lat": 91}, "'lat' must be at most 90"),
    ({"lat": -90.5}, "'lat' must be at least -90"),
    ({"lon": "abc"}, "'lon' must be a number"),
    ({"radius": -5}, "'radius' must be above 0"),
    ({"radius": "1e999"}, "'radius' must be a finite number"),
    ({"fov": 0}, "'fov' must be above 0"),
    ({"lang": "<b>"}, "is not a language tag"),
    ({"terrain": "dem"}, "terrain=dem needs a DEM"),
    ({"lon": ""}, "'lon' is required"),
])
def test_view_bad_input(base, params, fragment):
    q = {"lon": DEVICE[0], "lat": DEVICE[1]}
    q.update(params)
    r = get(base, "/ar/view", **q)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "InvalidParameterValue" and fragment in body["description"], body


def test_anchors_roof_terrain_and_entrance(base):
    w, s = ll(-100, -100)
    e, n = ll(200, 250)
    doc = get(base, "/ar/anchors", bbox=f"{w},{s},{e},{n}", lang="en").json()
    by = {(a["type"], a["id"]): a for a in doc["items"]}
    assert by[("poi", "on_tower")]["surface"] == "rooftop" and by[("poi", "on_tower")]["height"] == 60.0
    assert by[("poi", "clear")]["surface"] == "terrain" and by[("poi", "clear")]["height"] == 0.0
    assert doc["terrain"]["model"] == "none" and "terrain height is 0" in doc["terrain"]["source"]
    # The tower's edge nearest a street is its east side (45 m from Beta-gil): its midpoint.
    ent = by[("entrance", "tower:entrance")]
    ex, ey = TO_M.transform(ent["lon"], ent["lat"])
    assert math.hypot(ex - (X0 + 15), ey - (Y0 + 95)) < 0.05
    assert ent["distance_to_street_m"] == pytest.approx(45, abs=0.05)
    assert ("entrance", "far_block:entrance") not in by  # outside the bbox
    only = get(base, "/ar/anchors", bbox=f"{w},{s},{e},{n}", types="entrance").json()
    assert {a["type"] for a in only["items"]} == {"entrance"}
    assert get(base, "/ar/anchors", bbox="1,2,3").status_code == 400
    assert get(base, "/ar/anchors", bbox="126,37,127,38").status_code == 400  # too large
    assert get(base, "/ar/anchors", bbox=f"{w},{s},{e},{n}", types="doors").status_code == 400


def test_route_turns_and_length(base):
    doc = get(base, "/ar/route", **{"from": "clear", "to": "landmarks:behind", "lang": "ko"}).json()
    # clear (150, 0) -> Alpha-ro at (150, -30), west 90 m, north on Beta-gil 240 m, west on Gamma-ro 60 m,
    # then 10 m to 'behind' at (0, 200): 30 + 90 + 240 + 60 + 10 = 430 m.
    assert doc["distance_m"] == pytest.approx(430, abs=0.5)
    steps = doc["instructions"]
    assert [s["type"] for s in steps] == ["depart", "turn", "turn", "arrive"]
    assert [s["turn"] for s in steps] == [None, "right", "left", None]
    assert [s["street"] for s in steps[:3]] == ["알파로", "베타길", "감마로"]
    assert steps[1]["text"] == "오른쪽으로 돌아 베타길(으)로 가세요"
    assert steps[-1]["text"] == "뒤쪽 사당에 도착했습니다"
    assert [round(s["distance_m"]) for s in steps[:3]] == [90, 240, 60]
    coords = doc["geometry"]["coordinates"]
    x, y = TO_M.transform(coords[-1][0], coords[-1][1])
    assert math.hypot(x - X0, y - (Y0 + 200)) < 0.05
    ja = get(base, "/ar/route", **{"from": f"{ll(150, 0)[0]},{ll(150, 0)[1]}", "to": "behind", "lang": "ja"}).json()
    assert ja["instructions"][1]["text"] == "右に曲がってBeta-gilに入ります"  # no ja street name -> en
    assert get(base, "/ar/route", **{"from": "nowhere", "to": "behind"}).status_code == 404
    assert get(base, "/ar/route", **{"from": "200,100", "to": "behind"}).status_code == 400


def test_openapi_describes_the_ar_paths(base):
    doc = get(base, "/openapi", f="json").json()
    assert "/collections" in doc["paths"]  # pygeoapi's document, not replaced
    params = {p["name"]: p for p in doc["paths"]["/ar/view"]["get"]["parameters"]}
    assert {"lon", "lat", "alt", "heading", "pitch", "fov", "radius", "lang"} <= set(params)
    assert params["lat"]["schema"]["maximum"] == 90 and params["lat"]["required"] is True
    assert "/ar/anchors" in doc["paths"] and "/ar/route" in doc["paths"]
    assert "ArViewItem" in doc["components"]["schemas"]


def test_openapi_describes_our_other_routes_and_they_validate(base):
    from openapi_spec_validator import validate

    doc = get(base, "/openapi", f="json").json()
    ours = ["/ar/view", "/ar/anchors", "/ar/route", "/transit/nearest", "/geocode", "/reverse",
            "/live/{layer}/items", "/live/{layer}/tiles/{z}/{x}/{y}",
            "/collections/{collection}/tiles/WebMercatorQuad/tilejson.json", "/collections/{collection}/3dtiles/{path}"]
    assert set(ours) <= set(doc["paths"])
    assert {"get", "post"} <= set(doc["paths"]["/live/{layer}/items"]) and "post" in doc["paths"]["/geocode"]
    # our part on its own is a valid OpenAPI 3.0 document (pygeoapi's own part is its business)
    validate({"openapi": "3.0.2", "info": {"title": "citytwin", "version": "1"},
              "paths": {p: doc["paths"][p] for p in ours},
              "components": {"schemas": {k: v for k, v in doc["components"]["schemas"].items() if k.startswith("Ar")}}})


def test_index_follows_the_store(project, base):
    from pipelines.catalog import load_catalog
    from pipelines.store import open_store

    store = open_store(load_catalog(project).build_path)
    added = gpd.GeoDataFrame({"id": ["new"], "name_en": ["New kiosk"], "name_ko": ["새 매점"]},
                             geometry=[shapely.Point(ll(40, 40))], crs="EPSG:4326")
    store.publish("records_pois", added)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ids = {it["id"] for it in view(base)["items"]}
        if "new" in ids:
            break
        time.sleep(0.5)
    assert "new" in ids and "rec-1" not in ids

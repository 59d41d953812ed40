"""GET/POST /geocode and GET /reverse over real HTTP (``citytwin serve`` as a subprocess).

The gazetteer is built here by hand: two gu, a concave (L-shaped) legal dong, and an
address-points layer; expectations come from these shapes (shapely), not from the geocoder.
"""
from __future__ import annotations

import httpx
import geopandas as gpd
import pytest
import shapely
from shapely.geometry import Point, Polygon, box

from api_server import serve
from pipelines.catalog import load_catalog
from pipelines.store import open_store
from tiles.pmtiles_build import build_pmtiles

CATALOG = """\
name: geocode test
layers:
  gu: {kind: boundaries, minzoom: 10, maxzoom: 12}
  dong: {kind: boundaries, minzoom: 10, maxzoom: 12}
  addr: {kind: generic, minzoom: 10, maxzoom: 12}
"""
JUNG = box(126.96, 37.55, 127.02, 37.57)
JONGNO = box(126.96, 37.57, 127.02, 37.60)
# an L: its centroid (about 126.979, 37.559) lies outside it, in the notch
L_DONG = Polygon([(126.97, 37.551), (126.99, 37.551), (126.99, 37.555), (126.974, 37.555), (126.974, 37.568),
                  (126.97, 37.568)])
CITY_HALL = (126.9779692, 37.5662952)


def _publish(project, layers: dict[str, gpd.GeoDataFrame]) -> None:
    catalog = load_catalog(project)
    store = open_store(catalog.build_path)
    for name, gdf in layers.items():
        store.publish(name, gdf)
        cfg = catalog.layers[name]
        build_pmtiles(store, name, catalog.build_path / "tiles" / f"{name}.pmtiles", cfg.minzoom, cfg.maxzoom,
                      None, progress=False)
    store.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("geocode_api")
    (root / "citytwin.yaml").write_text(CATALOG, encoding="utf-8")
    gu = gpd.GeoDataFrame({"id": ["g1", "g2"], "SIG_CD": ["11140", "11110"], "SIG_KOR_NM": ["중구", "종로구"],
                           "SIG_ENG_NM": ["Jung-gu", "Jongno-gu"]}, geometry=[JUNG, JONGNO], crs=4326)
    dong = gpd.GeoDataFrame({"id": ["d1"], "EMD_CD": ["11140101"], "EMD_KOR_NM": ["태평로1가"],
                             "EMD_ENG_NM": ["Taepyeongno 1(il)-ga"]}, geometry=[L_DONG], crs=4326)
    addr = gpd.GeoDataFrame({"id": ["a1"], "address": ["서울특별시 중구 세종대로 110"]},
                            geometry=[Point(CITY_HALL)], crs=4326)
    _publish(root, {"gu": gu, "dong": dong, "addr": addr})
    return root


@pytest.fixture(scope="module")
def base(project):
    with serve(project) as url:
        yield url


def test_geocode_one_address_point(base):
    r = httpx.get(f"{base}/geocode", params={"q": "서울시 중구 세종대로 110 3층"}, timeout=30)
    assert r.status_code == 200
    d = r.json()
    assert (d["tier"], d["source"], d["gu"], d["gu_code"]) == ("address", "addr", "중구", "11140")
    assert (d["lon"], d["lat"]) == pytest.approx(CITY_HALL, abs=1e-9)
    assert d["recognised"]["road"] == "세종대로" and d["score"] == 100.0


def test_dong_tier_lands_inside_a_concave_dong(base):
    d = httpx.get(f"{base}/geocode", params={"q": "서울 중구 태평로1가 999"}, timeout=30).json()
    assert d["tier"] == "dong" and d["matched"] == "태평로1가" and d["matched_code"] == "11140101"
    assert L_DONG.contains(Point(d["lon"], d["lat"]))
    assert not L_DONG.contains(shapely.centroid(L_DONG))  # a centroid would have missed


def test_batch_keeps_order_and_tiers(base):
    qs = ["서울특별시 중구 세종대로 110", "서울 종로구 어딘가", "부산 어딘가", "서울특별시 중구 태평로1가 31"]
    r = httpx.post(f"{base}/geocode", json={"q": qs}, timeout=30)
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["query"] for i in items] == qs and r.json()["count"] == 4
    assert [i["tier"] for i in items] == ["address", "gu", "none", "dong"]
    assert JONGNO.contains(Point(items[1]["lon"], items[1]["lat"]))
    assert httpx.post(f"{base}/geocode", json=qs, timeout=30).json()["count"] == 4  # a bare list works too


def test_reverse_areas_and_nearest(base):
    lon, lat = 126.972, 37.560  # inside the L's vertical arm, in 중구
    d = httpx.get(f"{base}/reverse", params={"lon": lon, "lat": lat}, timeout=30).json()
    levels = {a["level"]: a["name_ko"] for a in d["areas"]}
    assert levels == {"sigungu": "중구", "legal_dong": "태평로1가"}
    assert d["nearest"] is None  # City Hall is ~700 m away, beyond the 250 m search
    d = httpx.get(f"{base}/reverse", params={"lon": CITY_HALL[0] + 0.001, "lat": CITY_HALL[1]}, timeout=30).json()
    # independent distance: 0.001 deg of longitude at this latitude on a sphere of 6371.0088 km
    import math
    want = math.radians(0.001) * 6_371_008.8 * math.cos(math.radians(CITY_HALL[1]))
    assert d["nearest"]["ref_id"] == "a1" and d["nearest"]["distance_m"] == pytest.approx(want, abs=0.2)


@pytest.mark.parametrize("method,path,params,body,fragment", [
    ("GET", "/geocode", {}, None, "'q' (the address) is required"),
    ("GET", "/geocode", {"q": "   "}, None, "is empty"),
    ("GET", "/geocode", {"q": "가" * 201}, None, "at most 200"),
    ("POST", "/geocode", None, b"not json", "must be JSON"),
    ("POST", "/geocode", None, b'{"q": []}', "no addresses"),
    ("POST", "/geocode", None, b'{"q": [1]}', "q[0] must be a string"),
    ("POST", "/geocode", None, b"[" * 5000 + b"]" * 5000, "must be JSON"),
    ("GET", "/reverse", {"lon": "200", "lat": "37"}, None, "'lon' must be at most 180"),
    ("GET", "/reverse", {"lon": "127", "lat": "nan"}, None, "'lat' must be a finite number"),
    ("GET", "/reverse", {"lon": "abc", "lat": "37"}, None, "must be a number"),
    ("GET", "/reverse", {"lat": "37"}, None, "'lon' is required"),
])
def test_bad_input_is_400_json(base, method, path, params, body, fragment):
    r = httpx.request(method, f"{base}{path}", params=params, content=body, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "InvalidParameterValue" and fragment in r.json()["description"]


def test_a_batch_over_the_size_limit_is_413(base):
    r = httpx.post(f"{base}/geocode", content=b" " * 2_000_000, timeout=30)
    assert r.status_code == 413 and r.json()["code"] == "PayloadTooLarge", r.text
    assert "send at most 1000 addresses" in r.json()["description"]


def test_batch_limit(base):
    r = httpx.post(f"{base}/geocode", json={"q": ["서울 중구"] * 1001}, timeout=30)
    assert r.status_code == 400 and "at most 1000" in r.json()["description"]
    r = httpx.post(f"{base}/geocode", json={"q": ["서울 중구"] * 1000}, timeout=60)
    assert r.status_code == 200 and r.json()["count"] == 1000


def test_gazetteer_follows_the_store(project, base):
    q = {"q": "서울특별시 종로구 세종대로 172"}
    assert httpx.get(f"{base}/geocode", params=q, timeout=30).json()["tier"] == "gu"
    # a second address layer enters the catalog and the store while the server runs
    (project / "citytwin.yaml").write_text(CATALOG + "  addr2: {kind: generic, minzoom: 10, maxzoom: 12}\n",
                                           encoding="utf-8")
    where = (126.9769, 37.5725)
    _publish(project, {"addr2": gpd.GeoDataFrame({"id": ["b1"], "address": ["서울특별시 종로구 세종대로 172"]},
                                                 geometry=[Point(where)], crs=4326)})
    d = httpx.get(f"{base}/geocode", params=q, timeout=30).json()
    assert (d["tier"], d["source"]) == ("address", "addr2")
    assert (d["lon"], d["lat"]) == pytest.approx(where, abs=1e-9)

"""Gazetteer geocoder: tiers, fuzzy matching, point placement, reverse, and the real Seoul data."""
from __future__ import annotations

import re
from collections import Counter

import geopandas as gpd
import pandas as pd
import pytest
from pyproj import Geod
from shapely.geometry import Point, Polygon, box

from geo.admin_codes import detect_reference_fields
from geo.errors import SourceError
from geo.geocoder import AddressLayer, AreaLayer, Geocoder
from shared_data import SHARED_DATA

SEOUL = SHARED_DATA / "seoul"
GEOD = Geod(ellps="WGS84")

# A U-shaped gu: its centroid falls in the notch, outside the polygon.
U_GU = Polygon([(126.96, 37.55), (127.00, 37.55), (127.00, 37.59), (126.99, 37.59), (126.99, 37.56),
                (126.97, 37.56), (126.97, 37.59), (126.96, 37.59)])
OTHER_GU = box(127.00, 37.55, 127.04, 37.59)
DONG_A = box(126.96, 37.55, 126.98, 37.56)  # 태평로1가
DONG_B = box(126.98, 37.55, 127.00, 37.56)  # 명동2가
BUILDING = box(126.9770, 37.5570, 126.9774, 37.5574)


@pytest.fixture(scope="module")
def gazetteer() -> Geocoder:
    gu = gpd.GeoDataFrame({"SIG_CD": ["11140", "11170"], "SIG_KOR_NM": ["중구", "용산구"],
                           "SIG_ENG_NM": ["Jung-gu", "Yongsan-gu"]}, geometry=[U_GU, OTHER_GU], crs=4326)
    # columns named so that nothing but their contents tells what they are
    dong = gpd.GeoDataFrame({"a": ["11140103", "11140115"], "b": ["태평로1가", "명동2가"],
                             "c": ["Taepyeongno 1(il)-ga", "Myeong-dong 2(i)-ga"]}, geometry=[DONG_A, DONG_B], crs=4326)
    points = gpd.GeoDataFrame({"id": ["p1", "p2"], "address": ["서울특별시 중구 세종대로 110", "서울특별시 중구 명동길 74"]},
                              geometry=[Point(126.97797, 37.56654), Point(126.98574, 37.56365)], crs=4326)
    bldg = gpd.GeoDataFrame({"id": ["b1"], "jibun": ["서울특별시 중구 태평로1가 31"]}, geometry=[BUILDING], crs=4326)
    return Geocoder(areas=[AreaLayer("gu", gu), AreaLayer("dong", dong)],
                    address_points=[AddressLayer("addr", points, ["address"], id_field="id")],
                    buildings=[AddressLayer("bldg", bldg, ["jibun"], id_field="id")])


def test_exact_address_point(gazetteer):
    for text in ("서울특별시 중구 세종대로 110", "서울시 중구 세종대로110 (태평로1가) 서울시청 3층", "서울 중구 세종대로 110"):
        r = gazetteer.geocode(text)
        assert (r.tier, r.score, r.source, r.matched_code) == ("address", 100.0, "addr", "p1")
        assert (r.lon, r.lat) == (126.97797, 37.56654)
        assert (r.gu, r.gu_code) == ("중구", "11140")


def test_fuzzy_road_inside_the_gu(gazetteer):
    r = gazetteer.geocode("서울특별시 중구 세종데로 110")
    assert r.tier == "address" and 85 <= r.score < 100 and r.matched == "서울특별시 중구 세종대로 110"
    # a different building number is not an address match: falls back to the hinted dong
    r = gazetteer.geocode("서울특별시 중구 세종대로 999 (태평로1가)")
    assert (r.tier, r.matched, r.area_level) == ("dong", "태평로1가", "legal_dong")
    assert "placed in its dong" in r.note


def test_building_tier_places_point_on_the_footprint(gazetteer):
    r = gazetteer.geocode("서울 중구 태평로1가 31")
    assert (r.tier, r.source, r.matched_code) == ("building", "bldg", "b1")
    assert BUILDING.contains(Point(r.lon, r.lat))


def test_area_tiers_stay_inside_concave_areas(gazetteer):
    assert not U_GU.contains(U_GU.centroid)  # the trap a centroid would fall into
    r = gazetteer.geocode("서울특별시 중구 없는길 5")
    assert (r.tier, r.matched, r.matched_en) == ("gu", "중구", "Jung-gu")
    assert U_GU.contains(Point(r.lon, r.lat))
    r = gazetteer.geocode("중구 명동2가 일대")
    assert r.tier == "dong" and DONG_B.contains(Point(r.lon, r.lat)) and r.gu == "중구"
    assert gazetteer.geocode("부산 해운대 어딘가").tier == "none"


def test_dong_without_gu_and_admin_dong_names(gazetteer):
    r = gazetteer.geocode("명동2가 5")
    assert r.tier == "dong" and r.gu == "중구"
    r = gazetteer.geocode("서울 중구 태평로1가 999")
    assert r.tier == "dong" and r.matched == "태평로1가"


def test_reverse_gives_areas_and_nearest_address(gazetteer):
    rev = gazetteer.reverse(126.9781, 37.5664)
    assert rev.areas == []  # in the notch of the U-shaped gu: no area holds it
    _, _, expected = GEOD.inv(126.9781, 37.5664, 126.97797, 37.56654)
    assert rev.nearest["address"] == "서울특별시 중구 세종대로 110"
    assert rev.nearest["distance_m"] == pytest.approx(expected, abs=0.5)
    rev = gazetteer.reverse(126.975, 37.555)
    assert [(a["level"], a["name_ko"], a["code"]) for a in rev.areas] == [
        ("sigungu", "중구", "11140"), ("legal_dong", "태평로1가", "11140103")]
    assert rev.nearest is None  # nothing within 250 m


def test_coordinate_check(gazetteer):
    results = gazetteer.geocode_many(["서울 중구 세종대로 110", "서울 중구 세종대로 110", "서울 용산구 어딘가", "아무말"])
    checks = gazetteer.check_coordinates(results, [126.975, 127.02, 127.02, 127.02], [37.555, 37.57, 37.57, 37.57])
    assert checks == ["agrees", "disagrees", "agrees", "unchecked"]


def test_reference_fields_detected_and_overridden():
    df = pd.DataFrame({"code": ["1125074", "1125075"], "name": ["길동", "둔촌1동"], "name_eng": ["Gil-dong", "Dunchon 1-dong"],
                       "base_year": ["2013", "2013"]})
    f = detect_reference_fields(df, "x")
    assert (f.level, f.code_field, f.name_ko_field, f.name_en_field) == ("admin_dong", "code", "name", "name_eng")
    f = detect_reference_fields(df, "x", level="legal_dong", name_en_field="base_year")
    assert (f.level, f.name_en_field) == ("legal_dong", "base_year")
    with pytest.raises(SourceError, match="reference.admin_level"):
        detect_reference_fields(pd.DataFrame({"name": ["길동"]}), "layer 'x'")
    with pytest.raises(SourceError, match="'nope' is not a field"):
        detect_reference_fields(df, "x", code_field="nope")


# --- the real KTO tourism data against the real Seoul boundaries ---------------------

@pytest.fixture(scope="module")
def seoul():
    gu = gpd.read_file(SEOUL / "seoul_municipalities_geo.json")
    legal = gpd.read_file(SEOUL / "seoul_neighborhoods_geo_simple.json")
    admin = gpd.read_file(SEOUL / "seoul_submunicipalities_geo_simple.json")
    pois = pd.read_csv(SEOUL / "kto_tourism_pois_a.csv", dtype=str)
    geocoder = Geocoder(areas=[AreaLayer("gu", gu), AreaLayer("legal_dong", legal), AreaLayer("admin_dong", admin)])
    return gu, legal, admin, pois, geocoder


@pytest.mark.realdata("seoul")
def test_real_boundaries_are_recognised_without_configuration(seoul):
    gu, legal, admin, _, g = seoul
    levels = Counter(a.level for a in g.areas)
    assert levels == {"sigungu": len(gu), "legal_dong": len(legal), "admin_dong": len(admin)} == {
        "sigungu": 25, "legal_dong": 467, "admin_dong": 423}
    assert {a.name_en for a in g.areas if a.level == "sigungu"} == set(gu.SIG_ENG_NM)


@pytest.mark.realdata("seoul")
def test_real_kto_tiers_and_disagreements(seoul):
    gu, legal, _, pois, g = seoul
    results = g.geocode_many(pois.address)
    tiers = Counter(r.tier for r in results)
    print(f"\nKTO tier distribution: {dict(tiers)}")
    assert sum(tiers.values()) == 145 and tiers["none"] == 0

    # Independently: which (gu, legal dong) pairs exist, by where each dong's inside point lies
    inside = gpd.GeoDataFrame(legal[["EMD_KOR_NM"]], geometry=legal.geometry.representative_point(), crs=legal.crs)
    pairs = set(map(tuple, gpd.sjoin(inside, gu[["SIG_KOR_NM", "geometry"]], predicate="within")[
        ["SIG_KOR_NM", "EMD_KOR_NM"]].to_numpy()))
    expect_dong = 0
    for addr, r in zip(pois.address, results):
        gu_name = re.search(r"(\S+구)\s", addr).group(1)
        hint = re.search(r"\(([^,)]+)", addr)
        if hint and (gu_name, hint.group(1).strip()) in pairs:
            expect_dong += 1
            assert (r.tier, r.matched, r.gu) == ("dong", hint.group(1).strip(), gu_name), addr
    assert tiers["dong"] >= expect_dong >= 120

    # every dong-tier point lies inside the dong it names (point_on_surface, not a centroid)
    dong_rows = [r for r in results if r.tier == "dong" and r.area_level == "legal_dong"]
    pts = gpd.GeoDataFrame({"want": [r.matched for r in dong_rows]},
                           geometry=[Point(r.lon, r.lat) for r in dong_rows], crs=4326)
    hit = gpd.sjoin(pts, legal[["EMD_KOR_NM", "geometry"]], predicate="within")
    assert (hit.want == hit.EMD_KOR_NM).groupby(level=0).any().sum() == len(dong_rows)

    # disagreement between the record's coordinates and its address gu, computed with sjoin
    rec = gpd.GeoDataFrame({"addr_gu": [re.search(r"(\S+구)\s", a).group(1) for a in pois.address]},
                           geometry=gpd.points_from_xy(pois.lon.astype(float), pois.lat.astype(float)), crs=4326)
    joined = gpd.sjoin(rec, gu[["SIG_KOR_NM", "geometry"]], how="left", predicate="within")
    expected = set(joined.index[joined.SIG_KOR_NM.fillna("") != joined.addr_gu])
    checks = g.check_coordinates(results, pois.lon.astype(float).to_numpy(), pois.lat.astype(float).to_numpy())
    got = {i for i, c in enumerate(checks) if c == "disagrees"}
    print(f"KTO rows whose coordinates lie outside their address gu: {len(got)}")
    assert got == expected and len(expected) > 0
    assert Counter(checks)["agrees"] == 145 - len(expected)


def test_exact_fast_path_answers_like_the_tiered_lookup(gazetteer):
    texts = ["서울특별시 중구 세종대로 110", "서울특별시  중구 세종대로 110 ", "서울특별시 중구 명동길 74",
             "서울특별시 중구 태평로1가 31", "서울시 중구 세종대로 110", "서울특별시 중구 세종대로 111"]
    fast = [gazetteer.geocode(t).as_dict() for t in texts]
    table, gazetteer._exact = gazetteer._exact, {}  # the same gazetteer without its fast path
    try:
        slow = [gazetteer.geocode(t).as_dict() for t in texts]
    finally:
        gazetteer._exact = table
    assert fast == slow
    assert len(table) == 3  # the two address points and the building are all seeded
    assert [d["tier"] for d in fast] == ["address", "address", "address", "building", "address", "gu"]

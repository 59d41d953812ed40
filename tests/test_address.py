"""Korean address parser: road-name and lot-number forms, variants, hints and noise."""
from __future__ import annotations

import pytest

from geo.address import AREA, LOT, ROAD, parse_address
from geo.admin_codes import level_from_code, sido_name


@pytest.mark.parametrize("text", [
    "서울특별시 중구 세종대로 110",
    "서울시 중구 세종대로 110",
    "서울 중구 세종대로 110",
    "서울특별시중구세종대로110",
    "  서울특별시   중구  세종대로110  ",
    "서울특별시 중구 세종대로 110 (태평로1가)",
    "서울특별시 중구 세종대로 110 서울특별시청 3층 301호",
    "서울 중구 세종대로 110(태평로1가) 서울시청",
])
def test_road_address_variants_normalise_to_one_form(text):
    a = parse_address(text)
    assert a.kind == ROAD
    assert (a.sido, a.sigungu, a.road, a.building_main, a.building_sub) == ("서울특별시", "중구", "세종대로", 110, None)
    assert a.normalised() == "서울특별시 중구 세종대로 110"


def test_road_hint_building_and_noise_are_separated():
    a = parse_address("서울특별시 마포구 마포대로 109 (공덕동,롯데캐슬프레지던트) 12층 1203호")
    assert a.dong_hint == "공덕동"
    assert a.building_name == "롯데캐슬프레지던트"
    assert a.detail == ["12층", "1203호"]
    assert a.unrecognised == []
    b = parse_address("서울특별시 중구 을지로 281 (을지로7가), DDP 배움터 2층 디자인박물관")
    assert (b.road, b.building_main, b.dong_hint) == ("을지로", 281, "을지로7가")
    assert "2층" in b.detail and b.building_name == "DDP 배움터 디자인박물관"


@pytest.mark.parametrize("text,road,main,sub,underground", [
    ("서울특별시 중구 퇴계로34길 28 (필동2가)", "퇴계로34길", 28, None, False),
    ("서울특별시 종로구 종로40가길 14", "종로40가길", 14, None, False),
    ("서울특별시 송파구 올림픽로35다길 33", "올림픽로35다길", 33, None, False),
    ("서울특별시 영등포구 63로 50 (여의도동)", "63로", 50, None, False),
    ("서울특별시 마포구 월드컵로 243-60 (성산동)", "월드컵로", 243, 60, False),
    ("서울특별시 서초구 신반포로 지하 200 (반포동)", "신반포로", 200, None, True),
    ("서울특별시 중구 명동10길 16 - 1", "명동10길", 16, 1, False),
])
def test_road_names_with_numbers_and_sub_numbers(text, road, main, sub, underground):
    a = parse_address(text)
    assert (a.kind, a.road, a.building_main, a.building_sub, a.underground) == (ROAD, road, main, sub, underground)


@pytest.mark.parametrize("text,dong,san,main,sub", [
    ("서울특별시 중구 태평로1가 31", "태평로1가", False, 31, None),
    ("서울 중구 태평로1가 31", "태평로1가", False, 31, None),
    ("서울특별시중구태평로1가31", "태평로1가", False, 31, None),
    ("서울특별시 송파구 방이동 산47-4 (방이동)", "방이동", True, 47, 4),
    ("서울시 관악구 신림9동 205-5번지", "신림9동", False, 205, 5),
    ("서울특별시 강남구 역삼동 737 강남파이낸스센터 10층", "역삼동", False, 737, None),
])
def test_lot_number_addresses(text, dong, san, main, sub):
    a = parse_address(text)
    assert (a.kind, a.dong, a.san, a.lot_main, a.lot_sub) == (LOT, dong, san, main, sub)
    assert a.lot_number == ("산" if san else "") + f"{main}" + (f"-{sub}" if sub else "")


def test_province_city_gu_and_eup_ri():
    a = parse_address("경기도 성남시 분당구 판교역로 235")
    assert (a.sido, a.sigungu, a.road, a.building_main) == ("경기도", "성남시 분당구", "판교역로", 235)
    b = parse_address("경기 양평군 양평읍 양근리 123-4")
    assert (b.sido, b.sigungu, b.eup_myeon, b.dong, b.lot_main, b.lot_sub) == ("경기도", "양평군", "양평읍", "양근리", 123, 4)


def test_messy_text_is_reported_not_dropped():
    a = parse_address("서울시 관악구 옐로우 빌딩 14층 글로벌 아이티")
    assert (a.kind, a.sido, a.sigungu) == (AREA, "서울특별시", "관악구")
    assert a.detail == ["14층"] and a.unrecognised == ["옐로우 빌딩 글로벌 아이티"]
    b = parse_address("서울특별시 관악구 관악로 (신림동)")
    assert (b.kind, b.road, b.building_main, b.dong_hint) == (AREA, "관악로", None, "신림동")
    c = parse_address("서울특별시 광진구 광장동 일대")
    assert (c.kind, c.dong, c.detail) == (AREA, "광장동", ["일대"])
    d = parse_address("서울특별시 중구 태평로1가 ~성동구 신답철교")
    assert d.dong == "태평로1가" and d.unrecognised == ["~ 성동구 신답철교"]
    assert parse_address("").kind == "unknown" and parse_address(None).recognised == {}
    # "서울숲길" is a road, not 서울 + 숲길
    e = parse_address("서울숲길 12")
    assert (e.sido, e.road, e.building_main) == (None, "서울숲길", 12)


def test_recognised_lists_only_found_parts():
    a = parse_address("서울특별시 영등포구 여의동로 330 (여의도동)")
    assert a.recognised == {"sido": "서울특별시", "sigungu": "영등포구", "road": "여의동로", "building_number": "330",
                            "dong_hint": "여의도동"}


def test_sido_variants_and_code_levels():
    assert {sido_name(v) for v in ("서울", "서울시", "서울특별시")} == {"서울특별시"}
    assert sido_name("전라북도") == sido_name("전북") == "전북특별자치도"
    assert [level_from_code(c) for c in ("11", "11140", "1102055", "11140103", "1114010300", "1114055000",
                                         "4183025021", "abc", "123")] == [
        "sido", "sigungu", "admin_dong", "legal_dong", "legal_dong", "admin_dong", "legal_ri", None, None]


@pytest.mark.parametrize("text,flags", [
    ("서울특별시 중구 세종대로 110 (태평로1가)", []),
    ("서울 관악구 신림9동 205-5", []),
    ("", ["empty"]),
    ("서울특별시 중구 태평로1가 ~성동구 신답철교", ["range", "several_gu", "unrecognised_text"]),
    ("서울특별시 광진구 광장동 일대", ["vague_area"]),
    ("서울특별시 관악구 관악로 (신림동)", ["road_without_number"]),
    ("서울특별시 서초구 원터길 경기도 성남시", ["other_sido", "road_without_number", "unrecognised_text"]),
    ("서울시 관악구 옐로우 빌딩 14층 글로벌 아이티", ["gu_only", "office_address", "unrecognised_text"]),
    ("서울특별시 마포구 서울숲길 3", []),  # 서울 inside a road name is no second 시/도
])
def test_messy_address_flags(text, flags):
    from geo.address import ADDRESS_FLAGS, address_flags

    got = address_flags(parse_address(text))
    assert got == flags and set(got) <= set(ADDRESS_FLAGS)

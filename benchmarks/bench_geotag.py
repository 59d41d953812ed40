"""Geocoding throughput: rows/s for N synthetic Seoul addresses against a gazetteer.

    .venv/bin/python benchmarks/bench_geotag.py [N]

The gazetteer is the real Seoul gu / 법정동 / 행정동 boundaries (../shared/data/seoul) plus
N synthetic address points, so the address tier is exercised at a realistic size. The
queries mix exact hits, misspelt road names (fuzzy inside the gu), unknown building
numbers (dong fallback) and noise. Prints numbers; asserts nothing.
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import geopandas as gpd
import shapely

from geo.geocoder import AddressLayer, AreaLayer, Geocoder

SEOUL = Path(__file__).resolve().parents[2] / "shared" / "data" / "seoul"
ROADS = ["세종대로", "을지로", "퇴계로", "종로", "테헤란로", "올림픽로", "마포대로", "한강대로", "도봉로", "강남대로"]


def main(n: int = 50_000) -> None:
    rng = random.Random(1)
    gu = gpd.read_file(SEOUL / "seoul_municipalities_geo.json")
    legal = gpd.read_file(SEOUL / "seoul_neighborhoods_geo_simple.json")
    admin = gpd.read_file(SEOUL / "seoul_submunicipalities_geo_simple.json")
    # synthetic address points: a random point inside a random legal dong, on one of the roads
    dongs = legal.sample(n, replace=True, random_state=1).reset_index(drop=True)
    inside = shapely.point_on_surface(dongs.geometry.to_numpy())
    gu_of = gpd.sjoin(gpd.GeoDataFrame(geometry=inside, crs=4326), gu, predicate="within")["SIG_KOR_NM"]
    addresses, pts = [], []
    for i in range(n):
        if i not in gu_of.index:
            continue
        road = rng.choice(ROADS) + (f"{rng.randint(1, 60)}길" if rng.random() < 0.5 else "")
        addresses.append(f"서울특별시 {gu_of.loc[i] if isinstance(gu_of.loc[i], str) else gu_of.loc[i].iloc[0]} "
                         f"{road} {rng.randint(1, 400)}")
        pts.append(inside[i])
    points = gpd.GeoDataFrame({"address": addresses}, geometry=pts, crs=4326)

    t0 = time.perf_counter()
    g = Geocoder(areas=[AreaLayer("gu", gu), AreaLayer("legal_dong", legal), AreaLayer("admin_dong", admin)],
                 address_points=[AddressLayer("addr", points, ["address"])])
    build = time.perf_counter() - t0

    queries = []
    for a, d in zip(addresses, dongs.EMD_KOR_NM):
        r = rng.random()
        if r < 0.5:
            queries.append(a)
        elif r < 0.7:
            queries.append(a.replace("대로", "데로").replace("로 ", "루 ", 1) + " 3층")
        elif r < 0.9:
            queries.append(a.rsplit(" ", 1)[0] + f" 9999 ({d})")
        else:
            queries.append("서울시 어딘가 " + str(rng.randint(1, 99)))
    t0 = time.perf_counter()
    results = [g.geocode(q) for q in queries]  # no cache: every query is looked up
    secs = time.perf_counter() - t0
    tiers: dict[str, int] = {}
    for r in results:
        tiers[r.tier] = tiers.get(r.tier, 0) + 1
    print(f"gazetteer: {len(g.areas)} areas + {len(addresses)} address points, built in {build:.2f}s")
    print(f"geocoded {len(queries)} addresses in {secs:.2f}s: {len(queries) / secs:,.0f} rows/s; tiers {tiers}")
    lon = [p.x for p in pts[:20000]]
    lat = [p.y for p in pts[:20000]]
    t0 = time.perf_counter()
    g.gu_at(lon, lat)
    print(f"point-in-gu for {len(lon)} points: {len(lon) / (time.perf_counter() - t0):,.0f} points/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)

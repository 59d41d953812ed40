"""Geotagging throughput: records/s for N synthetic Seoul addresses against a gazetteer, and peak memory.

    .venv/bin/python benchmarks/bench_geotag.py [N]        (default N = 100 000)

The gazetteer is the real Seoul gu / 법정동 / 행정동 boundaries (../shared/data/seoul) plus
N synthetic address points (a random road and number, at a point inside a random legal
dong, in the gu that holds it), so the address tier runs at a realistic size. Runs:

    exact      every record is the text of a reference address (target: >= 20 000 records/s)
    variant    the same addresses written differently (서울시, extra spaces, a floor): parsed
    mixed      50 % exact, 20 % misspelt roads (fuzzy in the gu), 20 % unknown numbers
               (dong fallback), 10 % noise
    validate   check_coordinates for N records that carry lon/lat (point in gu, vectorised)

No cache between queries: every record is looked up. Prints numbers; asserts nothing.
Peak memory is the process's ru_maxrss (includes the gazetteer and the query lists).
"""
from __future__ import annotations

import random
import resource
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from geo.geocoder import AddressLayer, AreaLayer, Geocoder

SEOUL = Path(__file__).resolve().parents[2] / "shared" / "data" / "seoul"
ROADS = ["세종대로", "을지로", "퇴계로", "종로", "테헤란로", "올림픽로", "마포대로", "한강대로", "도봉로", "강남대로"]
TARGET_EXACT = 20_000


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rate(label: str, g: Geocoder, queries: list[str]) -> float:
    t0 = time.perf_counter()
    results = [g.geocode(q) for q in queries]
    secs = time.perf_counter() - t0
    tiers: dict[str, int] = {}
    for r in results:
        tiers[r.tier] = tiers.get(r.tier, 0) + 1
    rate = len(queries) / secs
    print(f"{label:9s} {len(queries):>7,} records in {secs:6.2f}s: {rate:>9,.0f} records/s; tiers {tiers}")
    return rate


def main(n: int = 100_000) -> None:
    rng = random.Random(1)
    gu = gpd.read_file(SEOUL / "seoul_municipalities_geo.json")
    legal = gpd.read_file(SEOUL / "seoul_neighborhoods_geo_simple.json")
    admin = gpd.read_file(SEOUL / "seoul_submunicipalities_geo_simple.json")
    # synthetic address points: a point inside a random legal dong, addressed in the gu holding it
    dongs = legal.sample(n, replace=True, random_state=1).reset_index(drop=True)
    inside = shapely.point_on_surface(dongs.geometry.to_numpy())
    j = gpd.sjoin(gpd.GeoDataFrame(geometry=inside, crs=4326), gu[["SIG_KOR_NM", "geometry"]], predicate="within")
    gu_of = j[~j.index.duplicated()]["SIG_KOR_NM"]
    addresses, pts, dong_names, seen = [], [], [], set()
    for i in gu_of.index:
        while True:
            road = rng.choice(ROADS) + (f"{rng.randint(1, 60)}길" if rng.random() < 0.5 else "")
            a = f"서울특별시 {gu_of.loc[i]} {road} {rng.randint(1, 2000)}"
            if a not in seen:  # one point per address, as in an address DB
                seen.add(a)
                break
        addresses.append(a)
        pts.append(inside[i])
        dong_names.append(dongs.EMD_KOR_NM.iloc[i])
    points = gpd.GeoDataFrame({"address": addresses}, geometry=pts, crs=4326)
    print(f"input: {len(addresses):,} distinct synthetic addresses; peak memory so far {_peak_mb():,.0f} MB")

    t0 = time.perf_counter()
    g = Geocoder(areas=[AreaLayer("gu", gu), AreaLayer("legal_dong", legal), AreaLayer("admin_dong", admin)],
                 address_points=[AddressLayer("addr", points, ["address"])])
    print(f"gazetteer: {len(g.areas)} areas + {len(addresses):,} address points, built in "
          f"{time.perf_counter() - t0:.2f}s; peak memory {_peak_mb():,.0f} MB")

    exact = list(addresses)
    rng.shuffle(exact)
    variant = [a.replace("서울특별시", "서울시").replace(" ", "  ", 1) + " 3층" for a in exact]
    mixed = []
    for a, d in zip(addresses, dong_names):
        r = rng.random()
        if r < 0.5:
            mixed.append(a)
        elif r < 0.7:
            mixed.append(a.replace("대로", "데로").replace("로 ", "루 ", 1) + " 3층")
        elif r < 0.9:
            mixed.append(a.rsplit(" ", 1)[0] + f" 9999 ({d})")
        else:
            mixed.append("서울시 어딘가 " + str(rng.randint(1, 99)))
    rate = _rate("exact", g, exact)
    _rate("variant", g, variant)
    _rate("mixed", g, mixed)

    # coordinate validation: records that carry lon/lat, checked against the gu their address names
    results = [g.geocode(q) for q in exact]
    jitter = np.array([(rng.uniform(-5e-4, 5e-4), rng.uniform(-5e-4, 5e-4)) for _ in exact])
    by_text = dict(zip(addresses, pts))
    lon = np.array([by_text[a].x for a in exact]) + jitter[:, 0]
    lat = np.array([by_text[a].y for a in exact]) + jitter[:, 1]
    t0 = time.perf_counter()
    checks = g.check_coordinates(results, lon, lat)
    secs = time.perf_counter() - t0
    counts = {c: checks.count(c) for c in set(checks)}
    print(f"validate  {len(exact):>7,} records in {secs:6.2f}s: {len(exact) / secs:>9,.0f} records/s; {counts}")
    print(f"peak memory (ru_maxrss): {_peak_mb():,.0f} MB")
    verdict = "meets" if rate >= TARGET_EXACT else "BELOW"
    print(f"exact-match rate {rate:,.0f} records/s {verdict} the {TARGET_EXACT:,} records/s target")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)

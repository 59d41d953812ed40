"""Geotagging throughput: records/s for a realistic mixed address workload against a Seoul gazetteer.

    .venv/bin/python -m benchmarks.bench_geotag [N]        (default N = 100 000)

The gazetteer is the real Seoul gu / 법정동 / 행정동 boundaries (../shared/data/seoul) plus
N synthetic address points, each with a road address (a random road and number) and a lot
(지번) address (its legal dong and a random lot number), at a point inside that dong, in the
gu that holds it. Two workloads of N records each, three repetitions, their order alternated:

    mixed    the headline: what an administrative records file holds, seeded --
             30 % road addresses as written in the gazetteer, 15 % lot numbers (지번),
             15 % typos in the road name (plus a floor), 10 % road address with a building
             name in parentheses, 5 % building name only, 10 % streets that do not exist in
             the gu, 5 % unknown building numbers with a dong hint, 5 % 서울시/spacing
             variants, 5 % noise
    exact    every record is the text of a reference address (the dictionary fast path)

Every record is looked up (no cache, no de-duplication). For records made from a gazetteer
address the report says how many were placed on that very point. ``validate`` times
check_coordinates for N records that carry lon/lat. The last line is ``RESULT {json}``.
"""
from __future__ import annotations

import json
import random
import resource
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from benchmarks.common import median
from benchmarks.verdict import Evidence, alternated, judge
from geo.geocoder import AddressLayer, AreaLayer, Geocoder

SEOUL = Path(__file__).resolve().parents[2] / "shared" / "data" / "seoul"
ROADS = ["세종대로", "을지로", "퇴계로", "종로", "테헤란로", "올림픽로", "마포대로", "한강대로", "도봉로", "강남대로"]
BUILDING_NAMES = ["시청별관", "행복아파트", "한빛빌딩", "중앙타워", "푸른마을아파트", "새마을회관", "동부센터"]
TARGET = 20_000
REPS = 3


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _typo(road: str, rng: random.Random) -> str:
    """A misspelt road name as people type them: a wrong vowel, a dropped or doubled syllable."""
    if "대로" in road and rng.random() < 0.5:
        return road.replace("대로", "데로", 1)
    k = rng.randrange(len(road) - 1)
    return road[:k] + road[k + 1:] if rng.random() < 0.5 else road[:k] + road[k] + road[k:]


def mixed_workload(rows: list[dict], rng: random.Random) -> list[tuple[str, int | None]]:
    """(record text, index of the gazetteer address it names or None) for each row, seeded."""
    out = []
    for i, r in enumerate(rows):
        x = rng.random()
        if x < 0.30:
            out.append((r["address"], i))
        elif x < 0.45:
            out.append((r["jibeon"], i))
        elif x < 0.60:
            out.append((f"서울특별시 {r['gu']} {_typo(r['road'], rng)} {r['number']} {rng.randint(1, 20)}층", i))
        elif x < 0.70:
            out.append((f"{r['address']} ({r['dong']}, {rng.choice(BUILDING_NAMES)})", i))
        elif x < 0.75:
            out.append((f"{r['gu']} {rng.choice(BUILDING_NAMES)}", None))
        elif x < 0.85:
            out.append((f"서울특별시 {r['gu']} 가상{rng.randint(1, 99)}로 {rng.randint(1, 300)}", None))
        elif x < 0.90:
            out.append((f"서울특별시 {r['gu']} {r['road']} {9000 + rng.randint(1, 999)} ({r['dong']})", None))
        elif x < 0.95:
            out.append((r["address"].replace("서울특별시", "서울시").replace(" ", "  ", 1), i))
        else:
            out.append((f"서울시 어딘가 {rng.randint(1, 99)}", None))
    return out


def _gazetteer_rows(n: int, rng: random.Random) -> tuple[list[dict], list]:
    gu = gpd.read_file(SEOUL / "seoul_municipalities_geo.json")
    legal = gpd.read_file(SEOUL / "seoul_neighborhoods_geo_simple.json")
    dongs = legal.sample(n, replace=True, random_state=1).reset_index(drop=True)
    inside = shapely.point_on_surface(dongs.geometry.to_numpy())
    j = gpd.sjoin(gpd.GeoDataFrame(geometry=inside, crs=4326), gu[["SIG_KOR_NM", "geometry"]], predicate="within")
    gu_of = j[~j.index.duplicated()]["SIG_KOR_NM"]
    rows, pts, seen = [], [], set()
    for i in gu_of.index:
        while True:  # one point per address, as in an address DB
            road = rng.choice(ROADS) + (f"{rng.randint(1, 60)}길" if rng.random() < 0.5 else "")
            number, lot = rng.randint(1, 2000), f"{rng.randint(1, 999)}-{rng.randint(1, 30)}"
            a = f"서울특별시 {gu_of.loc[i]} {road} {number}"
            b = f"서울특별시 {gu_of.loc[i]} {dongs.EMD_KOR_NM.iloc[i]} {lot}"
            if a not in seen and b not in seen:
                seen.update((a, b))
                break
        rows.append({"address": a, "jibeon": b, "gu": gu_of.loc[i], "road": road, "number": number,
                     "dong": dongs.EMD_KOR_NM.iloc[i]})
        pts.append(inside[i])
    return rows, pts


def _run(g: Geocoder, queries: list[str]) -> tuple[float, list]:
    t0 = time.perf_counter()
    results = [g.geocode(q) for q in queries]
    return time.perf_counter() - t0, results


def _tiers(results) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        out[r.tier] = out.get(r.tier, 0) + 1
    return out


def main(n: int = 100_000) -> None:
    rng = random.Random(1)
    rows, pts = _gazetteer_rows(n, rng)
    points = gpd.GeoDataFrame({"address": [r["address"] for r in rows], "jibeon": [r["jibeon"] for r in rows]},
                              geometry=pts, crs=4326)
    print(f"input: {len(rows):,} synthetic address points, each with a road and a lot address; "
          f"peak memory so far {_peak_mb():,.0f} MB")
    t0 = time.perf_counter()
    g = Geocoder(areas=[AreaLayer("gu", gpd.read_file(SEOUL / "seoul_municipalities_geo.json")),
                        AreaLayer("legal_dong", gpd.read_file(SEOUL / "seoul_neighborhoods_geo_simple.json")),
                        AreaLayer("admin_dong", gpd.read_file(SEOUL / "seoul_submunicipalities_geo_simple.json"))],
                 address_points=[AddressLayer("addr", points, ["address", "jibeon"])])
    print(f"gazetteer: {len(g.areas)} areas + {len(rows):,} address points (x2 texts), built in "
          f"{time.perf_counter() - t0:.2f}s; peak memory {_peak_mb():,.0f} MB")

    mixed = mixed_workload(rows, rng)
    workloads = {"mixed": [q for q, _ in mixed], "exact": [r["address"] for r in rows]}
    rng.shuffle(workloads["exact"])
    secs: dict[str, list[float]] = {k: [] for k in workloads}
    results: dict[str, list] = {}
    orders = []
    for rep in range(REPS):
        orders.append(["mixed", "exact"] if rep % 2 == 0 else ["exact", "mixed"])
        for name in orders[-1]:
            s, results[name] = _run(g, workloads[name])
            secs[name].append(s)
            print(f"rep {rep + 1} {name:6s} {len(workloads[name]):>7,} records in {s:6.2f}s: "
                  f"{len(workloads[name]) / s:>9,.0f} records/s")
    rates = {k: [len(workloads[k]) / s for s in v] for k, v in secs.items()}
    named = [(r, pts[i]) for r, (_, i) in zip(results["mixed"], mixed) if i is not None]
    on_point = sum(1 for r, p in named if r.tier == "address" and abs(r.lon - p.x) < 1e-9 and abs(r.lat - p.y) < 1e-9)
    ev = Evidence(reps=REPS, alternated=alternated(orders))
    targets = {f"mixed workload >= {TARGET:,} records/s": judge(median(rates["mixed"]), ev, at_least=TARGET),
               f"exact matches >= {TARGET:,} records/s": judge(median(rates["exact"]), ev, at_least=TARGET)}
    headline = [f"mixed workload (headline): **{median(rates['mixed']):,.0f} records/s** (median of {REPS}); tiers "
                f"{_tiers(results['mixed'])}; {on_point:,} of the {len(named):,} records that name a gazetteer "
                f"address placed on that address point",
                f"exact matches: {median(rates['exact']):,.0f} records/s (median of {REPS}); tiers "
                f"{_tiers(results['exact'])}"]

    exact_results = results["exact"]
    jitter = np.array([(rng.uniform(-5e-4, 5e-4), rng.uniform(-5e-4, 5e-4)) for _ in exact_results])
    by_text = {r["address"]: p for r, p in zip(rows, pts)}
    lon = np.array([by_text[a].x for a in workloads["exact"]]) + jitter[:, 0]
    lat = np.array([by_text[a].y for a in workloads["exact"]]) + jitter[:, 1]
    t0 = time.perf_counter()
    checks = g.check_coordinates(exact_results, lon, lat)
    s = time.perf_counter() - t0
    counts = {c: checks.count(c) for c in sorted(set(checks))}
    print(f"validate  {len(checks):>7,} records in {s:6.2f}s: {len(checks) / s:>9,.0f} records/s; {counts}")
    print("\n".join(headline).replace("**", ""))
    print(f"peak memory (ru_maxrss): {_peak_mb():,.0f} MB")
    print("RESULT " + json.dumps({"headline": headline, "targets": targets, "rates": rates, "orders": orders,
                                  "mixed_placed_on_point": on_point, "mixed_naming_an_address": len(named),
                                  "validate_records_per_s": len(checks) / s, "records": n}, ensure_ascii=False))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)

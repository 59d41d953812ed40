"""A synthetic, Seoul-sized city for the benchmarks: footprints with heights, POIs and records.

Deterministic for a given (n, seed). Everything is vectorised (numpy + shapely 2), so
600k footprints take seconds, not minutes.

The city: a square of ``605 km² x n / 600k`` around Seoul City Hall in EPSG:5186, cut by
a river band and a few mountain parks (no buildings). A street grid of ~105 m cells is
rotated a little per block (a smooth angle field, so districts have their own grain).
Density is a base level plus Gaussian centres (a few CBDs, more sub-centres), and the
density picks each block's type:

- ``cbd``: 2x2 big lots with towers, L-shapes and courtyard blocks (polygons with a hole), 30-220 m;
- ``apartment``: 2x4 slabs, 35-90 m (Korean apartment complexes);
- ``mixed``: 3x4 lots of mid-rise, 9-40 m;
- ``villa``: 5x6 small lots of dense low-rise, 6-15 m;
- ``suburb``: 3x4 lots, sparsely built, 4-10 m.

Buildings get ``height`` (most), only ``floors`` (some, as in real registers) or neither
(a few), a Korean building-use label, and names for apartment slabs and towers.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

CRS = "EPSG:5186"
SEOUL_AREA_M2 = 605e6
FULL_N = 600_000
CENTRE = (198_000.0, 551_500.0)  # Seoul City Hall, EPSG:5186 metres (approx.)
CELL = 105.0  # street grid pitch, metres (block + street)
STREET = 14.0  # street width, metres

# block types: (rows, cols) of lots per block
TYPES = ("cbd", "apartment", "mixed", "villa", "suburb")
LAYOUT = {"cbd": (2, 2), "apartment": (4, 2), "mixed": (3, 4), "villa": (5, 6), "suburb": (3, 4)}
USAGE = {
    "cbd": ("업무시설", "판매시설", "숙박시설"),
    "apartment": ("공동주택",),
    "mixed": ("제2종근린생활시설", "제1종근린생활시설", "업무시설", "교육연구시설"),
    "villa": ("단독주택", "공동주택", "제1종근린생활시설"),
    "suburb": ("단독주택", "창고시설", "제1종근린생활시설"),
}
HEIGHT_RANGE = {"cbd": (30, 220), "apartment": (35, 90), "mixed": (9, 40), "villa": (6, 15), "suburb": (4, 10)}
POI_KINDS = ("cafe", "restaurant", "convenience_store", "pharmacy", "bank", "school", "clinic", "bus_stop")


@dataclass
class City:
    buildings: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame
    records: pd.DataFrame
    side_m: float
    seconds: float


def _density(x: np.ndarray, y: np.ndarray, side: float, rng: np.random.Generator) -> np.ndarray:
    """Base density plus Gaussian centres: 3 CBDs and sub-centres, scaled to the city size."""
    scale = side / np.sqrt(SEOUL_AREA_M2)
    n_sub = max(2, int(round(14 * scale**2)))
    cx = np.r_[[0.0, 0.28, -0.22], rng.uniform(-0.45, 0.45, n_sub)] * side
    cy = np.r_[[0.05, -0.25, -0.1], rng.uniform(-0.45, 0.45, n_sub)] * side
    amp = np.r_[[3.0, 2.6, 2.0], rng.uniform(0.7, 1.5, n_sub)]
    sig = np.r_[[0.07, 0.06, 0.05], rng.uniform(0.03, 0.06, n_sub)] * max(side, 4000.0)
    w = np.full(x.shape, 0.35)
    for i in range(len(cx)):
        w += amp[i] * np.exp(-((x - cx[i]) ** 2 + (y - cy[i]) ** 2) / (2 * sig[i] ** 2))
    return w


def _empty(x: np.ndarray, y: np.ndarray, side: float, rng: np.random.Generator) -> np.ndarray:
    """River band and mountain parks: no buildings there."""
    river_y = -0.12 * side + 0.06 * side * np.sin(x / side * 2 * np.pi * 1.3 + 0.7)
    river = np.abs(y - river_y) < max(0.02 * side, 120)
    n_parks = max(1, int(round(8 * (side / np.sqrt(SEOUL_AREA_M2)) ** 2)))
    px, py = rng.uniform(-0.5, 0.5, (2, n_parks)) * side
    pr = rng.uniform(0.03, 0.08, n_parks) * max(side, 4000.0)
    park = np.zeros(x.shape, dtype=bool)
    for i in range(n_parks):
        park |= (x - px[i]) ** 2 + (y - py[i]) ** 2 < pr[i] ** 2
    return river | park


def _block_types(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Index into TYPES per block; denser blocks lean to towers and apartments."""
    p = np.stack([
        np.clip((w - 1.2) / 2.5, 0, 0.55),          # cbd
        np.full(w.shape, 0.22),                      # apartment
        np.clip(0.15 + w / 6, 0, 0.35),              # mixed
        np.clip(w / 2, 0.05, 0.45),                  # villa
        np.clip(0.6 - w / 1.5, 0.02, 0.6),           # suburb
    ], axis=1)
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(len(w))[:, None]
    return np.minimum((u > np.cumsum(p, axis=1)).sum(axis=1), len(TYPES) - 1)


def _rect_coords(u0, v0, u1, v1) -> np.ndarray:
    return np.stack([np.stack([u0, v0], -1), np.stack([u1, v0], -1), np.stack([u1, v1], -1),
                     np.stack([u0, v1], -1), np.stack([u0, v0], -1)], axis=1)


def _l_coords(u0, v0, u1, v1, fu, fv) -> np.ndarray:
    """An L: the rectangle minus its top-right corner (fractions fu, fv of it)."""
    cu = u1 - (u1 - u0) * fu
    cv = v1 - (v1 - v0) * fv
    pts = [(u0, v0), (u1, v0), (u1, cv), (cu, cv), (cu, v1), (u0, v1), (u0, v0)]
    return np.stack([np.stack(p, -1) for p in pts], axis=1)


def _to_world(local: np.ndarray, cx, cy, ang) -> np.ndarray:
    c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
    u, v = local[..., 0], local[..., 1]
    return np.stack([cx[:, None] + u * c - v * s, cy[:, None] + u * s + v * c], axis=-1)


def generate(n: int = FULL_N, seed: int = 42) -> City:
    """``n`` building footprints (exactly), ~n/8 POIs and ~n/100 records, EPSG:5186."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    side = float(np.sqrt(SEOUL_AREA_M2 * n / FULL_N))
    k = max(2, int(np.ceil(side / CELL)))
    g = (np.arange(k) - (k - 1) / 2) * CELL
    bx, by = [a.ravel() for a in np.meshgrid(g, g)]
    w = _density(bx, by, side, rng)
    keep = ~_empty(bx, by, side, rng)
    bx, by, w = bx[keep], by[keep], w[keep]
    btype = _block_types(w, rng)
    # smooth block angle field, +-18 degrees; the block shrinks so a rotated one stays in its cell
    ang = np.radians(18) * np.sin(bx / 3100 + 1.3 * np.cos(by / 4700)) * np.cos(by / 2900)
    inner = (CELL - STREET) / (np.abs(np.cos(ang)) + np.abs(np.sin(ang)))

    # candidate lots: every block's layout, kept with a density-driven probability
    rows = np.array([LAYOUT[t][0] for t in TYPES])[btype]
    cols = np.array([LAYOUT[t][1] for t in TYPES])[btype]
    per = rows * cols
    blk = np.repeat(np.arange(len(bx)), per)
    j = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
    r, c = j // cols[blk], j % cols[blk]
    occ_base = np.array([0.95, 0.9, 0.85, 0.85, 0.35])[btype[blk]] * np.clip(w[blk] / 1.2, 0.25, 1.0)
    score = rng.random(len(blk)) / occ_base  # lowest scores are kept first: denser blocks fill up first
    if len(blk) < n:
        raise ValueError(f"the city grid holds only {len(blk)} lots, fewer than {n}")
    chosen = np.sort(np.argpartition(score, n - 1)[:n])
    blk, r, c = blk[chosen], r[chosen], c[chosen]
    t = btype[blk]
    s = inner[blk]
    du, dv = s / cols[blk], s / rows[blk]
    lu0, lv0 = -s / 2 + c * du, -s / 2 + r * dv
    # building = lot minus a random setback on each side
    m = len(blk)
    setback = rng.uniform(0.06, 0.22, (4, m))
    setback[:, t == 1] = rng.uniform(0.08, 0.14, (4, int((t == 1).sum())))
    u0, u1 = lu0 + setback[0] * du, lu0 + du - setback[1] * du
    v0, v1 = lv0 + setback[2] * dv, lv0 + dv - setback[3] * dv

    # shapes: courtyards for big cbd lots, L-shapes for some, jittered quads for small ones, else rectangles
    roll = rng.random(m)
    court = (t == 0) & (roll < 0.35)
    ell = ~court & (roll < np.where(t == 0, 0.6, 0.18))
    quad = ~court & ~ell & (roll > 0.75) & (t >= 3)
    rect = ~(court | ell | quad)
    geoms = np.empty(m, dtype=object)
    cx, cy, a = bx[blk] + CENTRE[0], by[blk] + CENTRE[1], ang[blk]  # built around 0,0; placed on Seoul

    def place(mask, local):
        return _to_world(local, cx[mask], cy[mask], a[mask])

    geoms[rect] = shapely.polygons(place(rect, _rect_coords(u0[rect], v0[rect], u1[rect], v1[rect])))
    geoms[ell] = shapely.polygons(place(ell, _l_coords(u0[ell], v0[ell], u1[ell], v1[ell],
                                                      rng.uniform(0.3, 0.6, ell.sum()),
                                                      rng.uniform(0.3, 0.6, ell.sum()))))
    q = _rect_coords(u0[quad], v0[quad], u1[quad], v1[quad])
    jit = rng.uniform(-0.12, 0.12, (quad.sum(), 4, 2)) * np.stack([du[quad], dv[quad]], -1)[:, None, :]
    q[:, :4] += jit
    q[:, 4] = q[:, 0]
    geoms[quad] = shapely.polygons(place(quad, q))
    hu, hv = (u1 - u0) * rng.uniform(0.25, 0.35, m), (v1 - v0) * rng.uniform(0.25, 0.35, m)
    shell = shapely.linearrings(place(court, _rect_coords(u0[court], v0[court], u1[court], v1[court])))
    hole = _rect_coords(u0[court] + hu[court], v0[court] + hv[court], u1[court] - hu[court], v1[court] - hv[court])
    hole = shapely.linearrings(place(court, hole[:, ::-1]))
    geoms[court] = shapely.polygons(shell, holes=hole[:, None])

    # heights: log-uniform within the type's range, pulled up by local density
    lo = np.array([HEIGHT_RANGE[x][0] for x in TYPES], dtype=float)[t]
    hi = np.array([HEIGHT_RANGE[x][1] for x in TYPES], dtype=float)[t]
    f = np.clip(rng.beta(1.4, 3.0, m) * (0.7 + 0.3 * np.clip(w[blk] / 3, 0, 1)), 0, 1)
    height = np.round(np.exp(np.log(lo) + f * (np.log(hi) - np.log(lo))), 1)
    floors = np.maximum(1, np.round(height / 3.1)).astype("int64")
    which = rng.random(m)
    h_out = np.where(which < 0.82, height, np.nan)  # 82 % measured height
    f_out = pd.array(np.where(which < 0.995, floors, 0), dtype="Int64")  # 0.5 % neither
    f_out[which >= 0.995] = pd.NA
    usage_choices = [np.array(USAGE[x], dtype=object) for x in TYPES]
    pick = rng.integers(0, 4, m)
    usage = np.empty(m, dtype=object)
    for i, choices in enumerate(usage_choices):
        sel = t == i
        usage[sel] = choices[pick[sel] % len(choices)]
    name = np.full(m, None, dtype=object)
    apt = t == 1
    name[apt] = [f"가상{b % 997}아파트 {101 + int(k_)}동" for b, k_ in zip(blk[apt], (r * 2 + c)[apt])]
    tower = t == 0
    name[tower] = [f"가상타워 {b}-{int(k_)}" for b, k_ in zip(blk[tower], (r * 2 + c)[tower])]
    year = rng.integers(1965, 2024, m)
    bid = np.char.add("B", np.char.zfill(np.arange(m).astype(str), 9))
    buildings = gpd.GeoDataFrame(
        {"bld_id": bid, "name": name, "usage": usage, "height": h_out, "floors": f_out,
         "year_built": year, "block": blk.astype("int64")},
        geometry=geoms, crs=CRS,
    )

    # POIs: one per ~8 buildings, mostly on the ground floor of non-apartment buildings
    centres = shapely.get_coordinates(shapely.centroid(geoms))
    weight = np.where(t == 1, 0.2, 1.0) * (1 + w[blk])
    n_poi = max(1, n // 8)
    host = rng.choice(m, size=n_poi, replace=True, p=weight / weight.sum())
    pxy = centres[host] + rng.normal(0, 4.0, (n_poi, 2))
    kind = np.array(POI_KINDS, dtype=object)[rng.integers(0, len(POI_KINDS), n_poi)]
    pois = gpd.GeoDataFrame(
        {"poi_id": np.char.add("P", np.char.zfill(np.arange(n_poi).astype(str), 8)),
         "kind": kind, "name": [f"{k_} {i}" for i, k_ in enumerate(kind)], "building": bid[host]},
        geometry=shapely.points(pxy), crs=CRS,
    )

    # records: what a city office keeps, located by a road address (street row/column of the grid)
    n_rec = max(1, n // 100)
    rb = rng.choice(m, size=n_rec, replace=False)
    road_row = np.round((centres[rb, 1] - CENTRE[1] + side / 2) / CELL).astype(int)
    number = (np.round((centres[rb, 0] - CENTRE[0] + side / 2) / CELL).astype(int) * 2 + 1)
    records = pd.DataFrame({
        "record_id": np.char.add("R", np.char.zfill(np.arange(n_rec).astype(str), 7)),
        "address": [f"서울특별시 가상구 가상{rr}로 {nn}" for rr, nn in zip(road_row, number)],
        "category": rng.choice(["민원", "점검", "신고", "허가"], n_rec),
        "building": bid[rb],
        "x_5186": np.round(centres[rb, 0], 2),
        "y_5186": np.round(centres[rb, 1], 2),
    })
    return City(buildings, pois, records, side, time.perf_counter() - t0)


def write(city: City, out_dir: Path, stem: str) -> dict[str, Path]:
    """FlatGeobuf (EPSG:5186) for buildings and POIs, UTF-8 CSV for records."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"buildings": out_dir / f"{stem}_buildings.fgb", "pois": out_dir / f"{stem}_pois.fgb",
             "records": out_dir / f"{stem}_records.csv"}
    city.buildings.to_file(paths["buildings"], driver="FlatGeobuf", engine="pyogrio")
    city.pois.to_file(paths["pois"], driver="FlatGeobuf", engine="pyogrio")
    city.records.to_csv(paths["records"], index=False, encoding="utf-8")
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=FULL_N, help="number of buildings (default 600000)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/.data"))
    args = ap.parse_args()
    city = generate(args.n, args.seed)
    t0 = time.perf_counter()
    paths = write(city, args.out, f"city{args.n}")
    print(f"generated {len(city.buildings)} buildings, {len(city.pois)} POIs, {len(city.records)} records "
          f"over {city.side_m / 1000:.1f} km x {city.side_m / 1000:.1f} km in {city.seconds:.1f}s; "
          f"wrote {', '.join(map(str, paths.values()))} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()

"""P2: dynamic MVT from PostGIS: ours vs tipg, and the SQL floor.

(pygeoapi's MVT-postgresql provider is diagnosed in benchmarks/pygeoapi_mvt.py, not raced.)

Tiles: a realistic z14-16 mix, found by picking random buildings (so dense areas are
asked for more, as users do) and a zoom uniformly from 14-16; the unique tiles are
shuffled once (fixed seed) and every server gets the same sequence.

Cold: each server is started fresh per repetition (our tile cache empty) and wrk walks
the list from a per-repetition offset, for cold_seconds or, when shorter, the time the floor of
that repetition needs for 85 % of the list (ours, near the floor, then never wraps around); the report gives the share of requests that were
a tile's first request (1.0 = fully cold); the cold targets need >= 0.9 (benchmarks/verdict.py).
Warm: the same server then serves a 200-tile set it has already served once. Our LRU answers
and tipg has no tile cache, so the warm ratio compares a cache with none and carries no target.

Floor: the same tile SQL ours runs (tiles.postgis_source, prepared statements) from 16
threads, each tile of the first 85 % of the repetition's list once: ST_AsMVT time plus the driver, with no HTTP, no gzip and no framework.
It runs over as many database connections as our server's tile pool holds (the same SQL and
connections: pipelines.store.postgis.default_tile_connections, 6 on 2 cores), and again over 16
connections (one per thread, as before our pool had its own size), shown beside it.
Overhead = floor req/s / ours req/s - 1, against the floor with our pool's connections.

PostgreSQL's and the OS's caches are warmed by one full pass over the table first, so
"cold" means the application is cold, not the disk.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks import servers
from benchmarks.common import median
from benchmarks.loadgen import run_wrk
from benchmarks.verdict import Evidence, alternated, judge

CONNECTIONS = 16
COLD_LIST_SHARE = 0.85  # of the cold list the floor would get through in a cold run (see run)
ZOOMS = (14, 15, 16)


def tile_list(lon: np.ndarray, lat: np.ndarray, count: int, seed: int = 7) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(lon), count * 4)
    z = rng.choice(ZOOMS, len(pick))
    n = 2.0 ** z
    x = np.floor((lon[pick] + 180) / 360 * n).astype(int)
    latr = np.radians(lat[pick])
    y = np.floor((1 - np.log(np.tan(latr) + 1 / np.cos(latr)) / np.pi) / 2 * n).astype(int)
    seen, out = set(), []
    for t in zip(z.tolist(), x.tolist(), y.tolist()):
        if t not in seen:
            seen.add(t)
            out.append(t)
    rng.shuffle(out)
    return out[:count]


URLS = {
    "ours": lambda layer: lambda z, x, y: f"/collections/{layer}/tiles/WebMercatorQuad/{z}/{y}/{x}",
    "tipg": lambda layer: lambda z, x, y: f"/collections/public.{layer}/tiles/WebMercatorQuad/{z}/{x}/{y}",
}


def _server(name: str, ctx, layer: str, processes: int):
    if name == "ours":
        return servers.ours(ctx.project, ctx.db_url, processes)
    return servers.tipg(ctx.db_url, layer, processes)


def floor(ctx, layer: str, tiles: list[tuple[int, int, int]], connections: int = CONNECTIONS) -> dict:
    """The SQL alone: our prepared ST_AsMVT query from 16 threads over ``connections`` pooled
    connections, each tile once."""
    from psycopg_pool import ConnectionPool

    from tiles.postgis_source import PostGISTileSource

    pool = ConnectionPool(ctx.db_url, min_size=connections, max_size=connections, open=True, timeout=120)
    try:
        src = PostGISTileSource(pool, layer, 10, 16)

        def one(t):
            t0 = time.perf_counter()
            data = src.tile(*t)
            return time.perf_counter() - t0, len(data or b"")

        with ThreadPoolExecutor(CONNECTIONS) as ex:
            list(ex.map(one, tiles[:CONNECTIONS * 4]))  # prepare the statement on every connection
            t0 = time.perf_counter()
            res = list(ex.map(one, tiles))
            secs = time.perf_counter() - t0
    finally:
        pool.close()
    lat = np.array([r[0] for r in res]) * 1000
    return {"rps": len(tiles) / secs, "requests": len(tiles), "seconds": secs, "connections": connections,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "mean_tile_bytes": float(np.mean([r[1] for r in res]))}


def warm_pg(ctx, layer: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(ctx.db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SELECT sum(ST_NPoints(geometry)), count(name) FROM {}").format(
            sql.Identifier(layer))).fetchone()


def sanity(base: str, url_of, tiles) -> dict:
    """Status and size of a few dense tiles, to show every server returns real data."""
    import httpx

    sizes, codes = [], []
    for t in tiles:
        r = httpx.get(base + url_of(*t), timeout=60)
        codes.append(r.status_code)
        sizes.append(len(r.content))
    return {"status": codes, "bytes": sizes}


def run(ctx, layer: str, reps: int, cold_seconds: float, warm_seconds: float, peers=("tipg",),
        processes: int = 1) -> dict:
    """Ours and ``peers`` on ``layer``, every server with ``processes`` uvicorn workers; each
    repetition starts every server afresh."""
    tiles = tile_list(ctx.lonlat[layer][0], ctx.lonlat[layer][1], 6000)
    k = min(200, len(tiles) // 4)
    warm_set, cold_tiles = tiles[-k:], tiles[:-k]
    warm_pg(ctx, layer)
    names = ["ours", *peers]
    out: dict = {"layer": layer, "features": ctx.sizes[layer], "tiles_unique": len(tiles), "zoom_mix": {z: sum(1 for t in tiles if t[0] == z) for z in ZOOMS},
                 "connections": CONNECTIONS, "processes": processes, "reps": reps, "cold_seconds": cold_seconds,
                 "warm_seconds": warm_seconds, "runs": {n: {"cold": [], "warm": []} for n in names},
                 "floor": [], "floor_16": [], "cold_seconds_run": [], "sanity": {}, "orders": []}
    from pipelines.store.postgis import default_tile_connections

    # what our server's tile pools hold on this machine, one pool per process
    pool_size = min(CONNECTIONS, default_tile_connections() * processes)
    out["ours_tile_connections"] = pool_size
    dense = sorted(tiles[:300], key=lambda t: -t[0])[:3]
    for rep in range(reps):
        offset = (rep * len(cold_tiles)) // reps
        seq = cold_tiles[offset:] + cold_tiles[:offset]
        floors = [("floor", pool_size), ("floor_16", CONNECTIONS)]
        for key, conns in (floors if rep % 2 == 0 else floors[::-1]):
            # the span of the list a cold run gets through, so that tail latencies compare like tiles
            out[key].append(floor(ctx, layer, seq[:int(COLD_LIST_SHARE * len(seq))], conns))
        # the list holds every z14-16 tile of the city once (~2,900): a server faster than the list
        # is long for cold_seconds would ask for tiles again and hit its cache, so the cold runs of
        # this repetition last as long as the faster floor needs for COLD_LIST_SHARE of the list
        # (whole seconds: wrk reads no fractions)
        secs = max(2, min(cold_seconds, int(COLD_LIST_SHARE * len(seq) / max(out[k][-1]["rps"] for k, _ in floors))))
        out["cold_seconds_run"].append(secs)
        order = names[rep % len(names):] + names[:rep % len(names)]
        out["orders"].append(order)
        for name in order:
            url_of = URLS[name](layer)
            with _server(name, ctx, layer, processes) as srv:
                if rep == 0:
                    out["sanity"][name] = sanity(srv.base, url_of, dense)
                cold = run_wrk(srv.base, [url_of(*t) for t in seq], secs, CONNECTIONS, f"{name}-cold")
                warm_paths = [url_of(*t) for t in warm_set]
                run_wrk(srv.base, warm_paths, max(2.0, warm_seconds / 3), CONNECTIONS, f"{name}-prime")
                warm = run_wrk(srv.base, warm_paths, warm_seconds, CONNECTIONS, f"{name}-warm")
            out["runs"][name]["cold"].append(cold)
            out["runs"][name]["warm"].append(warm)
    summary = {}
    for name in names:
        s = {}
        for phase in ("cold", "warm"):
            runs = out["runs"][name][phase]
            s[phase] = {k: median([r[k] for r in runs]) for k in ("rps", "p50_ms", "p99_ms", "first_request_share")}
            s[phase]["errors"] = sum(r["errors"] for r in runs)
        summary[name] = s
    for key in ("floor", "floor_16"):
        summary[key] = {k: median([r[k] for r in out[key]]) for k in ("rps", "p50_ms", "p99_ms", "mean_tile_bytes")}
        summary[key]["connections"] = out[key][0]["connections"]
    out["summary"] = summary
    ours_cold = [r["rps"] for r in out["runs"]["ours"]["cold"]]
    ratios = {}
    for peer in peers:
        for phase in ("cold", "warm"):
            # a peer that completes nothing in the run gives an unbounded ratio (reported as inf)
            ratios[f"ours_over_{peer}_{phase}"] = median(
                [o["rps"] / p["rps"] if p["requests"] else float("inf")
                 for o, p in zip(out["runs"]["ours"][phase], out["runs"][peer][phase])])
    ratios["overhead_over_floor_cold"] = median([f["rps"] / o - 1 for f, o in zip(out["floor"], ours_cold)])
    ratios["overhead_over_floor_16_cold"] = median([f["rps"] / o - 1 for f, o in zip(out["floor_16"], ours_cold)])
    ours_p99 = [r["p99_ms"] for r in out["runs"]["ours"]["cold"]]
    ratios["ours_p99_over_floor_p99_cold"] = median([o / f["p99_ms"] for f, o in zip(out["floor"], ours_p99)])
    if "tipg" in peers:
        ratios["ours_p99_over_tipg_p99_cold"] = median(
            [o / p["p99_ms"] for o, p in zip(ours_p99, [r for r in out["runs"]["tipg"]["cold"]])])
    out["ratios"] = ratios
    # cold claims: every repetition of every side must have been cold (the floor asks each tile once)
    cold_share = min(r["first_request_share"] for n in names for r in out["runs"][n]["cold"])
    ev = Evidence(reps=reps, alternated=alternated(out["orders"]), cold_share=cold_share)
    targets = {"overhead over floor <= 15% (cold)": judge(ratios["overhead_over_floor_cold"], ev, at_most=0.15),
               "ours cold p99 <= 1.25 x floor p99": judge(ratios["ours_p99_over_floor_p99_cold"], ev, at_most=1.25)}
    if "tipg" in peers:
        targets["ours >= 2x tipg (cold rps)"] = judge(ratios["ours_over_tipg_cold"], ev, at_least=2)
        targets["ours cold p99 <= tipg cold p99"] = judge(ratios["ours_p99_over_tipg_p99_cold"], ev, at_most=1)
    out["targets"] = targets
    return out

"""P5: OGC API Features items: ours (citytwin serve) vs a plain pygeoapi and tipg on the same table.

Three query sets, each around random buildings (bboxes of 250-400 m, dense areas asked more),
``limit=100``, GeoJSON:

- ``bbox``: bbox only (every server);
- ``mixed``: bbox with sortby, properties, a CQL2 text filter, or all three (every server);
- ``crs``: bbox with output ``crs`` EPSG:5186 (OGC API Features Part 2). tipg has no ``crs``
  parameter (it answers CRS84 only), so this set compares ours with pygeoapi.

Neither server caches items, so the runs are steady-state (PostgreSQL and OS caches warm):
wrk with 16 connections cycling through 2000 paths, the servers' order rotated between
repetitions. Before timing, the first paths of every set are asked of every server and their
``numberMatched`` and feature ids compared, so the sides answer the same question.

``python -m benchmarks.p5_features [buildings]`` runs P5 alone on a generated town of that many
buildings (default 10,000) in a throw-away PostGIS with the harness's database settings, and
writes benchmarks/.work/p5-direct.json (not a results file: ``make bench`` writes those).
"""
from __future__ import annotations

import json
import os
import sys
import time
from urllib.parse import urlencode

import numpy as np

from benchmarks import servers
from benchmarks.common import median
from benchmarks.loadgen import run_wrk
from benchmarks.verdict import Evidence, alternated, judge

CONNECTIONS = 16
LIMIT = 100
PATHS = 2000
CHECKED = 20  # paths per set whose answers are compared between servers
EPSG_5186 = "http://www.opengis.net/def/crs/EPSG/0/5186"
SETS = {"bbox": ("ours", "pygeoapi", "tipg"), "mixed": ("ours", "pygeoapi", "tipg"), "crs": ("ours", "pygeoapi")}


def bboxes(lon: np.ndarray, lat: np.ndarray, count: int = PATHS, seed: int = 11) -> list[str]:
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(lon), count)
    half = rng.uniform(125, 200, count)
    dlon = half / (111_320 * np.cos(np.radians(lat[pick])))
    dlat = half / 110_540
    return [f"{a - dx:.6f},{b - dy:.6f},{a + dx:.6f},{b + dy:.6f}" for a, b, dx, dy in zip(lon[pick], lat[pick], dlon, dlat)]


def queries(kind: str, boxes: list[str], seed: int = 5) -> list[dict[str, str]]:
    """The query parameters of one set, one per bbox (mixed: the four shapes in turn)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, bbox in enumerate(boxes):
        q = {"f": "json", "limit": str(LIMIT), "bbox": bbox}
        tall = f"height > {rng.uniform(5, 40):.1f}"
        if kind == "crs":
            q["crs"] = EPSG_5186
        elif kind == "mixed":
            # the id ends the sort keys: heights tie (and are missing), and every server must give one answer
            q.update([{"sortby": "-height,id"}, {"properties": "name,height,usage"}, {"filter": tall},
                      {"sortby": "-height,id", "properties": "height", "filter": f"{tall} AND floors >= 2"}][i % 4])
        out.append(q)
    return out


def path(layer: str, server: str, q: dict[str, str]) -> str:
    if server == "tipg":  # tables by schema; its f=json is a list of properties, GeoJSON is its default
        layer, q = f"public.{layer}", {k: v for k, v in q.items() if k != "f"}
    return f"/collections/{layer}/items?{urlencode(q, safe=',')}"


def same_answers(bases: dict[str, str], layer: str, qs: list[dict[str, str]]) -> dict:
    """Paths whose status, numberMatched or feature ids differ between the servers, out of those
    compared; and each server's median size and time of these answers, one request at a time."""
    import httpx

    differ, sizes, times = [], {}, {}
    for q in qs[:CHECKED]:
        got = {}
        for name, base in bases.items():
            t0 = time.perf_counter()
            r = httpx.get(base + path(layer, name, q), timeout=120)
            times.setdefault(name, []).append(time.perf_counter() - t0)
            doc = r.json() if r.status_code == 200 else {}
            got[name] = (r.status_code, doc.get("numberMatched"), [str(f["id"]) for f in doc.get("features", [])])
            sizes.setdefault(name, []).append(len(r.content))
        if len({json.dumps(v) for v in got.values()}) > 1:
            differ.append({"query": q, **{n: v[:2] for n, v in got.items()}})
    return {"compared": min(CHECKED, len(qs)), "differ": differ,
            "median_bytes": {n: median([float(s) for s in v]) for n, v in sizes.items()},
            "median_single_ms": {n: round(1000 * median(v), 1) for n, v in times.items()}}


def run(ctx, reps: int, seconds: float, layer_key: str = "buildings") -> dict:
    layer = ctx.layers[layer_key]
    boxes = bboxes(ctx.lonlat[layer][0], ctx.lonlat[layer][1])
    sets = {kind: queries(kind, boxes) for kind in SETS}
    runs: dict[str, dict[str, list]] = {kind: {n: [] for n in names} for kind, names in SETS.items()}
    starters = {"ours": lambda: servers.ours(ctx.project, ctx.db_url),
                "pygeoapi": lambda: servers.pygeoapi(ctx.db_url, layer, ctx.bounds[layer_key]),
                "tipg": lambda: servers.tipg(ctx.db_url, layer)}
    checks, orders = {}, {kind: [] for kind in SETS}
    with starters["ours"]() as ours_srv, starters["pygeoapi"]() as pyg_srv, starters["tipg"]() as tipg_srv:
        bases = {"ours": ours_srv.base, "pygeoapi": pyg_srv.base, "tipg": tipg_srv.base}
        for kind, names in SETS.items():
            checks[kind] = same_answers({n: bases[n] for n in names}, layer, sets[kind])
            for name in names:  # warm every server's caches and pools on paths the runs ask last
                run_wrk(bases[name], [path(layer, name, q) for q in sets[kind][-200:]], 2, CONNECTIONS,
                        f"p5-{kind}-{name}-prime")
        for rep in range(reps):
            for kind, names in SETS.items():
                order = list(names[rep % len(names):] + names[:rep % len(names)])  # each server first in turn
                orders[kind].append(order)
                for name in order:
                    paths = [path(layer, name, q) for q in sets[kind]]
                    runs[kind][name].append(run_wrk(bases[name], paths, seconds, CONNECTIONS, f"p5-{kind}-{name}")
                                            | {"loadavg": os.getloadavg()[0]})
    out = {"bboxes": len(boxes), "limit": LIMIT, "connections": CONNECTIONS, "reps": reps, "seconds": seconds,
           "layer": layer, "sets": {}}
    for kind, by_server in runs.items():
        summary = {n: {k: median([r[k] for r in rs]) for k in ("rps", "p50_ms", "p99_ms")} | {
            "errors": sum(r["errors"] for r in rs)} for n, rs in by_server.items()}
        ratios = {f"ours_over_{peer}": median([o["rps"] / p["rps"] for o, p in zip(by_server["ours"], by_server[peer])])
                  for peer in by_server if peer != "ours"}
        ev = Evidence(reps=reps, alternated=alternated(orders[kind]), same_data=not checks[kind]["differ"])
        out["sets"][kind] = {"runs": by_server, "summary": summary, "ratios": ratios, "check": checks[kind],
                             "orders": orders[kind],
                             "target": judge(ratios["ours_over_pygeoapi"], ev, at_least=3)}
    bbox = out["sets"]["bbox"]
    # the keys the report has read since P5 began: the bbox-only set against pygeoapi
    out.update(runs=bbox["runs"], summary=bbox["summary"], ratio_ours_over_pygeoapi=bbox["ratios"]["ours_over_pygeoapi"])
    out["targets"] = {f"ours >= 3x pygeoapi (req/s, {kind} set)": s["target"] for kind, s in out["sets"].items()}
    out["sanity"] = {kind: s["check"]["median_single_ms"] for kind, s in out["sets"].items()}  # ms, one request
    return out


def main() -> int:
    """P5 alone on a generated town (see the module's docstring)."""
    from benchmarks.citygen import generate, write
    from benchmarks.common import CITYTWIN, DATA, WORK, ThrowawayCluster, dump, env_with, run_timed, tune_cluster, \
        write_project
    from benchmarks.run import Context
    from pipelines.store.postgis import PostGISStore

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    reps, seconds = int(os.environ.get("P5_REPS", "3")), float(os.environ.get("P5_SECONDS", "8"))
    layer = f"buildings_{n}"
    for folder in (WORK, DATA):
        folder.mkdir(parents=True, exist_ok=True)
    cluster = ThrowawayCluster()
    url = cluster.start()
    try:
        settings = tune_cluster(cluster, url)
        project = write_project(WORK / "p5-project", {layer: {"kind": "buildings", "minzoom": 10, "maxzoom": 16}})
        files = write(generate(n, seed=42), DATA, f"city{n}")
        cmd = [str(CITYTWIN), "ingest", str(files["buildings"]), "--layer", layer, "--kind", "buildings",
               "--project", str(project)]
        done = run_timed(cmd, env=env_with(CITYTWIN_DATABASE_URL=url))
        if done.returncode != 0:
            raise RuntimeError(f"ingest failed:\n{done.stderr[-3000:]}")
        with PostGISStore(url) as store:
            ctx = Context(db_url=url, project=project, store=store, layers={"buildings": layer})
            ctx.bounds["buildings"] = tuple(round(b, 6) for b in store.info(layer).bounds)
            points = store.read(layer).geometry.representative_point()
            ctx.lonlat[layer] = (points.x.to_numpy(), points.y.to_numpy())
            load_before = os.getloadavg()
            result = run(ctx, reps, seconds) | {"db_settings": settings, "loadavg_before": load_before,
                                                "loadavg_after": os.getloadavg(), "finished": time.ctime()}
    finally:
        cluster.stop()
    dump(result, WORK / "p5-direct.json")
    for kind, s in result["sets"].items():
        rps = ", ".join(f"{k} {v['rps']:.1f} req/s" for k, v in s["summary"].items())
        print(f"{kind}: {rps}; ratios {s['ratios']}; answers differing: {len(s['check']['differ'])}"
              f"/{s['check']['compared']}; load {[round(r['loadavg'], 1) for r in s['runs']['ours']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

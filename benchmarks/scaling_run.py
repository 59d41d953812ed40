"""A measured run for the scaling model: a generated city ingested and tiled by the real CLI.

``python -m benchmarks.scaling_run -n 1200000 --workers 2 --out DIR`` generates the city
(benchmarks/citygen.py, FlatGeobuf), then times ``citytwin ingest --kind generic --minzoom 10
--maxzoom 16 [--workers W]`` and ``citytwin build --skip-ingest [--workers W]`` (GeoPackage
store), each as its own child process. It writes DIR/run.json: both commands, their wall
times and peak RSS, the load average around them, and where the cost logs are
(DIR/project/build/costs/), which benchmarks/scaling_model.py reads. With ``--predict-from``
(the project folder of an earlier run) it also prints what the model predicted for this one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks.common import CITYTWIN, WORK, run_timed
from benchmarks.scaling_model import predict
from pipelines.costs import cost_log_path, read_cost_log
from pipelines.store import GPKG_NAME
from pipelines.store.gpkg import GeoPackageStore

LAYER = "buildings"
JOBS = ("ingest", "pmtiles")


def measure(n: int, workers: int, out: Path, seed: int) -> dict:
    from benchmarks.citygen import generate, write

    out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    source = out / f"city{n}_buildings.fgb"
    if not source.exists():
        write(generate(n, seed), out, f"city{n}")
    project = out / "project"
    if not (project / "citytwin.yaml").exists():
        run_timed([str(CITYTWIN), "init", str(project)])
    dask = ["--workers", str(workers)] if workers > 1 else []
    commands = {
        "ingest": [str(CITYTWIN), "ingest", str(source), "--layer", LAYER, "--kind", "generic", "--minzoom", "10",
                   "--maxzoom", "16", *dask, "--project", str(project)],
        # one thread per worker: the model schedules each worker as one stream of partitions
        "build": [str(CITYTWIN), "build", "--skip-ingest", "--layer", LAYER, *dask, "--threads", "1",
                  "--project", str(project)],
    }
    result: dict = {"features": n, "workers": workers, "cpus": os.cpu_count(), "commands": {}, "costs": {}}
    for step, cmd in commands.items():
        load_before = os.getloadavg()[0]
        timed = run_timed(cmd, timeout=3 * 3600)
        if timed.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({timed.returncode}):\n{timed.stderr[-3000:]}")
        result["commands"][step] = {"argv": " ".join(cmd), "seconds": timed.seconds, "max_rss_mb": timed.max_rss_mb,
                                    "load_before": load_before, "load_after": os.getloadavg()[0],
                                    "output": timed.stdout.strip().splitlines()}
    for job in JOBS:
        path = cost_log_path(project / "build", LAYER, job)
        result["costs"][job] = {"log": str(path), "wall_s": read_cost_log(path).wall_s}
    result["bounds"] = list(GeoPackageStore(project / "build" / GPKG_NAME).info(LAYER).bounds)
    (out / "run.json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    return result


def compare(result: dict, calibration: Path) -> str:
    """The model's prediction for this run, from the cost logs of an earlier one, against what it measured."""
    logs = [read_cost_log(cost_log_path(calibration / "build", LAYER, job)) for job in JOBS]
    p = predict(*logs, result["features"], result["workers"], bounds=tuple(result["bounds"]))
    lines = [f"predicted from {calibration} ({logs[0].features:,} features, {logs[0].workers} worker(s)) "
             f"for {result['features']:,} features on {result['workers']} worker(s):"]
    for job in p.jobs:
        lines.append(f"  {job.job}: predicted {job.wall_s:.0f} s ({job.bound}), "
                     f"measured {result['costs'][job.job]['wall_s']:.0f} s")
    measured = sum(result["costs"][j]["wall_s"] for j in JOBS)
    lines.append(f"  total: predicted {p.wall_s:.0f} s, measured {measured:.0f} s "
                 f"(ratio {measured / p.wall_s:.2f})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, required=True, help="footprints to generate")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, required=True, help="scratch folder (data, project, run.json)")
    ap.add_argument("--predict-from", type=Path, default=None, help="project folder of an earlier run")
    args = ap.parse_args()
    result = measure(args.n, args.workers, args.out, args.seed)
    for step, c in result["commands"].items():
        print(f"{step}: {c['seconds']:.1f} s, {c['max_rss_mb']:.0f} MB, "
              f"load {c['load_before']:.1f}->{c['load_after']:.1f}")
    if args.predict_from:
        print(compare(result, args.predict_from))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

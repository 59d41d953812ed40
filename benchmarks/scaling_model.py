"""A scaling model: wall time of ingest + PMTiles for a larger layer on W Dask workers,
predicted from the per-partition costs a real run logged (pipelines/costs.py).

For each job, in the order they run (ingest, then the archive):

- partitions of fixed size (ingest windows of CHUNK features, PMTiles blocks of a fixed area
  at the city's density) are repeated ``features / logged features`` times, each costing what
  it cost in the logged run, in the logged order;
- a partition that reads the whole layer (the PMTiles low zooms) stays one task, and its cost
  grows with the layer: it is the critical path no number of workers shortens;
- the driver's own time (opening, joining, whole-layer steps, publishing; planning, merging,
  writing the archive) grows with the layer and is serial;
- the tasks are placed on W workers as Dask hands them out (in order, each to the worker free
  first), one core each; the store serves ``store_streams`` reads at once at the logged speed,
  so reading alone cannot take less than the reads' total over that many streams.

wall = sum over jobs of (driver + max(schedule makespan, reads / min(W, store_streams))).
``python -m benchmarks.scaling_model LOG... --features N --workers 1 8 32`` prints the table.
"""
from __future__ import annotations

import argparse
import heapq
from dataclasses import dataclass
from pathlib import Path

from pipelines.costs import CostLog, read_cost_log


@dataclass(frozen=True)
class JobPrediction:
    job: str
    partitions: int
    critical_path_s: float  # the longest single task
    work_s: float  # all tasks, one after another
    reads_s: float  # of work_s: reading
    makespan_s: float  # the tasks on the workers
    driver_s: float
    wall_s: float
    bound: str  # what sets the wall: 'critical path', 'workers', 'store reads' or 'driver'


@dataclass(frozen=True)
class Prediction:
    features: int
    workers: int
    jobs: list[JobPrediction]

    @property
    def wall_s(self) -> float:
        return sum(j.wall_s for j in self.jobs)


def scaled_tasks(log: CostLog, features: int) -> tuple[list[float], list[float]]:
    """(seconds, read seconds) of each task of the job at ``features``, in the order they are handed out."""
    factor = features / log.features
    whole = [p for p in log.partitions if p.whole_layer]
    fixed = [p for p in log.partitions if not p.whole_layer]
    tasks = [((p.read_s + p.work_s) * factor, p.read_s * factor) for p in whole]
    copies = max(1, round(len(fixed) * factor)) if fixed else 0
    tasks += [(fixed[i % len(fixed)].read_s + fixed[i % len(fixed)].work_s, fixed[i % len(fixed)].read_s)
              for i in range(copies)]
    return [t for t, _ in tasks], [r for _, r in tasks]


def makespan(tasks: list[float], workers: int) -> float:
    """Tasks handed out in order, each to the worker free first (what Dask does with equal tasks)."""
    free = [0.0] * max(1, min(workers, len(tasks) or 1))
    for t in tasks:
        heapq.heappush(free, heapq.heappop(free) + t)
    return max(free)


def predict_job(log: CostLog, features: int, workers: int, store_streams: int | None = None) -> JobPrediction:
    tasks, reads = scaled_tasks(log, features)
    driver = log.driver_s * features / log.features
    placed = makespan(tasks, workers)
    streams = min(workers, store_streams or workers)
    reading = sum(reads) / streams
    longest = max(tasks, default=0.0)
    span = max(placed, reading)
    # what sets the wall: the largest of its parts (the schedule counts as the workers' only
    # when it is clearly longer than its longest task)
    parts = {"critical path": longest, "workers": placed if placed > 1.05 * longest else 0.0,
             "store reads": reading, "driver": driver}
    bound = max(parts, key=parts.__getitem__)
    return JobPrediction(log.job, len(tasks), longest, sum(tasks), sum(reads), span, driver, driver + span, bound)


def predict(logs: list[CostLog], features: int, workers: int, store_streams: int | None = None) -> Prediction:
    return Prediction(features, workers, [predict_job(log, features, workers, store_streams) for log in logs])


def table(logs: list[CostLog], features: int, workers: list[int], store_streams: int | None = None) -> str:
    rows = ["| workers | job | partitions | critical path s | work s | driver s | wall s | bound |",
            "|---|---|---|---|---|---|---|---|"]
    for w in workers:
        p = predict(logs, features, w, store_streams)
        for j in p.jobs:
            rows.append(f"| {w} | {j.job} | {j.partitions} | {j.critical_path_s:.0f} | {j.work_s:.0f} | "
                        f"{j.driver_s:.0f} | {j.wall_s:.0f} | {j.bound} |")
        rows.append(f"| {w} | **total** | | | | | **{p.wall_s:.0f}** | |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path, help="cost logs, <build>/costs/LAYER.{ingest,pmtiles}.json")
    ap.add_argument("--features", type=int, default=7_000_000, help="features to predict for (default 7,000,000)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--store-streams", type=int, default=None,
                    help="reads the store serves at once at full speed (default: one per worker)")
    args = ap.parse_args()
    logs = [read_cost_log(p) for p in args.logs]
    print(table(logs, args.features, args.workers, args.store_streams))


if __name__ == "__main__":
    main()

"""A scaling model: wall time of ingest + PMTiles for a larger layer on W Dask workers,
predicted from the per-partition costs a real run logged (pipelines/costs.py).

Rates come from the logged run, per row or per feature of its layer:

- ingest: reading and repairing/reprojecting cost per row; the target's windows are CHUNK rows
  each (pipelines/readers/vector.py), so their count grows with the layer, not their cost;
- PMTiles: reading costs per row read; encoding zoom z costs, per feature of the layer, what all
  partitions spent on z divided by the layer's features. The target's partitions are the ones
  ``tiles.pmtiles_partitions.plan`` makes for its extent and count; a block owns the share of
  the features its area holds (uniform density over the extent unless told otherwise) and
  reads ``context`` times that (its ring; measured from the logged blocks);
- the driver's own time (opening, joining, whole-layer steps, publishing; planning, merging,
  writing the archive) grows with the features and is serial.

Tasks are placed on W workers as Dask hands them out (in plan order, each to the worker free
first), one core each; the store serves ``store_streams`` reads at once at the logged speed.

wall = sum over jobs of (driver + max(schedule makespan, reads / min(W, store_streams))).
``python -m benchmarks.scaling_model INGEST_LOG PMTILES_LOG --features N --workers 1 8 32``.
"""
from __future__ import annotations

import argparse
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.costs import CostLog, read_cost_log
from pipelines.readers.vector import CHUNK
from tiles.mvt_geometry import HALF_WORLD, tile_size
from tiles.pmtiles_partitions import Partition, plan, row_slices

KOREA = (124.6, 33.1, 131.9, 38.6)  # lon/lat box of the mainland, Jeju and the islands
#: rows a block reads per feature it owns when the logged run had no blocks (the ring around
#: 8 x 8 tiles, tiles.pmtiles_partitions.BLOCK_GAP)
DEFAULT_CONTEXT = 1.7

Share = Callable[[Partition], float]  # a block's share of the layer's features


@dataclass(frozen=True)
class Rates:
    read_per_row: float
    work_per_row: float  # ingest: repair and reprojection
    encode_per_feature: dict[int, float]  # PMTiles: zoom -> seconds per feature of the layer
    driver_per_feature: float
    context: float  # rows a block reads per feature it owns


@dataclass(frozen=True)
class JobPrediction:
    job: str
    partitions: int
    critical_path_s: float  # the longest single task
    work_s: float  # all tasks, one after another
    reads_s: float  # of work_s: reading
    makespan_s: float  # the tasks on the workers (or the store's reads, if longer)
    driver_s: float
    wall_s: float
    bound: str  # the largest part: 'critical path', 'workers', 'store reads' or 'driver'


@dataclass(frozen=True)
class Prediction:
    features: int
    workers: int
    jobs: list[JobPrediction]

    @property
    def wall_s(self) -> float:
        return sum(j.wall_s for j in self.jobs)


def rates(log: CostLog) -> Rates:
    if log.threads > 1:
        raise ValueError(f"{log.job} log of {log.layer!r}: its partitions encoded {log.threads} zooms at once, so their "
                         "seconds overlap; the model needs a build with --threads 1 (benchmarks.scaling_run does that)")
    parts = log.partitions
    rows = sum(p.rows for p in parts) or 1
    encode: dict[int, float] = {}
    for p in parts:
        for zoom, _, seconds in p.zooms:
            encode[zoom] = encode.get(zoom, 0.0) + seconds / log.features
    blocks = [p for p in parts if not p.whole_layer]
    owned = log.features if blocks and log.job == "pmtiles" else 0
    context = sum(p.rows for p in blocks) / owned if owned else DEFAULT_CONTEXT
    return Rates(sum(p.read_s for p in parts) / rows, sum(p.work_s for p in parts) / rows, encode,
                 log.driver_s / log.features, context)


def uniform_share(bounds: tuple[float, float, float, float]) -> Share:
    """A block's share: the part of the extent's Web Mercator area its tile covers."""
    x0, y0, x1, y1 = _merc_box(bounds)
    area = (x1 - x0) * (y1 - y0)

    def share(part: Partition) -> float:
        bx0, by0, bx1, by1 = _tile_box(part.bz, part.bx, part.by)
        w, h = min(x1, bx1) - max(x0, bx0), min(y1, by1) - max(y0, by0)
        return max(w, 0.0) * max(h, 0.0) / area

    return share


def one_heavy_block(bounds: tuple[float, float, float, float], heavy: tuple[int, int, int], fraction: float) -> Share:
    """``fraction`` of the features in block ``heavy`` (z, x, y), the rest spread by area over the others."""
    uniform = uniform_share(bounds)
    rest = 1.0 - uniform(Partition(*heavy, (0, 0)))

    def share(part: Partition) -> float:
        if (part.bz, part.bx, part.by) == heavy:
            return fraction
        return uniform(part) * (1.0 - fraction) / rest if rest > 0 else 0.0

    return share


def _merc_box(bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x = lambda lon: lon / 180.0 * HALF_WORLD  # noqa: E731
    y = lambda lat: math.asinh(math.tan(math.radians(lat))) / math.pi * HALF_WORLD  # noqa: E731
    return (x(bounds[0]), y(bounds[1]), x(bounds[2]), y(bounds[3]))


def _tile_box(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    size = tile_size(z)
    return (x * size - HALF_WORLD, HALF_WORLD - (y + 1) * size, (x + 1) * size - HALF_WORLD, HALF_WORLD - y * size)


def ingest_tasks(log: CostLog, features: int) -> list[tuple[float, float]]:
    """(seconds, of which reading) of each window of the target, in order."""
    r = rates(log)
    sizes = [min(CHUNK, features - start) for start in range(0, features, CHUNK)]
    return [((r.read_per_row + r.work_per_row) * n, r.read_per_row * n) for n in sizes]


def pmtiles_tasks(log: CostLog, features: int, bounds: tuple[float, float, float, float], minzoom: int,
                  maxzoom: int, share: Share | None = None, workers: int = 1) -> list[tuple[float, float]]:
    """(seconds, of which reading) of each partition ``plan`` makes for the target on ``workers``
    workers (the plan cuts finer blocks when there are more workers), and of each slice that
    whole-layer zoom ranges read together, longest first as the build hands them out
    (tiles.pmtiles_partitions.longest_first)."""
    r = rates(log)
    share = share or uniform_share(bounds)
    parts = plan(bounds, features, minzoom, maxzoom, workers)
    slices = row_slices(parts, features, workers)  # whole-layer zoom ranges read the layer once, a slice a worker
    tasks = [(r.read_per_row * ((s.stop or features) - s.start),) * 2 for s in slices]
    for part in parts:
        owned = features if part.whole_layer else features * share(part)
        read = 0.0 if slices and part.whole_layer else r.read_per_row * (owned if part.whole_layer else owned * r.context)
        encode = sum(r.encode_per_feature.get(z, 0.0) for z in range(part.zooms[0], part.zooms[1] + 1)) * owned
        tasks.append((read + encode, read))
    return sorted(tasks, key=lambda t: -t[0])


def makespan(tasks: list[float], workers: int) -> float:
    """Tasks handed out in order, each to the worker free first (what Dask does with equal priorities)."""
    free = [0.0] * max(1, min(workers, len(tasks) or 1))
    for t in tasks:
        heapq.heappush(free, heapq.heappop(free) + t)
    return max(free)


def predict_job(log: CostLog, tasks: list[tuple[float, float]], features: int, workers: int,
                store_streams: int | None = None) -> JobPrediction:
    seconds = [t for t, _ in tasks]
    reads = sum(r for _, r in tasks)
    driver = rates(log).driver_per_feature * features
    placed = makespan(seconds, workers)
    reading = reads / min(workers, store_streams or workers)
    longest = max(seconds, default=0.0)
    span = max(placed, reading)
    # the schedule counts as the workers' bound only when clearly longer than its longest task
    parts = {"critical path": longest, "workers": placed if placed > 1.05 * longest else 0.0,
             "store reads": reading, "driver": driver}
    return JobPrediction(log.job, len(tasks), longest, sum(seconds), reads, span, driver, driver + span,
                         max(parts, key=parts.__getitem__))


def predict(ingest: CostLog, pmtiles: CostLog, features: int, workers: int, *,
            bounds: tuple[float, float, float, float], minzoom: int = 10, maxzoom: int = 16,
            store_streams: int | None = None, share: Share | None = None) -> Prediction:
    jobs = [predict_job(ingest, ingest_tasks(ingest, features), features, workers, store_streams),
            predict_job(pmtiles, pmtiles_tasks(pmtiles, features, bounds, minzoom, maxzoom, share, workers), features,
                        workers, store_streams)]
    return Prediction(features, workers, jobs)


def table(predictions: list[Prediction]) -> str:
    rows = ["| workers | job | partitions | critical path s | work s | driver s | wall s | bound |",
            "|---|---|---|---|---|---|---|---|"]
    for p in predictions:
        for j in p.jobs:
            rows.append(f"| {p.workers} | {j.job} | {j.partitions} | {j.critical_path_s:.0f} | {j.work_s:.0f} | "
                        f"{j.driver_s:.0f} | {j.wall_s:.0f} | {j.bound} |")
        rows.append(f"| {p.workers} | **total** | | | | | **{p.wall_s:.0f}** | |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ingest_log", type=Path, help="<build>/costs/LAYER.ingest.json of the logged run")
    ap.add_argument("pmtiles_log", type=Path, help="<build>/costs/LAYER.pmtiles.json of the logged run")
    ap.add_argument("--features", type=int, default=7_000_000, help="features to predict for (default 7,000,000)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--bounds", type=float, nargs=4, default=KOREA, metavar=("W", "S", "E", "N"))
    ap.add_argument("--zooms", type=int, nargs=2, default=(10, 16), metavar=("MIN", "MAX"))
    ap.add_argument("--store-streams", type=int, default=None,
                    help="reads the store serves at once at full speed (default: one per worker)")
    ap.add_argument("--heavy", default=None, metavar="Z/X/Y=FRACTION",
                    help="one block holding this share of the features (e.g. the capital region's)")
    args = ap.parse_args()
    ingest, pmtiles = read_cost_log(args.ingest_log), read_cost_log(args.pmtiles_log)
    bounds = tuple(args.bounds)
    share = None
    if args.heavy:
        tile, fraction = args.heavy.split("=")
        share = one_heavy_block(bounds, tuple(int(v) for v in tile.split("/")), float(fraction))
    print(table([predict(ingest, pmtiles, args.features, w, bounds=bounds, minzoom=args.zooms[0],
                         maxzoom=args.zooms[1], store_streams=args.store_streams, share=share)
                 for w in args.workers]))
    print(f"rates from {ingest.features:,} features ({ingest.workers} worker(s) ingest, "
          f"{pmtiles.workers} worker(s) tiles)")


if __name__ == "__main__":
    main()

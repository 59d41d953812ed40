"""P1: vector tile archive build, ours (tiles.pmtiles_build on the PostGIS store) vs tippecanoe.

Both build z10-16 PMTiles of the same footprints, each as its own child process so wall
time and peak RSS are the process's. Ours reads the store (PostGIS); tippecanoe reads a
FlatGeobuf (EPSG:4326) exported from that same store layer beforehand (not timed:
tippecanoe cannot read PostGIS). Features dropped per zoom are counted the same way for
both archives: distinct ``id`` values GDAL's MVT reader finds at each zoom.

Ours runs three times per repetition: in process as a user runs it (zooms on the machine's cores,
``ours``), in process on one thread (``ours_t1``, ``--threads 1``), and on a local Dask cluster of
two worker processes (``ours_w2``), the cluster started and stopped inside the timed process. The
sides' order changes between repetitions so that every pair runs in both orders. Peak memory is
given two ways: GNU time's %M (the largest single process) and the summed RSS of the child's
process tree, sampled.

Worker mode (``python -m benchmarks.p1_tiles ours LAYER OUT [WORKERS [THREADS]]``) is what the parent times.
"""
from __future__ import annotations

import filecmp
import gzip
import json
import sys
from pathlib import Path

from benchmarks.common import PEER_BIN, WORK, median, run_timed, PY, env_with
from benchmarks.verdict import Evidence, alternated, judge

MINZOOM, MAXZOOM = 10, 16


def export_for_tippecanoe(store, layer: str, path: Path) -> int:
    """The store layer as FlatGeobuf in EPSG:4326 (tippecanoe's input), same columns."""
    gdf = store.read(layer)
    gdf.to_file(path, driver="FlatGeobuf", engine="pyogrio")
    return len(gdf)


def archive_stats(path: Path, layer: str, features: int) -> dict:
    """Tiles, largest uncompressed tile, and features absent per zoom, read back from the archive."""
    import pyogrio
    from pmtiles.reader import MmapSource, all_tiles

    tiles, largest = 0, 0
    with open(path, "rb") as f:
        for _, data in all_tiles(MmapSource(f)):
            data = bytes(data)
            raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            tiles += 1
            largest = max(largest, len(raw))
    dropped = {}
    for z in range(MINZOOM, MAXZOOM + 1):
        ids = pyogrio.read_dataframe(path, layer=layer, columns=["id"], read_geometry=False,
                                     ZOOM_LEVEL=str(z))  # a GDAL open option
        dropped[z] = features - int(ids["id"].nunique())
    return {"tiles": tiles, "largest_tile_bytes": largest, "archive_bytes": path.stat().st_size,
            "dropped_per_zoom": dropped}


SIDES = ("ours", "ours_t1", "ours_w2", "tippecanoe")
W2 = 2  # the Dask side's worker count


def order_for(rep: int) -> list[str]:
    """The sides' order in repetition ``rep``: rotated every other repetition and reversed in the
    odd ones, so the first two repetitions already run every pair of sides in both orders."""
    k = (rep // 2) % len(SIDES)
    base = [*SIDES[k:], *SIDES[:k]]
    return base[::-1] if rep % 2 else base


def parse_worker(stdout: str) -> dict:
    """The worker's JSON line (the last line of its output that is one)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in the worker's output: {stdout[-500:]!r}")


def run_record(name: str, t) -> dict:
    """One timed run of side ``name``: wall, both peak RSS figures, and for ours the build's own times.

    The driver's share is given twice: of the child's wall time (imports, the Dask cluster's
    start and stop included) and of the build alone (BuildReport.seconds)."""
    rec = {"seconds": t.seconds, "max_rss_mb": t.max_rss_mb, "tree_rss_mb": t.tree_rss_mb}
    if name != "tippecanoe":
        w = parse_worker(t.stdout)
        rec.update(build_seconds=w["seconds"], driver_seconds=w["driver_seconds"], partitions=w["partitions"],
                   workers=w["workers"], threads=w.get("threads"), driver_share_of_wall=w["driver_seconds"] / t.seconds,
                   driver_share_of_build=w["driver_seconds"] / w["seconds"],
                   outside_build_seconds=t.seconds - w["seconds"])  # imports, the store, the cluster's start and stop
    return rec


def run(ctx, layer: str, reps: int) -> dict:
    n = ctx.sizes[layer]
    out_dir = WORK / "p1"
    out_dir.mkdir(parents=True, exist_ok=True)
    fgb = out_dir / f"{layer}_4326.fgb"
    export_for_tippecanoe(ctx.store, layer, fgb)
    outs = {name: out_dir / f"{name}.pmtiles" for name in SIDES}
    ours_cmd = [str(PY), "-m", "benchmarks.p1_tiles", "ours", layer, str(outs["ours"])]
    # the same build on a local Dask cluster, started and stopped inside the timed process
    w2_cmd = [str(PY), "-m", "benchmarks.p1_tiles", "ours", layer, str(outs["ours_w2"]), str(W2)]
    # in process on one thread: the single-core build, what --workers 2 adds a second core to
    t1_cmd = [str(PY), "-m", "benchmarks.p1_tiles", "ours", layer, str(outs["ours_t1"]), "1", "1"]
    # tippecanoe: same zooms, same layer name, drop the smallest polygons when a tile is too big
    # (what ours does), keep all attributes
    tip_cmd = [str(PEER_BIN / "tippecanoe"), "-o", str(outs["tippecanoe"]), "--force", "-Z", str(MINZOOM),
               "-z", str(MAXZOOM), "-l", layer, "--drop-smallest-as-needed", "--quiet", str(fgb)]
    env = env_with(CITYTWIN_DATABASE_URL=ctx.db_url)
    runs: dict[str, list] = {name: [] for name in SIDES}
    cmds = {"ours": ours_cmd, "ours_t1": t1_cmd, "ours_w2": w2_cmd, "tippecanoe": tip_cmd}
    orders = []
    for rep in range(reps):
        orders.append(order_for(rep))
        for name in orders[-1]:
            t = run_timed(cmds[name], env=env, tree_rss=True)
            if t.returncode != 0:
                raise RuntimeError(f"P1 {name} failed ({t.returncode}):\n{t.stderr[-3000:]}")
            runs[name].append(run_record(name, t))
    result = {"layer": layer, "features": n, "zooms": f"{MINZOOM}-{MAXZOOM}", "reps": reps, "orders": orders,
              "commands": {name: " ".join(cmd) for name, cmd in cmds.items()}}
    same_bytes = {name: filecmp.cmp(outs["ours"], outs[name], shallow=False) for name in ("ours_t1", "ours_w2")}
    stats_of: dict[str, dict] = {}
    for name in SIDES:
        # any partition plan and thread count write the same bytes: read another archive only when it differs
        stats = stats_of[name] = (stats_of["ours"] if same_bytes.get(name) else archive_stats(outs[name], layer, n))
        med = {k: median([r[k] for r in runs[name]]) for k in ("seconds", "max_rss_mb", "tree_rss_mb")}
        result[name] = {
            "seconds_median": med["seconds"], "max_rss_mb_median": med["max_rss_mb"],
            "tree_rss_mb_median": med["tree_rss_mb"], "runs": runs[name], **stats,
            "dropped_total_over_zooms": sum(stats["dropped_per_zoom"].values()),
        }
        if name != "tippecanoe":
            for k in ("build_seconds", "driver_seconds", "driver_share_of_wall", "driver_share_of_build",
                      "outside_build_seconds"):
                result[name][f"{k}_median"] = median([r[k] for r in runs[name]])
            result[name]["partitions"] = runs[name][-1]["partitions"]
            result[name]["workers"] = runs[name][-1]["workers"]
            result[name]["threads"] = runs[name][-1]["threads"]
    for name, same in same_bytes.items():
        result[name]["same_archive_as_ours"] = same

    result["ours"]["complete_from_zoom"] = complete_from(result["ours"]["dropped_per_zoom"])
    result.update(figures(runs, orders, reps))
    return result


def figures(runs: dict[str, list[dict]], orders: list[list[str]], reps: int) -> dict:
    """The ratios (per repetition, then the median) and the verdicts on them."""
    def ratio(a: str, b: str, key: str = "seconds") -> float:
        # same run, same repetition, then the median of those
        return median([x[key] / y[key] for x, y in zip(runs[a], runs[b])])

    def ev(a: str, b: str) -> Evidence:  # that pair, not just any two sides, ran in both orders
        return Evidence(reps=reps, alternated=alternated(orders, (a, b)))

    out = {"time_ratio_ours_over_tippecanoe": ratio("ours", "tippecanoe"),
           "rss_ratio_ours_over_tippecanoe": ratio("ours", "tippecanoe", "max_rss_mb"),
           "time_ratio_ours_w2_over_ours": ratio("ours_w2", "ours"),
           "time_ratio_ours_w2_over_tippecanoe": ratio("ours_w2", "tippecanoe"),
           "time_ratio_ours_t1_over_tippecanoe": ratio("ours_t1", "tippecanoe"),
           "time_ratio_ours_w2_over_ours_t1": ratio("ours_w2", "ours_t1"),
           "time_ratio_ours_over_ours_t1": ratio("ours", "ours_t1"),
           "tree_rss_ratio_ours_w2_over_tippecanoe": ratio("ours_w2", "tippecanoe", "tree_rss_mb")}
    share_pct = 100 * median([r["driver_share_of_wall"] for r in runs["ours_w2"]])  # a percentage reads better
    out["targets"] = {  # issue 11: half of tippecanoe's time, at most 1.5x its memory; Dask faster, driver < 5 %
        "ours time <= 0.5 x tippecanoe time": judge(out["time_ratio_ours_over_tippecanoe"],
                                                    ev("ours", "tippecanoe"), at_most=0.5),
        "ours peak RSS <= 1.5 x tippecanoe's": judge(out["rss_ratio_ours_over_tippecanoe"],
                                                     ev("ours", "tippecanoe"), at_most=1.5),
        f"ours --workers {W2} faster than in process": judge(out["time_ratio_ours_w2_over_ours"],
                                                             ev("ours_w2", "ours"), at_most=1.0),
        # the bar as first set: in process was one core, and the second core came only from Dask
        f"ours --workers {W2} faster than in process on one thread (--threads 1)": judge(
            out["time_ratio_ours_w2_over_ours_t1"], ev("ours_w2", "ours_t1"), at_most=1.0),
        f"ours --workers {W2} driver share < 5% (driver_seconds / the child's wall time, in %)": judge(
            share_pct, Evidence(reps=reps, alternated=alternated(orders)), at_most=5.0),
        f"ours --workers {W2} time <= 0.5 x tippecanoe": judge(out["time_ratio_ours_w2_over_tippecanoe"],
                                                               ev("ours_w2", "tippecanoe"), at_most=0.5),
    }
    return out


def complete_from(dropped_per_zoom: dict[int, int]) -> int | None:
    """The lowest zoom from which every zoom up to MAXZOOM holds every feature (None: not even MAXZOOM)."""
    zoom = None
    for z in range(MAXZOOM, MINZOOM - 1, -1):
        if dropped_per_zoom[z]:
            break
        zoom = z
    return zoom


def _worker(layer: str, out: str, workers: int, threads: int | None) -> None:
    from pipelines.runner import DaskRunner, InProcessRunner

    # the cluster's start and stop are part of what the parent times; it starts, as in
    # `citytwin build`, before the build's modules are imported
    runner = DaskRunner(workers=workers) if workers > 1 else InProcessRunner()
    try:
        from pipelines.store import open_store
        from tiles.pmtiles_build import build_pmtiles

        store = open_store(Path(WORK))
        report = build_pmtiles(store, layer, Path(out), MINZOOM, MAXZOOM, None, progress=False, runner=runner,
                               threads=threads)
        n_workers = len(runner.client.scheduler_info()["workers"]) if workers > 1 else 1  # as run, not as asked
    finally:
        runner.close()
    print(json.dumps({"tiles": report.tiles_written, "largest": report.largest_tile_bytes,
                      "dropped": report.dropped_per_zoom, "seconds": report.seconds,
                      "driver_seconds": report.driver_seconds, "partitions": report.partitions,
                      "workers": n_workers, "threads": report.threads}))


if __name__ == "__main__":
    if len(sys.argv) in (4, 5, 6) and sys.argv[1] == "ours":
        _worker(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) >= 5 else 1,
                int(sys.argv[5]) if len(sys.argv) == 6 else None)
    else:
        sys.exit("usage: python -m benchmarks.p1_tiles ours LAYER OUT [WORKERS [THREADS]]")

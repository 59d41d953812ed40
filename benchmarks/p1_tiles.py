"""P1: vector tile archive build, ours (tiles.pmtiles_build on the PostGIS store) vs tippecanoe.

Both build z10-16 PMTiles of the same footprints, each as its own child process so wall
time and peak RSS are the process's. Ours reads the store (PostGIS); tippecanoe reads a
FlatGeobuf (EPSG:4326) exported from that same store layer beforehand (not timed:
tippecanoe cannot read PostGIS). Features dropped per zoom are counted the same way for
both archives: distinct ``id`` values GDAL's MVT reader finds at each zoom.

Worker mode (``python -m benchmarks.p1_tiles ours LAYER OUT``) is what the parent times.
"""
from __future__ import annotations

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


def run(ctx, layer: str, reps: int) -> dict:
    n = ctx.sizes[layer]
    out_dir = WORK / "p1"
    out_dir.mkdir(parents=True, exist_ok=True)
    fgb = out_dir / f"{layer}_4326.fgb"
    export_for_tippecanoe(ctx.store, layer, fgb)
    ours_out, tip_out = out_dir / "ours.pmtiles", out_dir / "tippecanoe.pmtiles"
    ours_cmd = [str(PY), "-m", "benchmarks.p1_tiles", "ours", layer, str(ours_out)]
    # tippecanoe: same zooms, same layer name, drop the smallest polygons when a tile is too big
    # (what ours does), keep all attributes
    tip_cmd = [str(PEER_BIN / "tippecanoe"), "-o", str(tip_out), "--force", "-Z", str(MINZOOM), "-z", str(MAXZOOM),
               "-l", layer, "--drop-smallest-as-needed", "--quiet", str(fgb)]
    env = env_with(CITYTWIN_DATABASE_URL=ctx.db_url)
    runs: dict[str, list] = {"ours": [], "tippecanoe": []}
    cmds = {"ours": ours_cmd, "tippecanoe": tip_cmd}
    orders = []
    for rep in range(reps):
        orders.append(["ours", "tippecanoe"] if rep % 2 == 0 else ["tippecanoe", "ours"])
        for name in orders[-1]:
            cmd = cmds[name]
            t = run_timed(cmd, env=env)
            if t.returncode != 0:
                raise RuntimeError(f"P1 {name} failed ({t.returncode}):\n{t.stderr[-3000:]}")
            runs[name].append({"seconds": t.seconds, "max_rss_mb": t.max_rss_mb})
    result = {"layer": layer, "features": n, "zooms": f"{MINZOOM}-{MAXZOOM}", "reps": reps, "orders": orders,
              "commands": {"ours": " ".join(ours_cmd), "tippecanoe": " ".join(tip_cmd)}}
    for name, path in (("ours", ours_out), ("tippecanoe", tip_out)):
        stats = archive_stats(path, layer, n)
        result[name] = {
            "seconds_median": median([r["seconds"] for r in runs[name]]),
            "max_rss_mb_median": median([r["max_rss_mb"] for r in runs[name]]),
            "runs": runs[name], **stats,
            "dropped_total_over_zooms": sum(stats["dropped_per_zoom"].values()),
        }
    # ratio per repetition (same run, adjacent), then the median of those
    ratios = [o["seconds"] / t["seconds"] for o, t in zip(runs["ours"], runs["tippecanoe"])]
    result["time_ratio_ours_over_tippecanoe"] = median(ratios)
    rss = [o["max_rss_mb"] / t["max_rss_mb"] for o, t in zip(runs["ours"], runs["tippecanoe"])]
    result["rss_ratio_ours_over_tippecanoe"] = median(rss)
    result["ours"]["complete_from_zoom"] = complete_from(result["ours"]["dropped_per_zoom"])
    ev = Evidence(reps=reps, alternated=alternated(orders))
    result["targets"] = {  # issue 11: half of tippecanoe's time, at most 1.5x its memory
        "ours time <= 0.5 x tippecanoe time": judge(result["time_ratio_ours_over_tippecanoe"], ev, at_most=0.5),
        "ours peak RSS <= 1.5 x tippecanoe's": judge(result["rss_ratio_ours_over_tippecanoe"], ev, at_most=1.5),
    }
    return result


def complete_from(dropped_per_zoom: dict[int, int]) -> int | None:
    """The lowest zoom from which every zoom up to MAXZOOM holds every feature (None: not even MAXZOOM)."""
    zoom = None
    for z in range(MAXZOOM, MINZOOM - 1, -1):
        if dropped_per_zoom[z]:
            break
        zoom = z
    return zoom


def _worker(layer: str, out: str) -> None:
    from pipelines.store import open_store
    from tiles.pmtiles_build import build_pmtiles

    store = open_store(Path(WORK))
    report = build_pmtiles(store, layer, Path(out), MINZOOM, MAXZOOM, None, progress=False)
    print(json.dumps({"tiles": report.tiles_written, "largest": report.largest_tile_bytes,
                      "dropped": report.dropped_per_zoom}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "ours":
        _worker(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m benchmarks.p1_tiles ours LAYER OUT")

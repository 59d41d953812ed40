"""Flood exposure: N synthetic buildings against a SIZE x SIZE flood-depth raster, ours vs exactextract.

    .venv/bin/python -m benchmarks.bench_exposure [N] [SIZE]     (default N = 100 000, SIZE = 5 000)

The raster is a deterministic float32 GeoTIFF in EPSG:5186 with 2 m cells (10 km x 10 km
for the default size): a smooth depth field over a river valley, dry (0) on high ground
and a block of nodata (NaN). The buildings are axis-aligned rectangles of 6-25 m on a
jittered grid over the raster, seeded, so no two overlap, written to a GeoPackage.

Each side is its own child process, reading the same two files and computing max and mean
depth for every building (nothing extrapolated), three times in alternated order:

    ours          pipelines.exposure.sample_raster (footprints burnt into a label grid, then
                  per-label reductions)
    exactextract  exact_extract(tif, gpkg, ["max", "mean"]) from the peers venv, the zonal
                  statistics tool a user would pick (benchmarks/exactextract_worker.py)

The time is the zonal work including reading the footprints; the peak RSS is each whole
process's. exactextract counts every cell a footprint touches (weighted by coverage), ours
the cells whose centre it covers, so the maxima agree only where the depth is smooth; the
share that agrees within 1 cm is printed. The last line is ``RESULT {json}`` for the harness.
"""
from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin

from benchmarks.common import PEER_BIN, median, run_timed
from benchmarks.verdict import Evidence, alternated, gaps
from pipelines.exposure import sample_raster

CRS = "EPSG:5186"
CELL_M = 2.0
ORIGIN = (190_000.0, 560_000.0)  # upper-left corner, central Seoul in EPSG:5186
THRESHOLD = 0.3
SEED = 5186
REPS = 3


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def flood_raster(path: Path, size: int) -> None:
    """A smooth depth field (a meandering valley, deepest along its axis) with a nodata block."""
    rows = np.arange(size, dtype=np.float32)[:, None]
    cols = np.arange(size, dtype=np.float32)[None, :]
    axis = size * 0.5 + size * 0.15 * np.sin(cols / size * 6.0)
    depth = 2.5 - np.abs(rows - axis) / (size * 0.08)
    depth = np.clip(depth, 0.0, None).astype(np.float32)
    depth[: size // 10, : size // 10] = np.nan  # outside the model's domain
    # tiled like the COGs `citytwin raster` makes (what the exposure process samples); a striped
    # file would make any per-footprint reader decompress whole rows of strips
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32", crs=CRS,
                       transform=from_origin(*ORIGIN, CELL_M, CELL_M), nodata=float("nan"), compress="deflate",
                       tiled=True, blockxsize=512, blockysize=512) as ds:
        ds.write(depth, 1)


def buildings(n: int, size: int) -> gpd.GeoSeries:
    """n non-overlapping rectangles on a jittered grid over the raster (EPSG:5186)."""
    rng = np.random.default_rng(SEED)
    side = int(np.ceil(np.sqrt(n)))
    pitch = size * CELL_M / side
    i = np.arange(n)
    cx = ORIGIN[0] + (i % side + 0.5) * pitch
    cy = ORIGIN[1] - (i // side + 0.5) * pitch
    half = min(25.0, pitch * 0.8) / 2
    w = rng.uniform(3.0, half, n)
    h = rng.uniform(3.0, half, n)
    jx = rng.uniform(-(pitch / 2 - w), pitch / 2 - w)
    jy = rng.uniform(-(pitch / 2 - h), pitch / 2 - h)
    return gpd.GeoSeries(shapely.box(cx + jx - w, cy + jy - h, cx + jx + w, cy + jy + h), crs=CRS)


def _ours_worker(tif: str, gpkg: str, out: str) -> None:
    """Our side as its own process: read the footprints, sample, write id,max,mean."""
    t0 = time.perf_counter()
    gdf = gpd.read_file(gpkg, engine="pyogrio")
    df = sample_raster(Path(tif), gdf.geometry)
    secs = time.perf_counter() - t0
    pd_out = df.assign(id=gdf["bid"].to_numpy())[["id", "max_depth", "mean_depth"]]
    pd_out.to_csv(out, index=False, header=["id", "max", "mean"])
    print(json.dumps({"seconds": secs, "features": len(df)}))


def _side(name: str, tif: Path, gpkg: Path, out: Path) -> dict:
    if name == "ours":
        argv = [sys.executable, "-m", "benchmarks.bench_exposure", "ours-worker", str(tif), str(gpkg), str(out)]
    else:
        argv = [str(PEER_BIN / "python"), str(Path(__file__).with_name("exactextract_worker.py")), str(tif),
                str(gpkg), str(out)]
    t = run_timed(argv)
    if t.returncode != 0:
        raise RuntimeError(f"{name} failed ({t.returncode}): {t.stderr.strip()[-2000:]}")
    return {**json.loads(t.stdout.strip().splitlines()[-1]), "wall_s": t.seconds, "max_rss_mb": t.max_rss_mb}


def _maxima(path: Path) -> dict[str, float]:
    import pandas as pd

    df = pd.read_csv(path, dtype={"id": str})
    return dict(zip(df["id"], df["max"].to_numpy(dtype=float)))


def main(n: int = 100_000, size: int = 5_000) -> None:
    from benchmarks.common import WORK

    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-exposure-", dir=WORK) as tmp:
        tif, gpkg = Path(tmp) / "flood.tif", Path(tmp) / "buildings.gpkg"
        t0 = time.perf_counter()
        flood_raster(tif, size)
        geoms = buildings(n, size)
        gpd.GeoDataFrame({"bid": [f"b{i}" for i in range(n)]}, geometry=geoms).to_file(gpkg, engine="pyogrio")
        print(f"set-up: {size:,} x {size:,} raster ({tif.stat().st_size / 1e6:.0f} MB on disk) and {n:,} "
              f"buildings (GeoPackage) in {time.perf_counter() - t0:.1f}s")
        runs: dict[str, list] = {"ours": [], "exactextract": []}
        orders = []
        for rep in range(REPS):
            orders.append(["ours", "exactextract"] if rep % 2 == 0 else ["exactextract", "ours"])
            for name in orders[-1]:
                r = _side(name, tif, gpkg, Path(tmp) / f"{name}.csv")
                runs[name].append(r)
                print(f"rep {rep + 1} {name:12s} {r['features']:>8,} buildings: zonal {r['seconds']:6.2f}s "
                      f"({r['features'] / r['seconds']:>9,.0f} buildings/s), process {r['wall_s']:6.2f}s, "
                      f"peak RSS {r['max_rss_mb']:,.0f} MB")
        ours_max, peer_max = _maxima(Path(tmp) / "ours.csv"), _maxima(Path(tmp) / "exactextract.csv")
    both = [(ours_max[k], peer_max[k]) for k in ours_max if k in peer_max
            and np.isfinite(ours_max[k]) and np.isfinite(peer_max[k])]
    agree = float(np.mean([abs(a - b) <= 0.01 for a, b in both])) if both else float("nan")
    ratio = median([p["seconds"] / o["seconds"] for o, p in zip(runs["ours"], runs["exactextract"])])
    ev = Evidence(reps=REPS, alternated=alternated(orders))
    basis = "; ".join(gaps(ev)) or f"{REPS} repetitions, alternated"
    summary = {k: {"zonal_s": median([r["seconds"] for r in v]), "max_rss_mb": median([r["max_rss_mb"] for r in v]),
                   "features": v[-1]["features"]} for k, v in runs.items()}
    headline = [f"{n:,} buildings on a {size:,} x {size:,} raster: ours {summary['ours']['zonal_s']:.2f} s, "
                f"exactextract {summary['exactextract']['zonal_s']:.2f} s (median zonal time); exactextract / ours "
                f"time **{ratio:.2f}** ({basis})",
                f"maxima agreeing within 1 cm on {len(both):,} buildings with valid cells on both sides: {agree:.1%}"]
    print("\n".join(headline).replace("**", ""))
    print(f"peak memory of this driver (ru_maxrss): {_peak_mb():,.0f} MB")
    print("RESULT " + json.dumps({"headline": headline, "summary": summary, "ratio_peer_over_ours_time": ratio,
                                  "runs": runs, "orders": orders, "max_agreement_1cm": agree,
                                  "buildings": n, "raster_size": size}))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "ours-worker":
        _ours_worker(*sys.argv[2:5])
    else:
        args = [int(a.replace("_", "")) for a in sys.argv[1:3]]
        main(*args)

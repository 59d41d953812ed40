"""Flood exposure: N synthetic buildings against a SIZE x SIZE flood-depth raster; seconds and peak memory.

    .venv/bin/python benchmarks/bench_exposure.py [N] [SIZE]     (default N = 100 000, SIZE = 5 000)

The raster is a deterministic float32 GeoTIFF in EPSG:5186 with 2 m cells (10 km x 10 km
for the default size): a smooth depth field over a river valley, dry (0) on high ground
and a block of nodata (NaN). The buildings are axis-aligned rectangles of 6-25 m on a
jittered grid over the raster, seeded, so no two overlap. Runs:

    sample     pipelines.exposure.sample_raster: max/mean depth per building (footprints
               burnt into a label grid with rasterio.features.rasterize, then np.bincount and
               np.maximum.at per label)
    affected   the same plus the threshold test, as the hazard-exposure process does
    per-feature  rasterio.mask for a few hundred buildings, one at a time (the naive way),
               extrapolated to N, for comparison

Prints numbers; asserts nothing. Peak memory is the process's ru_maxrss (includes the
raster written at set-up).
"""
from __future__ import annotations

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

from pipelines.exposure import sample_raster
from pipelines.rasters import write_geotiff

CRS = "EPSG:5186"
CELL_M = 2.0
ORIGIN = (190_000.0, 560_000.0)  # upper-left corner, central Seoul in EPSG:5186
THRESHOLD = 0.3
SEED = 5186


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
    write_geotiff(path, depth, from_origin(*ORIGIN, CELL_M, CELL_M), CRS, nodata=float("nan"))


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


def per_feature(tif: Path, geoms: gpd.GeoSeries, k: int) -> float:
    """Seconds per building for rasterio.mask.mask, one footprint at a time."""
    from rasterio.mask import mask

    sample = geoms.iloc[:: max(1, len(geoms) // k)].iloc[:k]
    t0 = time.perf_counter()
    with rasterio.open(tif) as ds:
        for g in sample:
            data, _ = mask(ds, [g], crop=True, filled=False)
            _ = data.max() if data.count() else None
    return (time.perf_counter() - t0) / len(sample)


def main(n: int = 100_000, size: int = 5_000) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-exposure-") as tmp:
        tif = Path(tmp) / "flood.tif"
        t0 = time.perf_counter()
        flood_raster(tif, size)
        geoms = buildings(n, size)
        print(f"set-up: {size:,} x {size:,} raster ({tif.stat().st_size / 1e6:.0f} MB on disk) and {n:,} "
              f"buildings in {time.perf_counter() - t0:.1f}s; peak memory so far {_peak_mb():,.0f} MB")

        t0 = time.perf_counter()
        df = sample_raster(tif, geoms)
        secs = time.perf_counter() - t0
        print(f"sample     {n:>8,} buildings in {secs:6.2f}s: {n / secs:>9,.0f} buildings/s; "
              f"{int(df['max_depth'].notna().sum()):,} on valid cells")

        t0 = time.perf_counter()
        df = sample_raster(tif, geoms)
        affected = int((df["max_depth"].fillna(-np.inf) > THRESHOLD).sum())
        secs = time.perf_counter() - t0
        print(f"affected   {n:>8,} buildings in {secs:6.2f}s: {affected:,} deeper than {THRESHOLD} m")

        k = 300
        each = per_feature(tif, geoms, k)
        print(f"per-feature rasterio.mask: {each * 1000:.2f} ms/building over {k} buildings, "
              f"~{each * n:.0f}s extrapolated to {n:,}")
        print(f"peak memory (ru_maxrss): {_peak_mb():,.0f} MB")


if __name__ == "__main__":
    args = [int(a.replace("_", "")) for a in sys.argv[1:3]]
    main(*args)

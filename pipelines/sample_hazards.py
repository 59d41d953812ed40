"""Hazard sources for the sample city: a synthetic DEM and the flood depth it gives.

The terrain is made up but shaped like the real one: ground rises north towards Bukaksan
(and a little west towards Inwangsan and south towards Namsan), falls gently east, and
sinks into a valley along Cheonggyecheon (~37.569 N). A sunken plaza lies west of City
Hall, below the flood level but cut off from the stream: the connected bathtub fill must
leave it dry. Everything is deterministic for a seed; the GeoTIFFs are plain (not COG):
``citytwin build`` turns them into COGs like any hazard model's output.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import shapely
from rasterio.transform import from_origin, rowcol
from scipy import ndimage

from geo.crs import WGS84, transformer
from geo.flood import flood_depth
from pipelines.rasters import write_geotiff

DEM_CRS = "EPSG:5186"
DEM_RES_M = 10.0
#: Water level of the sample flood scenario, metres above sea level.
FLOOD_LEVEL_M = 19.0
# (lon, lat, height m, radius m) of hills whose slopes reach into the district.
_HILLS = ((126.9770, 37.5930, 300.0, 600.0),   # Bukaksan
          (126.9578, 37.5838, 150.0, 450.0),   # Inwangsan
          (126.9882, 37.5512, 200.0, 600.0))   # Namsan
_PLAZA = (126.9705, 37.5650, 7.0, 70.0)  # sunken plaza: lon, lat, depth m, radius m


def _xy(lon: float, lat: float) -> tuple[float, float]:
    return transformer(WGS84, DEM_CRS).transform(lon, lat)


def synthetic_dem(extent_lonlat: tuple[float, float, float, float], stream_lonlat: list[list[float]],
                  seed: int) -> tuple[np.ndarray, object]:
    """(elevation float32 array, affine transform) over the extent, in DEM_CRS at DEM_RES_M."""
    west, south, east, north = extent_lonlat
    corners = np.array([_xy(x, y) for x in (west, east) for y in (south, north)])
    x0 = np.floor(corners[:, 0].min() / DEM_RES_M) * DEM_RES_M
    y1 = np.ceil(corners[:, 1].max() / DEM_RES_M) * DEM_RES_M
    width = int(np.ceil((corners[:, 0].max() - x0) / DEM_RES_M))
    height = int(np.ceil((y1 - corners[:, 1].min()) / DEM_RES_M))
    transform = from_origin(x0, y1, DEM_RES_M, DEM_RES_M)
    xs = x0 + (np.arange(width) + 0.5) * DEM_RES_M
    ys = y1 - (np.arange(height) + 0.5) * DEM_RES_M
    gx, gy = np.meshgrid(xs, ys)

    z = 22.0 - 6.0 * (gx - gx.min()) / (gx.max() - gx.min())  # falls east, as the stream does
    # Ground rises away from the stream: steadily north towards Bukaksan, gently south.
    _, sy = _xy(*stream_lonlat[0])
    z += 35.0 * np.clip((gy - sy) / 2000.0, 0.0, None) ** 1.2 + 10.0 * np.clip((sy - gy) / 1300.0, 0.0, None)
    for lon, lat, h, r in _HILLS:
        hx, hy = _xy(lon, lat)
        z += h * np.exp(-((gx - hx) ** 2 + (gy - hy) ** 2) / (2 * r**2))
    stream = shapely.LineString([_xy(x, y) for x, y in stream_lonlat])
    d = shapely.distance(stream, shapely.points(gx.ravel(), gy.ravel())).reshape(gx.shape)
    z -= 6.0 * np.exp(-(d / 160.0) ** 2)
    px, py = _xy(*_PLAZA[:2])
    z -= _PLAZA[2] * ((gx - px) ** 2 + (gy - py) ** 2 <= _PLAZA[3] ** 2)
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, gx.shape), sigma=8.0)
    z += 1.2 * noise / max(float(np.abs(noise).max()), 1e-9)
    return np.round(z, 2).astype(np.float32), transform


def stream_cells(transform, stream_lonlat: list[list[float]], shape: tuple[int, int]) -> list[tuple[int, int]]:
    """Grid cells under the stream's vertices: where the water enters."""
    cells = []
    for lon, lat in stream_lonlat:
        r, c = rowcol(transform, *_xy(lon, lat))
        if 0 <= r < shape[0] and 0 <= c < shape[1]:
            cells.append((int(r), int(c)))
    return cells


def write_hazards(data: Path, seed: int, extent_lonlat: tuple[float, float, float, float],
                  stream_lonlat: list[list[float]]) -> Iterator[str]:
    """Write ``data/dem.tif`` and ``data/flood_depth.tif``; yield progress lines."""
    dem, transform = synthetic_dem(extent_lonlat, stream_lonlat, seed)
    write_geotiff(data / "dem.tif", dem, transform, DEM_CRS)
    yield (f"wrote {data / 'dem.tif'}: {dem.shape[1]} x {dem.shape[0]} cells of {DEM_RES_M:g} m in {DEM_CRS}, "
           f"{float(dem.min()):.1f}-{float(dem.max()):.1f} m")
    depth = flood_depth(dem, FLOOD_LEVEL_M, stream_cells(transform, stream_lonlat, dem.shape))
    write_geotiff(data / "flood_depth.tif", depth, transform, DEM_CRS)
    wet = depth > 0
    yield (f"wrote {data / 'flood_depth.tif'}: water at {FLOOD_LEVEL_M:g} m from Cheonggyecheon, "
           f"{int(wet.sum())} wet cells, deepest {float(depth.max()):.2f} m")

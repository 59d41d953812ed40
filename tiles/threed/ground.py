"""Ground height under footprints, sampled from a DEM raster."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import rowcol


def ground_under(geoms: np.ndarray, dem: Path) -> np.ndarray:
    """Lowest DEM value under each lon/lat footprint's outline (NaN where the DEM has none).

    The lowest outline point keeps a block on sloping ground from floating above the
    terrain on its downhill side.
    """
    geoms = np.asarray(geoms, dtype=object)
    parts, owner = shapely.get_parts(geoms, return_index=True)
    coords, ring = shapely.get_coordinates(shapely.get_exterior_ring(parts), return_index=True)
    building = owner[ring]
    out = np.full(len(geoms), np.nan)
    with rasterio.open(dem) as ds:
        x, y = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True).transform(coords[:, 0], coords[:, 1])
        rows, cols = rowcol(ds.transform, x, y)
        rows, cols = np.asarray(rows), np.asarray(cols)
        inside = (rows >= 0) & (rows < ds.height) & (cols >= 0) & (cols < ds.width)
        band = ds.read(1, masked=True)
        values = np.full(len(coords), np.nan)
        sampled = band[rows[inside], cols[inside]]
        values[inside] = np.ma.filled(sampled.astype("float64"), np.nan)
    np.fmin.at(out, building, values)
    return out

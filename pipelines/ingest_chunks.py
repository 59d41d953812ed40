"""Ingest partitions: a window of a source's features read, repaired and reprojected on its own.

The driver (pipelines/ingest.py) opens each source once, maps ``prepare_chunk`` over its
windows (in process or on Dask workers, which read the file themselves) and joins the chunks
in file order before the steps that need the whole layer (ids made unique, heights, fields,
privacy) and the one publish. A chunk raises nothing about its features: it returns what it
found (features that are not polygons, dropped ones) by their index in the file, so the driver
reports them exactly as a whole-file read does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo.crs import WGS84
from geo.geometry import clamp_lonlat, non_polygonal, repair
from pipelines.costs import PartitionCost
from pipelines.readers.vector import VectorFile, read_window


@dataclass(frozen=True)
class Chunk:
    source: VectorFile
    start: int  # index in the file of its first feature
    size: int | None  # None: the whole file
    polygonal: bool  # the layer's kind needs polygons


@dataclass
class ChunkResult:
    frame: gpd.GeoDataFrame  # the source's attributes, geometry in WGS84 (None where dropped), file index
    source_wkb: np.ndarray  # the repaired geometry in the source CRS, as WKB (what ids are made from)
    not_polygons: int
    first_not_polygon: tuple[int, str] | None  # (file index, geometry type)
    repaired: int
    dropped_at: np.ndarray  # file indices
    clamped: int
    cost: PartitionCost


def prepare_chunk(chunk: Chunk) -> ChunkResult:
    """Read the window, repair (polygon parts only for polygon kinds), reproject to WGS84 and
    clamp a rounding hair past the limits; a partition function (pipelines.runner)."""
    t0 = time.perf_counter()
    gdf = read_window(chunk.source, chunk.start, chunk.size)
    read_s = time.perf_counter() - t0
    gdf.index = pd.RangeIndex(chunk.start, chunk.start + len(gdf))
    geoms = gdf.geometry.to_numpy()
    bad = non_polygonal(geoms) if chunk.polygonal else np.empty(0, dtype=np.int64)
    first_bad = (chunk.start + int(bad[0]), geoms[bad[0]].geom_type) if len(bad) else None
    fixed = repair(geoms, polygonal=chunk.polygonal)
    source_wkb = shapely.to_wkb(fixed.geometries, hex=False)
    wgs84 = gpd.GeoSeries(fixed.geometries, index=gdf.index, crs=chunk.source.crs).to_crs(WGS84)
    clamped_geoms, clamped = clamp_lonlat(wgs84.to_numpy())
    frame = gdf.set_geometry(gpd.GeoSeries(clamped_geoms, index=gdf.index, crs=WGS84))
    wkb_bytes = int(sum(len(w) for w in source_wkb if w is not None))
    cost = PartitionCost(read_s=read_s, work_s=time.perf_counter() - t0 - read_s, rows=len(gdf), bytes=wkb_bytes)
    return ChunkResult(frame, source_wkb, len(bad), first_bad, fixed.repaired, chunk.start + fixed.dropped_at,
                       clamped, cost)

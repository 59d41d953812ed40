"""Partitions of a PMTiles build: a block of tiles x a zoom range, reading only its own rows.

A partition owns every tile of its zooms inside one block tile (zoom ``bz``, ``bx``, ``by``;
the block 0/0/0 is the whole world, read without a bbox). It reads from the store the features
around the block and encodes each zoom with the engine, returning only the block's tiles.

On a few workers a layer that fits one worker is split by zoom instead: whole-layer partitions
over zoom ranges of about equal cost. They read the layer together, one row slice each
(``RowSlice``), and each is handed every slice: the layer is read once, in parallel.

Whole-zoom state stays exact: a feature over the budget in any of its tiles leaves the zoom,
so a partition sizes every tile its block's features touch. It therefore reads the tiles next
to the block too (features touching them, plus a margin since the store filters by geometry,
not by bbox), and re-reads wider when a block feature reaches further. Each feature is counted
by one partition only: the one whose block holds its first vertex.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo.errors import SourceError, StoreError
from geo.vertex_budget import limit_vertices
from pipelines.store.base import GEOMETRY_COLUMN, ID_COLUMN, field_type
from tiles.heap import release_free_memory
from tiles.mvt_geometry import BUFFER, HALF_WORLD, MAX_LAT, tile_size, web_mercator
from tiles.mvt_values import ValueTable, value_table
from tiles.mvt_zoom import LayerFrame, Shapes, encode_zoom, tile_ranges, zoom_tolerance

BLOCK_GAP = 3  # block tiles are 2**3 x 2**3 tiles of a group's first zoom: the ring read around them is ~1.7x
MIN_BLOCKS = 4  # split the high zooms only where the layer covers this many blocks
SPLIT_FEATURES = 50_000  # a layer this small is built in one partition
# On one worker, blocks pay for their ring reads (the 600k city's six blocks read 1.04M rows) and
# buy only a lower peak: up to this many features the layer is read once (~1.5 kB a feature at peak).
WHOLE_LAYER_FEATURES = 1_000_000
MAX_THREADS = 4  # zooms of a partition encoded at once: each holds its own working set (~150 MB at 600k)
_MARGIN_TILES = 0.25  # read beyond the needed tiles (in tiles of the first zoom): features are filtered by geometry
_MAX_READS = 4  # re-reads of a widening block before it reads the whole layer
_PROJECT_ROWS = 50_000  # geometries projected, then released, at once
# Seconds each zoom took on one thread for the 600k city, from its maxzoom down (deeper ones alike to
# the last): how plan balances zoom ranges. Deep zooms cost most, but maxzoom draws unsimplified.
ZOOM_COSTS = (5.7, 7.0, 7.3, 3.6, 1.5, 0.8, 0.6)
ZOOM_SPLIT_SLACK = 1.25  # zoom ranges are used while their schedule is within this of an equal share
RANGES_PER_WORKER = 2  # ranges handed out as workers free up even out what the cost guesses miss


@dataclass(frozen=True)
class Partition:
    bz: int
    bx: int
    by: int
    zooms: tuple[int, int]  # inclusive

    @property
    def whole_layer(self) -> bool:
        return self.bz == 0


@dataclass(frozen=True)
class RowSlice:
    """Rows ``start`` to ``stop`` (None: the end) of the layer's whole read, in its order."""
    start: int
    stop: int | None


@dataclass(frozen=True)
class StoreRef:
    """What a worker needs to open the build's store itself (store objects hold connections)."""
    kind: str
    location: str
    schema: str = "public"

    @classmethod
    def of(cls, store) -> StoreRef:
        if store.kind == "postgis":
            return cls("postgis", store.url, store.schema)
        return cls(store.kind, str(store.path))

    def open(self):
        if self.kind == "postgis":
            from pipelines.store.postgis import PostGISStore

            return PostGISStore(self.location, schema=self.schema)
        from pipelines.store.gpkg import GeoPackageStore

        return GeoPackageStore(Path(self.location))


@dataclass(frozen=True)
class ZoomPart:
    zoom: int
    tiles: list  # (z, x, y, gzip MVT, uncompressed bytes)
    written: int  # owned features with geometry in a written tile
    over: int  # owned features left out by the tile budget
    rows: int  # rows encoded (owned and context)
    seconds: float  # encoding them


@dataclass(frozen=True)
class PartitionResult:
    partition: Partition
    zooms: list[ZoomPart]
    features: int  # owned features with a usable geometry
    lonlat_bounds: tuple[float, float, float, float] | None  # of the owned features
    simplified: int  # owned features over the vertex budget, simplified to fit
    too_complex: int  # owned features left out for their vertex count
    field_types: dict[str, str]  # published column -> field_type name
    read_rows: int  # rows read from the store (owned and context)
    seconds: float
    read_seconds: float  # of seconds: reading its rows from the store and preparing them (or joining its slices)
    slice_reads: tuple[tuple[int, float], ...] = ()  # (rows, seconds) of each slice it was handed


def plan(bounds: tuple[float, float, float, float], count: int, minzoom: int, maxzoom: int,
         workers: int = 1) -> list[Partition]:
    """One partition for a small layer, or on one worker for a layer up to WHOLE_LAYER_FEATURES; on
    a few workers, zoom ranges of such a layer (``zoom_ranges``). Else one whole-layer partition
    for the low zooms (build_pmtiles orders them longest_first), then blocks ``BLOCK_GAP`` zooms
    above them for the rest, from the first zoom whose blocks cover the layer in at least
    ``MIN_BLOCKS``. Where that makes fewer than two blocks a worker, they are a zoom finer: a
    city's dense centre in one block was a third of the build. Not sooner: finer blocks read more
    rows around them (the 600k city's z12 blocks 1.5M rows, its z11 blocks 1.0M)."""
    whole = [Partition(0, 0, 0, (minzoom, maxzoom))]
    if count <= SPLIT_FEATURES or not all(math.isfinite(b) for b in bounds):
        return whole
    if count <= WHOLE_LAYER_FEATURES:
        if workers == 1:
            return whole
        ranges = zoom_ranges(minzoom, maxzoom, workers)
        if ranges:
            return [Partition(0, 0, 0, r) for r in ranges]
    for split in range(minzoom, maxzoom + 1):
        bz = split - BLOCK_GAP
        blocks = _tiles_over(bounds, bz) if bz > 0 else []
        if len(blocks) >= MIN_BLOCKS:
            break
    else:
        return whole
    if len(blocks) < 2 * workers and BLOCK_GAP > 1:
        bz += 1
        blocks = _tiles_over(bounds, bz)
    low = [Partition(0, 0, 0, (minzoom, split - 1))] if split > minzoom else []
    return low + [Partition(bz, x, y, (split, maxzoom)) for x, y in blocks]


def zoom_ranges(minzoom: int, maxzoom: int, workers: int) -> list[tuple[int, int]] | None:
    """Consecutive zoom ranges, deepest first, each about 1/(RANGES_PER_WORKER x ``workers``) of the
    cost (by ZOOM_COSTS; a costlier zoom alone): handed out longest first, each to the worker free
    first, they end about together. None where that schedule is over ZOOM_SPLIT_SLACK x an equal
    share (one zoom holding the others up: for z10-16, more than four workers get blocks)."""
    costs = [zoom_cost(z, maxzoom) for z in range(maxzoom, minzoom - 1, -1)]
    if workers < 2 or len(costs) < 2:
        return None
    limit = sum(costs) / (RANGES_PER_WORKER * workers)
    runs, start, total = [], 0, 0.0
    for i, c in enumerate(costs):
        if i > start and total + c > limit:
            runs.append((start, i))
            start, total = i, 0.0
        total += c
    runs.append((start, len(costs)))
    finish = [0.0] * workers
    for share in sorted((sum(costs[a:b]) for a, b in runs), reverse=True):
        finish[finish.index(min(finish))] += share
    if len(runs) < 2 or max(finish) > ZOOM_SPLIT_SLACK * sum(costs) / workers:
        return None
    return [(maxzoom - b + 1, maxzoom - a) for a, b in runs]


def zoom_cost(z: int, maxzoom: int) -> float:
    return ZOOM_COSTS[min(maxzoom - z, len(ZOOM_COSTS) - 1)]


def row_slices(parts: list[Partition], count: int, workers: int) -> list[RowSlice]:
    """The slices that the whole-layer partitions of ``parts``, where there are several, read
    together: one a worker (else each reads for itself). The last runs to the layer's end."""
    whole = sum(p.whole_layer for p in parts)
    if whole < 2:
        return []
    n = min(workers, whole)
    edges = [count * i // n for i in range(n)]
    return [RowSlice(a, b) for a, b in zip(edges, [*edges[1:], None])]


def longest_first(parts: list[Partition], rows_in: Callable[[tuple[float, float, float, float]], int],
                  count: int) -> list[Partition]:
    """``parts`` by estimated cost, the longest first: the rows each reads first (``rows_in`` a lon/lat
    bbox, from the store's index; ``count`` for the whole layer) times its zooms' ZOOM_COSTS. Workers
    taking them in this order finish about together; in the plan's order the densest blocks could
    come last."""
    maxzoom = max(p.zooms[1] for p in parts)

    def cost(part: Partition) -> float:
        bbox = first_read_bbox(part)
        rows = count if bbox is None else rows_in(bbox)
        return rows * sum(zoom_cost(z, maxzoom) for z in range(part.zooms[0], part.zooms[1] + 1))

    costs = [cost(p) for p in parts]
    return [parts[i] for i in sorted(range(len(parts)), key=lambda i: -costs[i])]


def first_read_bbox(part: Partition) -> tuple[float, float, float, float] | None:
    """The lon/lat bbox a block partition reads first (its block and a ring of tiles); None: the whole layer."""
    return None if part.whole_layer else _lonlat_bbox(_merc_rect(_ring(part), part.zooms[0], _MARGIN_TILES))


def _ring(part: Partition) -> tuple[int, int, int, int]:
    """The block's tiles at its first zoom and the ring around them that most of its features reach."""
    tiles = _block_rect(part, part.zooms[0])
    return (tiles[0] - 1, tiles[1] - 1, tiles[2] + 1, tiles[3] + 1)


def _tiles_over(bounds: tuple[float, float, float, float], z: int) -> list[tuple[int, int]]:
    x0, y0 = _lonlat_tile(bounds[0], bounds[3], z)
    x1, y1 = _lonlat_tile(bounds[2], bounds[1], z)
    return [(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


def _lonlat_tile(lon, lat, z: int):
    """Tile (x, y) of lon/lat points at zoom ``z`` (scalars or arrays), clamped to the grid."""
    n = 1 << z
    lat = np.clip(lat, -MAX_LAT, MAX_LAT)
    x = np.floor((np.asarray(lon) + 180.0) / 360.0 * n)
    y = np.floor((1.0 - np.arcsinh(np.tan(np.radians(lat))) / math.pi) / 2.0 * n)
    x, y = np.clip(x, 0, n - 1).astype(np.int64), np.clip(y, 0, n - 1).astype(np.int64)
    return (int(x), int(y)) if x.ndim == 0 else (x, y)


def _merc_to_lonlat(x: float, y: float) -> tuple[float, float]:
    return (x / HALF_WORLD * 180.0, math.degrees(math.atan(math.sinh(y / HALF_WORLD * math.pi))))


def published_columns(gdf: gpd.GeoDataFrame, layer: str, fields: list[str] | None) -> list[str]:
    available = [c for c in gdf.columns if c != GEOMETRY_COLUMN and c != gdf.geometry.name]
    if ID_COLUMN not in available:
        raise StoreError(f"layer {layer!r} has no {ID_COLUMN!r} column; re-ingest it with 'citytwin ingest'")
    if fields is None:
        return [ID_COLUMN] + [c for c in available if c != ID_COLUMN]
    missing = [f for f in fields if f not in available]
    if missing:
        raise SourceError(
            f"layer {layer!r}: fields {missing} are listed to publish but are not in the layer "
            f"(it has: {', '.join(available)}); fix 'fields' in citytwin.yaml"
        )
    return [ID_COLUMN] + [f for f in fields if f != ID_COLUMN]


@dataclass
class _Rows:
    attrs: gpd.GeoDataFrame
    merc: PackedGeometries
    shape: Shapes
    owned: np.ndarray  # bool per row
    lonlat_bounds: tuple[float, float, float, float] | None
    simplified: int
    too_complex: int
    read_rows: int
    read_seconds: float = 0.0
    joined: tuple | None = None  # on a slice: the layer joined from it and the others (_layer_of)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "joined": None}  # a slice moving to another worker leaves its join behind


def _prepared(gdf: gpd.GeoDataFrame, layer: str, fields: list[str] | None, part: Partition) -> _Rows:
    """Published attributes and Web Mercator geometries of the usable rows, and which this partition counts."""
    read_rows = len(gdf)
    columns = published_columns(gdf, layer, fields)
    if gdf.crs is None or gdf.crs.to_epsg() != 4326:
        raise StoreError(f"layer {layer!r}: the store returned {gdf.crs}, expected EPSG:4326")
    geom = np.asarray(gdf.geometry.values)
    attrs = gdf[columns]
    del gdf  # the frame would keep every lon/lat geometry alive next to its Mercator copy
    rows = np.flatnonzero(~(shapely.is_missing(geom) | shapely.is_empty(geom)))
    owned = _owned(geom[rows], part)
    budget = limit_vertices(geom[rows])  # a huge ring would be clipped and encoded at every zoom
    del geom
    simplified = int(owned[budget.simplified].sum()) if len(budget.simplified) else 0
    too_complex = int(owned[budget.dropped].sum()) if len(budget.dropped) else 0
    keep = np.ones(len(rows), dtype=bool)
    keep[budget.dropped] = False
    lonlat, owned = budget.geoms[keep], owned[keep]
    del budget
    attrs = _arrow_text(attrs.iloc[rows[keep]].reset_index(drop=True).astype({ID_COLUMN: str}))
    mine = lonlat[owned]
    bounds = tuple(float(b) for b in shapely.total_bounds(mine)) if len(mine) else None
    del mine
    return _Rows(attrs, *_to_mercator(lonlat), owned, bounds, simplified, too_complex, read_rows)


def _arrow_text(attrs: pd.DataFrame) -> pd.DataFrame:
    """Text columns held in Arrow buffers, not as Python strings: a slice handed between workers
    pickles in a fifth of the time, and the value table factorises them faster."""
    arrow = pd.StringDtype("pyarrow", na_value=np.nan)
    return attrs.astype({c: arrow for c, t in attrs.dtypes.items() if isinstance(t, pd.StringDtype)})


def _to_mercator(lonlat: np.ndarray) -> tuple[PackedGeometries, Shapes]:
    """Web Mercator copies of ``lonlat`` as WKB, and what the engine needs of each at every zoom.
    ``lonlat`` is emptied as its entries are projected, so no two whole copies ever coexist; the
    GEOS objects of a chunk live only until it is packed (~480 against ~130 bytes a footprint)."""
    packed, shapes = [], []
    for i in range(0, len(lonlat), _PROJECT_ROWS):
        merc = web_mercator(lonlat[i:i + _PROJECT_ROWS])
        lonlat[i:i + _PROJECT_ROWS] = None
        shapes.append(Shapes.of(merc))
        packed.append(shapely.to_wkb(merc))
    if not packed:
        return PackedGeometries(np.empty(0, dtype=object)), Shapes.of(np.empty(0, dtype=object))
    return PackedGeometries(np.concatenate(packed)), Shapes.concat(shapes)


class PackedGeometries:
    """Geometries held as WKB, made into GEOS objects only where indexed: the engine asks for a
    batch of features at a time. WKB keeps every coordinate bit and the geometry type."""

    def __init__(self, wkb: np.ndarray):
        self.wkb = wkb

    def __len__(self) -> int:
        return len(self.wkb)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return shapely.from_wkb(self.wkb[rows])

    def subset(self, rows: np.ndarray) -> PackedGeometries:
        return PackedGeometries(self.wkb[rows])


def _owned(lonlat: np.ndarray, part: Partition) -> np.ndarray:
    """Rows whose first vertex lies in the partition's block: each feature has exactly one such block."""
    if part.whole_layer:
        return np.ones(len(lonlat), dtype=bool)
    coords, index = shapely.get_coordinates(lonlat, return_index=True)
    first = coords[np.unique(index, return_index=True)[1]]  # every usable row has a coordinate
    x, y = _lonlat_tile(first[:, 0], first[:, 1], part.bz)
    return (x == part.bx) & (y == part.by)


def _block_rect(part: Partition, z: int) -> tuple[int, int, int, int]:
    """The block's tiles at zoom ``z`` (x0, y0, x1, y1 inclusive)."""
    s = z - part.bz
    return (part.bx << s, part.by << s, ((part.bx + 1) << s) - 1, ((part.by + 1) << s) - 1)


def _merc_rect(tiles: tuple[int, int, int, int], z: int, margin_tiles: float) -> tuple[float, ...]:
    size = tile_size(z)
    m = margin_tiles * size
    return (tiles[0] * size - HALF_WORLD - m, HALF_WORLD - (tiles[3] + 1) * size - m,
            (tiles[2] + 1) * size - HALF_WORLD + m, HALF_WORLD - tiles[1] * size + m)


def _lonlat_bbox(rect: tuple[float, ...]) -> tuple[float, float, float, float]:
    clamp = lambda v: min(max(v, -HALF_WORLD), HALF_WORLD)  # noqa: E731
    (lon0, lat0), (lon1, lat1) = (_merc_to_lonlat(clamp(rect[0]), clamp(rect[1])),
                                  _merc_to_lonlat(clamp(rect[2]), clamp(rect[3])))
    return (lon0, lat0, lon1, lat1)


def _touching(bounds: np.ndarray, z: int, rect: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = tile_ranges(bounds, z, BUFFER)
    return (x1 >= rect[0]) & (y1 >= rect[1]) & (x0 <= rect[2]) & (y0 <= rect[3])


def _needed_tiles(bounds: np.ndarray, z: int, block: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Every tile at ``z`` touched by a feature touching the block: their sizes decide its features."""
    x0, y0, x1, y1 = tile_ranges(bounds, z, BUFFER)
    hit = (x1 >= block[0]) & (y1 >= block[1]) & (x0 <= block[2]) & (y0 <= block[3])
    if not hit.any():
        return block
    return (min(block[0], int(x0[hit].min())), min(block[1], int(y0[hit].min())),
            max(block[2], int(x1[hit].max())), max(block[3], int(y1[hit].max())))


def _read(store, layer: str, fields: list[str] | None, part: Partition) -> _Rows:
    """The partition's rows: its block and every feature that can change its tiles."""
    if part.whole_layer:
        return _prepared(store.read(layer), layer, fields, part)
    z = part.zooms[0]
    tiles = _ring(part)
    for _ in range(_MAX_READS):
        rows = _prepared(store.read(layer, bbox=_lonlat_bbox(_merc_rect(tiles, z, _MARGIN_TILES))),
                         layer, fields, part)
        needed = _needed_tiles(rows.shape.bounds, z, _block_rect(part, z))
        if all(a >= b for a, b in zip(needed[:2], tiles[:2])) and all(a <= b for a, b in zip(needed[2:], tiles[2:])):
            return rows
        tiles = (min(needed[0], tiles[0]), min(needed[1], tiles[1]), max(needed[2], tiles[2]), max(needed[3], tiles[3]))
    return _prepared(store.read(layer), layer, fields, part)


_WHOLE_LAYER = Partition(0, 0, 0, (0, 0))  # what a slice is prepared as: every row its own


def read_slice(piece: RowSlice, *, store: StoreRef, layer: str, fields: list[str] | None, **_build) -> _Rows:
    """One slice of the layer, prepared as a whole-layer partition prepares its rows."""
    t0 = time.perf_counter()
    opened = store.open()
    try:
        gdf = opened.read(layer, rows=(piece.start, piece.stop))
    finally:
        opened.close()
    rows = _prepared(gdf, layer, fields, _WHOLE_LAYER)
    rows.read_seconds = time.perf_counter() - t0
    return rows


def _joined(slices: list[_Rows]) -> _Rows:
    """The slices as one read of the whole layer gives them: rows are prepared one by one, so
    only the columns' dtypes can differ (an int column with NULLs in one slice only)."""
    return _Rows(_joined_attrs([s.attrs for s in slices]), PackedGeometries(np.concatenate([s.merc.wkb for s in slices])),
                 Shapes.concat([s.shape for s in slices]), np.concatenate([s.owned for s in slices]),
                 union_bounds([s.lonlat_bounds for s in slices]), sum(s.simplified for s in slices),
                 sum(s.too_complex for s in slices), 0)


def union_bounds(bounds: list[tuple[float, float, float, float] | None]) -> tuple[float, float, float, float] | None:
    """The box around the given boxes (None ones left out); None if there are none."""
    found = [b for b in bounds if b is not None]
    if not found:
        return None
    return (min(b[0] for b in found), min(b[1] for b in found), max(b[2] for b in found), max(b[3] for b in found))


def _joined_attrs(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Columns of one dtype in every slice are joined as they are. Where a slice read NULLs as
    float64 (ints in both stores, booleans in GeoPackage) the whole read does too; else the column
    takes the dtype pandas infers from all its values, as a whole PostGIS read does (ints with
    NULLs float64, booleans with NULLs object)."""
    frames = [f for f in frames if len(f)] or frames[:1]
    columns = {}
    for name in frames[0].columns:
        parts = [f[name] for f in frames]
        kinds = {p.dtype.kind for p in parts}
        if len({str(p.dtype) for p in parts}) == 1:
            columns[name] = pd.concat(parts, ignore_index=True)
        elif "f" in kinds and kinds <= set("fiub"):
            columns[name] = pd.Series(np.concatenate([p.to_numpy(dtype=np.float64) for p in parts]))
        else:
            columns[name] = pd.Series(np.concatenate([p.to_numpy(dtype=object) for p in parts])).infer_objects()
    return _arrow_text(pd.DataFrame(columns))


def _encodable(rows: _Rows) -> tuple[_Rows, ValueTable, dict[str, str]]:
    """``rows`` with their attributes made into a value table (which holds every value once), and
    each published column's field type."""
    types = {c: field_type(rows.attrs[c].dtype) for c in rows.attrs.columns}
    table = value_table(rows.attrs)
    rows.attrs = None
    return rows, table, types


_JOINING = threading.Lock()


def _layer_of(slices: list[_Rows]) -> tuple[_Rows, ValueTable, dict[str, str]]:
    """The slices joined and made encodable once a worker: kept on the first slice for the next
    range handed the same slices, and freed with it when Dask releases the slices."""
    with _JOINING:
        if slices[0].joined is None:
            slices[0].joined = _encodable(_joined(slices))
        return slices[0].joined


def build_partition(part: Partition, *, store: StoreRef, layer: str, fields: list[str] | None,
                    maxzoom: int, max_tile_bytes: int, threads: int | None = None,
                    slices: list[_Rows] | None = None) -> PartitionResult:
    """The block's tiles at each of the partition's zooms, and the figures of the features it owns.
    A whole-layer partition handed ``slices`` (read_slice's, in order) joins them instead of reading.
    Zooms are encoded on ``threads`` threads (None: default_threads()); the engine's array calls
    (GEOS, numpy, gzip) release the GIL, and any thread count writes the same bytes."""
    t0 = time.perf_counter()
    if slices:
        rows, table, types = _layer_of(slices)
    else:
        opened = store.open()
        try:
            rows, table, types = _encodable(_read(opened, layer, fields, part))
        finally:
            opened.close()
    read_seconds = time.perf_counter() - t0
    release_free_memory()
    columns = list(types)
    shape = rows.shape
    frame = LayerFrame.of(layer, columns)

    def encode(z: int) -> ZoomPart:
        started = time.perf_counter()
        if part.whole_layer:  # every row, as they are: no copies per zoom
            got = encode_zoom(rows.merc, shape, table, frame, z, zoom_tolerance(z, maxzoom), max_tile_bytes)
            owned, n = rows.owned, len(rows.merc)
        else:
            block = _block_rect(part, z)
            context = np.flatnonzero(_touching(shape.bounds, z, _needed_tiles(shape.bounds, z, block)))
            got = encode_zoom(rows.merc.subset(context), shape.take(context), _rows_of(table, context), frame, z,
                              zoom_tolerance(z, maxzoom), max_tile_bytes, tiles_in=block)
            owned, n = rows.owned[context], len(context)
        done = ZoomPart(z, got.tiles, int((got.written & owned).sum()), int((got.over & owned).sum()),
                        n, time.perf_counter() - started)
        del got
        release_free_memory()
        return done

    # deepest first: they take longest, so the threads finish about together
    zooms = sorted(_each_on_threads(encode, range(part.zooms[1], part.zooms[0] - 1, -1), threads or default_threads()),
                   key=lambda zp: zp.zoom)
    return PartitionResult(part, zooms, int(rows.owned.sum()), rows.lonlat_bounds, rows.simplified,
                           rows.too_complex, types, rows.read_rows, time.perf_counter() - t0, read_seconds,
                           tuple((s.read_rows, s.read_seconds) for s in slices or ()))


def default_threads() -> int:
    """Threads a partition encodes zooms on: the cores this process may use, at most MAX_THREADS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


def _each_on_threads(fn: Callable, items, threads: int) -> list:
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="citytwin-zoom") as pool:
        return list(pool.map(fn, items))


def _rows_of(table: ValueTable, rows: np.ndarray) -> ValueTable:
    return ValueTable(table.codes[rows], table.data, table.starts, table.lengths)

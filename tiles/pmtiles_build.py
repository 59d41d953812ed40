"""Write one PMTiles v3 archive (gzip-compressed MVT) for a store layer.

Our own MVT engine (tiles/mvt_*.py: numpy over whole arrays, GEOS for clipping) encodes
the tiles; this module drives it and writes the archive. Per zoom:

1. simplify in Web Mercator with a tolerance of about one tile pixel (not at maxzoom);
2. encode every (feature, tile) pair and size each tile exactly; in each tile the largest
   features are kept until the uncompressed tile would pass the limit, and a feature over
   it in any tile is left out of that zoom (the smallest go, as tippecanoe and GDAL do);
3. count the distinct features that have geometry in the written tiles, so the report's
   drop counts are measured from the tiles, not assumed.

The work is split into partitions (tiles/pmtiles_partitions.py: a block of tiles x a zoom
range, each reading its own rows from the store, or whole-layer zoom ranges sharing slices
each read once), run in process or on Dask. The driver
only plans, merges their tiles into one archive written next to ``out_path``, and moves it
into place with os.replace, so readers never see a half-written file.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from geo.errors import SourceError
from geo.names import check_layer_name
from geo.vertex_budget import MAX_VERTICES
from pipelines.costs import PartitionCost
from tiles.pmtiles_partitions import (Partition, PartitionResult, StoreRef, build_partition, default_threads,
                                      longest_first, plan, read_slice, row_slices, union_bounds)
from tiles.publish import make_readable, scratch_file
from tiles.source import MAX_TILE_BYTES, TileSetInfo
from tiles.tilejson import tilejson

# TileJSON / MBTiles 'vector_layers' field type names
_MVT_FIELD_TYPES = {"string": "String", "number": "Number", "integer": "Number", "boolean": "Boolean"}


@dataclass(frozen=True)
class ZoomReport:
    zoom: int
    tiles: int
    largest_tile_bytes: int  # uncompressed MVT
    features_in: int  # input features
    dropped_for_size: int  # left out by the per-tile size budget
    features_written: int  # distinct features with geometry in the written tiles

    @property
    def dropped(self) -> int:
        """Input features absent from this zoom (size budget, or too small to draw)."""
        return self.features_in - self.features_written


@dataclass(frozen=True)
class BuildReport:
    layer: str
    path: Path
    tilejson_path: Path
    features: int
    tiles_written: int
    largest_tile_bytes: int  # uncompressed MVT
    archive_bytes: int
    max_tile_bytes: int
    zooms: list[ZoomReport] = field(default_factory=list)
    simplified: int = 0  # features over the vertex budget, simplified to fit
    too_complex: int = 0  # features over it even when simplified, left out
    partitions: int = 1
    driver_seconds: float = 0.0  # planning, merging, writing the archive
    write_seconds: float = 0.0  # of driver_seconds: writing the archive and moving it in
    seconds: float = 0.0  # the whole build
    partition_costs: list[PartitionCost] = field(default_factory=list)
    threads: int = 1  # zooms a partition encoded at once

    @property
    def dropped_per_zoom(self) -> dict[int, int]:
        return {z.zoom: z.dropped for z in self.zooms}

    def summary(self) -> str:
        drops = ", ".join(f"z{r.zoom}:{r.dropped_for_size}/{r.dropped - r.dropped_for_size}"
                          for r in self.zooms if r.dropped)
        return (
            f"layer '{self.layer}': {self.features} features, {self.tiles_written} tiles "
            f"z{self.zooms[0].zoom}-{self.zooms[-1].zoom}, largest {self.largest_tile_bytes / 1000:.0f} kB "
            f"(limit {self.max_tile_bytes / 1000:.0f} kB), archive {self.archive_bytes / 1e6:.1f} MB -> {self.path}; "
            f"features left out per zoom (tile size/too small to draw): {drops or 'none'}"
            + (f"; {self.simplified} feature(s) over {MAX_VERTICES:,} vertices simplified to fit"
               if self.simplified else "")
            + (f"; {self.too_complex} feature(s) over {MAX_VERTICES:,} vertices even when simplified left out"
               if self.too_complex else "")
            + f"; {self.partitions} partition(s), driver {self.driver_seconds:.1f} s of {self.seconds:.1f} s"
              f" ({100 * self.driver_seconds / max(self.seconds, 1e-9):.1f}%)"
        )


# -- the build ---------------------------------------------------------------------
def _center(bounds: tuple[float, float, float, float], minzoom: int, maxzoom: int) -> tuple[float, float, int]:
    lon = (bounds[0] + bounds[2]) / 2
    lat = (bounds[1] + bounds[3]) / 2
    return (lon, lat, min(max(minzoom, 14), maxzoom))


def build_pmtiles(store, layer: str, out_path: Path, minzoom: int, maxzoom: int,
                  fields: list[str] | None, *, max_tile_bytes: int = MAX_TILE_BYTES, progress: bool = True,
                  tiles_url_template: str | None = None, runner=None,
                  partitions: list[Partition] | None = None, threads: int | None = None) -> BuildReport:
    """Write ``out_path`` (PMTiles, gzip MVT) and ``<out_path stem>.json`` (TileJSON) for ``layer``.

    No tile exceeds ``max_tile_bytes`` of uncompressed MVT: the smallest features of a
    too-full tile are left out at that zoom, and the report says how many per zoom.
    ``partitions`` overrides the plan (tiles.pmtiles_partitions.plan); any plan writes the same bytes.
    ``threads``: zooms of a partition encoded at once (None: this machine's cores, at most 4);
    any count writes the same bytes.
    """
    started = time.perf_counter()
    check_layer_name(layer)
    if not 0 <= minzoom <= maxzoom <= 22:
        raise SourceError(f"layer {layer!r}: zooms {minzoom}-{maxzoom} are invalid; use 0 <= minzoom <= maxzoom <= 22")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    from pipelines.runner import InProcessRunner

    runner = runner or InProcessRunner()
    threads = threads or default_threads()
    layer_info = store.info(layer)
    if partitions is None:
        partitions = longest_first(plan(layer_info.bounds, layer_info.count, minzoom, maxzoom,
                                        workers=runner.workers()),
                                   lambda bbox: store.count(layer, bbox), layer_info.count)
    slices = row_slices(partitions, layer_info.count, runner.workers())
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(partitions), desc=f"tiles {layer}", unit="part")
    planned = time.perf_counter()
    shared = {"store": StoreRef.of(store), "layer": layer, "fields": fields, "maxzoom": maxzoom,
              "max_tile_bytes": max_tile_bytes, "threads": threads}
    tick = (lambda d, t: bar.update(d - bar.n)) if bar else None
    if slices:  # whole-layer partitions read the layer together, a slice each
        results: list[PartitionResult] = runner.map_after(read_slice, slices, build_partition, partitions,
                                                          name="slices", shared=shared, progress=tick)
    else:
        results = runner.map(build_partition, partitions, shared=shared, progress=tick)
    if bar:
        bar.close()
    mapped = time.perf_counter()

    # every zoom's partitions hold each feature once: the first zoom's count the layer
    first = [r for r in results if r.partition.zooms[0] == minzoom]
    n = sum(r.features for r in first)
    if n == 0:
        raise SourceError(f"layer {layer!r} has no features with a geometry; nothing to tile")
    lonlat_bounds = union_bounds([r.lonlat_bounds for r in first])  # n > 0: some partition found features
    info = _info(layer, minzoom, maxzoom, lonlat_bounds, next(r.field_types for r in first if r.features))
    reports = _zoom_reports(results, n, minzoom, maxzoom)
    simplified, too_complex = sum(r.simplified for r in first), sum(r.too_complex for r in first)
    costs = [PartitionCost(r.read_seconds, r.seconds - r.read_seconds, r.read_rows,
                           sum(len(t[3]) for zp in r.zooms for t in zp.tiles), r.partition.whole_layer,
                           tuple((zp.zoom, zp.rows, zp.seconds) for zp in r.zooms))
             for r in results]
    # the slices, read once for all the partitions handed them: each is a task of its own
    costs += [PartitionCost(seconds, 0.0, rows, 0, True) for rows, seconds in
              next((r.slice_reads for r in results if r.slice_reads), ())]
    writing = time.perf_counter()
    _write_archive(out_path, layer, results, minzoom, maxzoom, lonlat_bounds, info,
                   _metadata(info, n, reports, max_tile_bytes))
    written = time.perf_counter()
    partition_count = len(results)
    del results, first  # the tiles' bytes

    tj_path = out_path.with_suffix(".json")
    url = tiles_url_template or f"{layer}/{{z}}/{{x}}/{{y}}.mvt"
    doc = tilejson(info, url, name=layer, description=f"{layer} vector tiles", attribution="")
    _write_json_atomic(tj_path, doc)
    done = time.perf_counter()

    return BuildReport(
        layer=layer, path=out_path, tilejson_path=tj_path, features=n,
        tiles_written=sum(r.tiles for r in reports),
        largest_tile_bytes=max(r.largest_tile_bytes for r in reports),
        archive_bytes=out_path.stat().st_size, max_tile_bytes=max_tile_bytes, zooms=reports,
        simplified=simplified, too_complex=too_complex, partitions=partition_count,
        driver_seconds=(planned - started) + (done - mapped), write_seconds=written - writing,
        seconds=done - started, partition_costs=costs, threads=threads,
    )


def _zoom_reports(results: list[PartitionResult], n: int, minzoom: int, maxzoom: int) -> list[ZoomReport]:
    """Per zoom, the partitions' figures added up: each feature is counted by the one partition owning it."""
    reports = []
    for z in range(minzoom, maxzoom + 1):
        parts = [zp for r in results for zp in r.zooms if zp.zoom == z]
        reports.append(ZoomReport(z, sum(len(p.tiles) for p in parts),
                                  max((t[4] for p in parts for t in p.tiles), default=0),
                                  n, sum(p.over for p in parts), sum(p.written for p in parts)))
    return reports


def _write_archive(out_path: Path, layer: str, results: list[PartitionResult], minzoom: int, maxzoom: int,
                   lonlat_bounds, info: TileSetInfo, metadata: dict) -> None:
    """All partitions' tiles in tile-id order into a scratch file, moved into place when complete."""
    tiles = sorted((zxy_to_tileid(t[0], t[1], t[2]), t[3]) for r in results for zp in r.zooms for t in zp.tiles)
    fd, tmp_archive = scratch_file(out_path)
    try:
        with os.fdopen(fd, "wb") as out_f:
            writer = Writer(out_f)
            for tile_id, data in tiles:
                writer.write_tile(tile_id, data)
            if writer.addressed_tiles == 0:
                raise SourceError(f"layer {layer!r}: no tile could be written at zooms {minzoom}-{maxzoom}")
            writer.finalize(_header(minzoom, maxzoom, lonlat_bounds, info.center), metadata)
        make_readable(tmp_archive)
        os.replace(tmp_archive, out_path)
    except BaseException:
        Path(tmp_archive).unlink(missing_ok=True)
        raise


def _info(layer: str, minzoom: int, maxzoom: int, bounds, field_types: dict[str, str]) -> TileSetInfo:
    fields = {c: _MVT_FIELD_TYPES[t] for c, t in field_types.items()}
    vector_layers = [{"id": layer, "fields": fields, "minzoom": minzoom, "maxzoom": maxzoom}]
    return TileSetInfo(layer=layer, minzoom=minzoom, maxzoom=maxzoom, bounds=bounds,
                       center=_center(bounds, minzoom, maxzoom), vector_layers=vector_layers,
                       etag_seed="")


def _header(minzoom: int, maxzoom: int, bounds, center) -> dict:
    e7 = lambda v: int(round(v * 1e7))  # noqa: E731
    return {
        "tile_compression": Compression.GZIP, "tile_type": TileType.MVT,
        "min_zoom": minzoom, "max_zoom": maxzoom,
        "min_lon_e7": e7(bounds[0]), "min_lat_e7": e7(bounds[1]),
        "max_lon_e7": e7(bounds[2]), "max_lat_e7": e7(bounds[3]),
        "center_zoom": center[2], "center_lon_e7": e7(center[0]), "center_lat_e7": e7(center[1]),
    }


def _metadata(info: TileSetInfo, features: int, reports: list[ZoomReport], max_tile_bytes: int) -> dict:
    return {
        "name": info.layer, "format": "pbf", "type": "overlay", "generator": "citytwin",
        "minzoom": info.minzoom, "maxzoom": info.maxzoom,
        "bounds": ",".join(f"{b:.7f}" for b in info.bounds),
        "center": f"{info.center[0]:.7f},{info.center[1]:.7f},{info.center[2]}",
        "vector_layers": info.vector_layers,
        "citytwin": {
            "features": features, "max_tile_bytes": max_tile_bytes,
            "dropped_per_zoom": {str(r.zoom): r.dropped for r in reports},
        },
    }


def _write_json_atomic(path: Path, doc: dict) -> None:
    fd, tmp = scratch_file(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=2)
        make_readable(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""Write one PMTiles v3 archive (gzip-compressed MVT) for a store layer.

Our own MVT engine (tiles/mvt_*.py: numpy over whole arrays, GEOS for clipping) encodes
the tiles; this module drives it and writes the archive. Per zoom:

1. simplify in Web Mercator with a tolerance of about one tile pixel (not at maxzoom);
2. encode every (feature, tile) pair and size each tile exactly; in each tile the largest
   features are kept until the uncompressed tile would pass the limit, and a feature over
   it in any tile is left out of that zoom (the smallest go, as tippecanoe and GDAL do);
3. count the distinct features that have geometry in the written tiles, so the report's
   drop counts are measured from the tiles, not assumed.

The zooms are then merged into one archive written next to ``out_path`` and moved
into place with os.replace, so readers never see a half-written file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from geo.errors import SourceError, StoreError
from geo.names import check_layer_name
from geo.vertex_budget import MAX_VERTICES, limit_vertices
from pipelines.store.base import GEOMETRY_COLUMN, ID_COLUMN, field_type
from tiles.publish import make_readable, scratch_file
from tiles.mvt_geometry import web_mercator
from tiles.mvt_values import ValueTable, value_table
from tiles.mvt_zoom import LayerFrame, Shapes, encode_zoom, zoom_tolerance
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
        )


# -- the build ---------------------------------------------------------------------
def _published_columns(gdf: gpd.GeoDataFrame, layer: str, fields: list[str] | None) -> list[str]:
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


def _prepared(store, layer: str, fields: list[str] | None):
    """(published attributes, Web Mercator geometries, lon/lat bounds, (simplified, left out)) of the layer.

    Its own function so the store's frame and the lon/lat geometries are freed once
    projected: a 600k-feature layer holds several hundred MB in each form.
    """
    gdf = store.read(layer)
    columns = _published_columns(gdf, layer, fields)
    geom = gdf.geometry.values
    usable = ~(shapely.is_missing(geom) | shapely.is_empty(geom))
    gdf = gdf.loc[usable, columns + [gdf.geometry.name]].reset_index(drop=True)
    budget = limit_vertices(gdf.geometry.values)  # a huge ring would be clipped and encoded at every zoom
    gdf = gdf.set_geometry(gpd.GeoSeries(budget.geoms, crs=gdf.crs, index=gdf.index))
    gdf = gdf.drop(index=budget.dropped).reset_index(drop=True)
    if gdf.empty:
        raise SourceError(f"layer {layer!r} has no features with a geometry; nothing to tile")
    if gdf.crs is None or gdf.crs.to_epsg() != 4326:
        raise StoreError(f"layer {layer!r}: the store returned {gdf.crs}, expected EPSG:4326")
    gdf[ID_COLUMN] = gdf[ID_COLUMN].astype(str)
    lonlat_bounds = tuple(float(b) for b in gdf.total_bounds)
    merc = web_mercator(np.asarray(gdf.geometry.values))
    return gdf[columns], merc, lonlat_bounds, (len(budget.simplified), len(budget.dropped))


def _center(bounds: tuple[float, float, float, float], minzoom: int, maxzoom: int) -> tuple[float, float, int]:
    lon = (bounds[0] + bounds[2]) / 2
    lat = (bounds[1] + bounds[3]) / 2
    return (lon, lat, min(max(minzoom, 14), maxzoom))


def build_pmtiles(store, layer: str, out_path: Path, minzoom: int, maxzoom: int,
                  fields: list[str] | None, *, max_tile_bytes: int = MAX_TILE_BYTES, progress: bool = True,
                  tiles_url_template: str | None = None, runner=None) -> BuildReport:
    """Write ``out_path`` (PMTiles, gzip MVT) and ``<out_path stem>.json`` (TileJSON) for ``layer``.

    No tile exceeds ``max_tile_bytes`` of uncompressed MVT: the smallest features of a
    too-full tile are left out at that zoom, and the report says how many per zoom.
    """
    check_layer_name(layer)
    if not 0 <= minzoom <= maxzoom <= 22:
        raise SourceError(f"layer {layer!r}: zooms {minzoom}-{maxzoom} are invalid; use 0 <= minzoom <= maxzoom <= 22")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    attrs, merc, lonlat_bounds, (simplified, too_complex) = _prepared(store, layer, fields)
    columns = list(attrs.columns)
    n = len(attrs)
    info = _info(layer, minzoom, maxzoom, lonlat_bounds, attrs)
    table = value_table(attrs)
    del attrs  # the table holds every value once; the frame's Python objects are the bulk of memory

    from pipelines.runner import InProcessRunner

    runner = runner or InProcessRunner()
    zooms = list(range(minzoom, maxzoom + 1))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(zooms), desc=f"tiles {layer}", unit="zoom")

    reports: list[ZoomReport] = []
    tmp_archive = None
    try:
        # one partition per zoom; the driver merges them into one archive
        results = runner.map(_zoom_partition, zooms, shared={
            "maxzoom": maxzoom, "merc": merc, "shape": Shapes.of(merc), "table": table,
            "frame": LayerFrame.of(layer, columns),
            "max_tile_bytes": max_tile_bytes}, progress=(lambda d, t: bar.update(d - bar.n)) if bar else None)
        if bar:
            bar.close()
        fd, tmp_archive = scratch_file(out_path)
        with os.fdopen(fd, "wb") as out_f:
            writer = Writer(out_f)
            for report, tiles in results:
                reports.append(report)
                for tz, tx, ty, data, _ in sorted(tiles, key=lambda t: zxy_to_tileid(t[0], t[1], t[2])):
                    writer.write_tile(zxy_to_tileid(tz, tx, ty), data)
            if writer.addressed_tiles == 0:
                raise SourceError(f"layer {layer!r}: no tile could be written at zooms {minzoom}-{maxzoom}")
            writer.finalize(_header(minzoom, maxzoom, lonlat_bounds, info.center),
                            _metadata(info, n, reports, max_tile_bytes))
        make_readable(tmp_archive)
        os.replace(tmp_archive, out_path)
        tmp_archive = None
    finally:
        if tmp_archive is not None:
            tmp_archive.unlink(missing_ok=True)

    tj_path = out_path.with_suffix(".json")
    url = tiles_url_template or f"{layer}/{{z}}/{{x}}/{{y}}.mvt"
    doc = tilejson(info, url, name=layer, description=f"{layer} vector tiles", attribution="")
    _write_json_atomic(tj_path, doc)

    return BuildReport(
        layer=layer, path=out_path, tilejson_path=tj_path, features=n,
        tiles_written=sum(r.tiles for r in reports),
        largest_tile_bytes=max(r.largest_tile_bytes for r in reports),
        archive_bytes=out_path.stat().st_size, max_tile_bytes=max_tile_bytes, zooms=reports,
        simplified=simplified, too_complex=too_complex,
    )


def _zoom_partition(z: int, *, maxzoom: int, merc: np.ndarray, shape: Shapes, table: ValueTable,
                    frame: LayerFrame, max_tile_bytes: int) -> tuple[ZoomReport, list]:
    """One zoom level: its report and its (z, x, y, gzip bytes, uncompressed size) tiles."""
    got = encode_zoom(merc, shape, table, frame, z, zoom_tolerance(z, maxzoom), max_tile_bytes)
    largest = max((t[4] for t in got.tiles), default=0)
    return ZoomReport(z, len(got.tiles), largest, len(merc), got.dropped_for_size, got.features_written), got.tiles


def _info(layer: str, minzoom: int, maxzoom: int, bounds, attrs) -> TileSetInfo:
    fields = {c: _MVT_FIELD_TYPES[field_type(attrs[c].dtype)] for c in attrs.columns}
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

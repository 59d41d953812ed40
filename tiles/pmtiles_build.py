"""Write one PMTiles v3 archive (gzip-compressed MVT) for a store layer.

GDAL's MVT/PMTiles writer (C, bundled with pyogrio) does the clipping and encoding.
We drive it one zoom at a time because its own size limit (MAX_SIZE) applies to the
*gzip-compressed* tile, while our limit is on the uncompressed MVT bytes a client
has to parse. So per zoom we:

1. simplify in Web Mercator with a tolerance of about one tile pixel (not at maxzoom);
2. estimate every feature's MVT bytes and, per tile, keep the largest features until
   the tile budget is reached (dropping the smallest, as tippecanoe and GDAL do);
3. let GDAL encode that zoom into a scratch archive, then decompress every tile and
   check it; a tile still over the limit gets a tighter budget and the zoom is redone;
4. count the distinct feature ids GDAL actually wrote, so the report's drop counts
   are measured, not assumed.

The zooms are then merged into one archive written next to ``out_path`` and moved
into place with os.replace, so readers never see a half-written file.
"""
from __future__ import annotations

import gzip
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from pmtiles.reader import MmapSource, all_tiles
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from geo.errors import SourceError, StoreError
from geo.names import check_layer_name
from geo.vertex_budget import MAX_VERTICES, limit_vertices
from pipelines.store.base import GEOMETRY_COLUMN, ID_COLUMN, field_type
from tiles.publish import make_readable, scratch_file
from tiles.source import MAX_TILE_BYTES, TileSetInfo
from tiles.tilejson import tilejson

EXTENT = 4096  # MVT tile units
BUFFER = 64  # tile units of geometry kept beyond the tile edge (same as the PostGIS source)
SIMPLIFY_PX = 1.0  # simplification tolerance below maxzoom, in tile units
_HALF_WORLD = 20037508.342789244  # Web Mercator half extent, metres
_MAX_LAT = 85.0511287798066
_BUDGET_SHARE = 0.9  # aim below the limit: the size estimate is only an estimate
_MAX_ATTEMPTS = 5
_GROW_BELOW = 0.7  # re-try a tile that dropped features yet used under this share of the limit

# TileJSON / MBTiles 'vector_layers' field type names
_MVT_FIELD_TYPES = {"string": "String", "number": "Number", "integer": "Number", "boolean": "Boolean"}


@dataclass(frozen=True)
class ZoomReport:
    zoom: int
    tiles: int
    largest_tile_bytes: int  # uncompressed MVT
    features_in: int  # input features
    dropped_for_size: int  # left out by the per-tile size budget
    features_written: int  # distinct ids found in the written tiles
    attempts: int = 1

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


# -- tile maths (Web Mercator, XYZ rows) -------------------------------------------
def _tile_size(z: int) -> float:
    return 2 * _HALF_WORLD / (1 << z)


def _tile_ranges(bounds: np.ndarray, z: int, buffer_units: float) -> tuple[np.ndarray, ...]:
    """Inclusive tile index ranges (x0, y0, x1, y1) touched by each Mercator bbox."""
    size = _tile_size(z)
    pad = buffer_units * size / EXTENT
    last = (1 << z) - 1
    x0 = np.floor((bounds[:, 0] - pad + _HALF_WORLD) / size)
    x1 = np.floor((bounds[:, 2] + pad + _HALF_WORLD) / size)
    y0 = np.floor((_HALF_WORLD - bounds[:, 3] - pad) / size)
    y1 = np.floor((_HALF_WORLD - bounds[:, 1] + pad) / size)
    return tuple(np.clip(a, 0, last).astype(np.int64) for a in (x0, y0, x1, y1))


def _expand_to_tiles(bounds: np.ndarray, z: int) -> tuple[np.ndarray, np.ndarray]:
    """(feature index, tile key) pairs, one per tile each feature touches."""
    x0, y0, x1, y1 = _tile_ranges(bounds, z, BUFFER)
    w = x1 - x0 + 1
    counts = w * (y1 - y0 + 1)
    feat = np.repeat(np.arange(len(bounds)), counts)
    j = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    tx = x0[feat] + j % w[feat]
    ty = y0[feat] + j // w[feat]
    return feat, (tx << z) | ty


# -- size estimate ----------------------------------------------------------------
def _attribute_bytes(attrs: gpd.GeoDataFrame) -> np.ndarray:
    """Upper-bound MVT bytes of each feature's tags and (assumed unique) values."""
    total = np.zeros(len(attrs), dtype=np.int64)
    for name in attrs.columns:
        col = attrs[name]
        kind = getattr(col.dtype, "kind", "O")
        if kind in "biuf":
            size = np.full(len(col), 12, dtype=np.int64)  # value message: key + 8-byte double
        else:
            lengths = col.astype("string").fillna("").str.encode("utf-8").str.len()
            size = lengths.to_numpy(dtype=np.int64) + 6  # value message + string header
        total += size + 4  # two tag varints
    return total


def _geometry_bytes(geoms: np.ndarray) -> np.ndarray:
    coords = shapely.get_num_coordinates(geoms).astype(np.int64)
    parts = shapely.get_num_geometries(geoms).astype(np.int64)
    rings = parts + shapely.get_num_interior_rings(geoms).clip(min=0).astype(np.int64)
    # command integers per ring plus zig-zag deltas (up to 3 bytes each at extent 4096)
    return 6 * coords + 4 * rings + 12


def _keep_mask(feat: np.ndarray, key: np.ndarray, est: np.ndarray, area: np.ndarray,
               budgets: dict[int, float], default_budget: float, n: int) -> np.ndarray:
    """Features that fit every tile they touch, largest first within each tile."""
    order = np.lexsort((-area[feat], key))
    key_s, feat_s = key[order], feat[order]
    cum = np.cumsum(est[feat_s])
    starts = np.flatnonzero(np.r_[True, key_s[1:] != key_s[:-1]])
    group_len = np.diff(np.r_[starts, len(key_s)])
    before = np.repeat(np.r_[0, cum[starts[1:] - 1]], group_len)
    in_tile = cum - before
    limit = np.full(len(key_s), default_budget)
    if budgets:
        tight = np.array(list(budgets.keys()), dtype=np.int64)
        hit = np.isin(key_s, tight)
        limit[hit] = [budgets[int(k)] for k in key_s[hit]]
    over = in_tile > limit
    keep = np.ones(n, dtype=bool)
    keep[np.unique(feat_s[over])] = False
    return keep


# -- GDAL pass for one zoom -----------------------------------------------------
def _write_zoom(gdf: gpd.GeoDataFrame, path: Path, layer: str, z: int, max_tile_bytes: int) -> None:
    pyogrio.write_dataframe(
        gdf, path, driver="PMTiles", layer=layer,
        dataset_options={
            "NAME": layer, "MINZOOM": z, "MAXZOOM": z, "EXTENT": EXTENT, "BUFFER": BUFFER,
            # we simplified already; GDAL's own size cap (on gzip bytes) stays as a backstop
            "SIMPLIFICATION": 0, "SIMPLIFICATION_MAX_ZOOM": 0, "MAX_SIZE": max_tile_bytes,
        },
    )


def _scan_zoom(path: Path) -> list[tuple[int, int, int, bytes, int]]:
    """(z, x, y, gzip bytes, uncompressed size) of every tile in a scratch archive."""
    out = []
    with open(path, "rb") as f:
        get_bytes = MmapSource(f)
        for (z, x, y), data in all_tiles(get_bytes):
            data = bytes(data)
            raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            if data[:2] != b"\x1f\x8b":
                data = gzip.compress(raw, mtime=0)
            out.append((z, x, y, data, len(raw)))
    return out


def _written_ids(path: Path, layer: str) -> int:
    """Distinct feature ids decoded from a scratch archive (GDAL's MVT reader)."""
    ids = pyogrio.read_dataframe(path, layer=layer, columns=[ID_COLUMN], read_geometry=False)
    return int(ids[ID_COLUMN].nunique())


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

    # Mercator is undefined at the poles; clamp like every web map does.
    clipped = gdf.geometry.clip_by_rect(-180, -_MAX_LAT, 180, _MAX_LAT)
    merc = gpd.GeoSeries(clipped, crs=4326).to_crs(3857).values
    attrs = gdf[columns]
    attr_bytes = _attribute_bytes(attrs)
    n = len(gdf)

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
            "maxzoom": maxzoom, "merc": merc, "attrs": attrs, "attr_bytes": attr_bytes, "layer": layer,
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
            info = _info(layer, minzoom, maxzoom, lonlat_bounds, attrs)
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
        simplified=len(budget.simplified), too_complex=len(budget.dropped),
    )


def _zoom_partition(z: int, *, maxzoom: int, merc: np.ndarray, attrs, attr_bytes: np.ndarray, layer: str,
                    max_tile_bytes: int) -> tuple[ZoomReport, list]:
    """One zoom level, with scratch space of its own (the worker may be on another machine)."""
    with tempfile.TemporaryDirectory(prefix=f"citytwin-{layer}-z{z}-") as scratch:
        return _build_zoom(z, maxzoom, merc, attrs, attr_bytes, layer, Path(scratch), max_tile_bytes)


def _build_zoom(z: int, maxzoom: int, merc: np.ndarray, attrs, attr_bytes: np.ndarray, layer: str,
                scratch: Path, max_tile_bytes: int) -> tuple[ZoomReport, list]:
    n = len(merc)
    tol = 0.0 if z == maxzoom else SIMPLIFY_PX * _tile_size(z) / EXTENT
    geoms = shapely.simplify(merc, tol, preserve_topology=True) if tol else merc
    est = _geometry_bytes(geoms) + attr_bytes
    area = np.maximum(shapely.area(geoms), shapely.length(geoms))  # lines/points: length or 0
    feat, key = _expand_to_tiles(shapely.bounds(geoms), z)
    default_budget = _BUDGET_SHARE * max_tile_bytes
    budgets: dict[int, float] = {}
    best: tuple[ZoomReport, list] | None = None  # the last pass with every tile under the limit
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        keep = _keep_mask(feat, key, est, area, budgets, default_budget, n)
        path = scratch / f"z{z}-{attempt}.pmtiles"
        if not keep.any():
            return ZoomReport(z, 0, 0, n, n, 0, attempt), []
        part = gpd.GeoDataFrame(attrs[keep].reset_index(drop=True), geometry=geoms[keep], crs=3857)
        _write_zoom(part, path, layer, z, max_tile_bytes)
        tiles = _scan_zoom(path)
        too_big = [t for t in tiles if t[4] > max_tile_bytes]
        if too_big:
            if best is not None:  # growing a budget overshot: keep the last good pass
                return best
            for _, tx, ty, _, raw in too_big:
                k = (tx << z) | ty
                budgets[k] = budgets.get(k, default_budget) * _BUDGET_SHARE * max_tile_bytes / raw
            path.unlink()
            continue
        written = _written_ids(path, layer) if tiles else 0
        largest = max((t[4] for t in tiles), default=0)
        best = ZoomReport(z, len(tiles), largest, n, int(n - keep.sum()), written, attempt), tiles
        # The estimate is cautious: a tile that lost features but came out well under the
        # limit gets a proportionally larger budget, so we drop no more than we must.
        dropped_keys = set(np.unique(key[~keep[feat]]).tolist())
        roomy = {(tx << z) | ty: raw for _, tx, ty, _, raw in tiles
                 if ((tx << z) | ty) in dropped_keys and raw < _GROW_BELOW * max_tile_bytes}
        if not roomy or attempt == _MAX_ATTEMPTS:
            return best
        for k, raw in roomy.items():
            budgets[k] = budgets.get(k, default_budget) * _BUDGET_SHARE * max_tile_bytes / max(raw, 1)
    raise StoreError(
        f"layer {layer!r}: could not fit zoom {z} tiles under {max_tile_bytes} bytes after "
        f"{_MAX_ATTEMPTS} attempts; raise minzoom in citytwin.yaml"
    )


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

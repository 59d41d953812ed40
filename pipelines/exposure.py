"""Exposure: which features a hazard reaches, how deep, and how many per admin area.

A hazard is either a raster layer (e.g. flood depth; a feature is affected when the deepest
cell under it exceeds a threshold) or a polygon layer of hazard zones (affected when it
overlaps a zone with some area; merely touching an edge does not count).

Raster sampling: footprints are burnt into a label grid aligned with the COG (a cell belongs
to a footprint when its centre is inside), and max/mean depth are aggregated per label with
numpy. A feature too small to hold a cell centre, a line or a point is sampled at its
representative point instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio import features as rio_features
from rasterio.transform import rowcol
from rasterio.windows import Window, from_bounds
from shapely.geometry import mapping, shape

from geo.crs import WGS84
from geo.errors import CatalogError
from pipelines.catalog import Catalog
from pipelines.rasters import cog_path
from pipelines.store import Store
from pipelines.store.base import ID_COLUMN

NAME_FIELDS = ("name", "name_ko", "name_en", "code", "address")


@dataclass(frozen=True)
class Hazard:
    layer: str
    kind: str  # 'raster' | 'zones'
    threshold: float
    cog: Path | None = None
    zones: gpd.GeoDataFrame | None = None


def load_hazard(catalog: Catalog, store: Store, layer: str, threshold: float = 0.0) -> Hazard:
    cfg = catalog.layer(layer)
    if cfg.kind == "raster":
        path = cog_path(catalog, layer)
        if not path.is_file():
            raise CatalogError(f"raster layer {layer!r} has no COG yet; run 'citytwin build'")
        return Hazard(layer, "raster", float(threshold), cog=path)
    if layer not in store.layers():
        raise CatalogError(f"hazard layer {layer!r} is not in the store yet; run 'citytwin build'")
    zones = store.read(layer)
    if not set(zones.geometry.geom_type) <= {"Polygon", "MultiPolygon"}:
        raise CatalogError(f"hazard layer {layer!r} must be a raster or a polygon layer of hazard zones")
    return Hazard(layer, "zones", float(threshold), zones=zones)


def sample_raster(cog: Path, geoms: gpd.GeoSeries) -> pd.DataFrame:
    """max_depth and mean_depth (NaN where no valid cell) under each geometry (any CRS)."""
    n = len(geoms)
    maxs = np.full(n, np.nan)
    means = np.full(n, np.nan)
    if n == 0:
        return pd.DataFrame({"max_depth": maxs, "mean_depth": means}, index=geoms.index)
    with rasterio.open(cog) as ds:
        g = geoms.to_crs(ds.crs).to_numpy()
        left, bottom, right, top = ds.bounds
        minx, miny, maxx, maxy = shapely.total_bounds(g)
        minx, miny, maxx, maxy = max(minx, left), max(miny, bottom), min(maxx, right), min(maxy, top)
        if minx >= maxx or miny >= maxy:
            return pd.DataFrame({"max_depth": maxs, "mean_depth": means}, index=geoms.index)
        w = from_bounds(minx, miny, maxx, maxy, ds.transform)
        c0, r0 = int(np.floor(w.col_off)), int(np.floor(w.row_off))
        c1, r1 = int(np.ceil(w.col_off + w.width)), int(np.ceil(w.row_off + w.height))
        win = Window(c0, r0, max(c1 - c0, 1), max(r1 - r0, 1)).intersection(Window(0, 0, ds.width, ds.height))
        data = ds.read(1, window=win, masked=True).astype("float64").filled(np.nan)
        transform = ds.window_transform(win)

    polygonal = np.isin(shapely.get_type_id(g), (3, 6))
    idx = np.flatnonzero(polygonal)
    if len(idx):
        counts = np.zeros(n + 1, dtype=np.int64)
        sums = np.zeros(n + 1)
        top_ = np.full(n + 1, -np.inf)
        # Overlapping footprints would overwrite each other's cells in one label grid, so
        # they are burnt in layers that hold no two overlapping features.
        for layer in _overlap_free_layers(g[idx]):
            sel = idx[layer]
            labels = rio_features.rasterize(zip(g[sel], sel + 1), out_shape=data.shape, transform=transform,
                                            fill=0, all_touched=False, dtype="int32")
            ok = (labels > 0) & np.isfinite(data)
            lab, vals = labels[ok], data[ok]
            counts += np.bincount(lab, minlength=n + 1)
            sums += np.bincount(lab, weights=vals, minlength=n + 1)
            np.maximum.at(top_, lab, vals)
        hit = counts[1:] > 0
        maxs[hit] = top_[1:][hit]
        means[hit] = sums[1:][hit] / counts[1:][hit]
    # No cell centre inside (small footprint, line, point): the cell under its representative point.
    rest = np.flatnonzero(np.isnan(maxs))
    if len(rest):
        pts = shapely.point_on_surface(g[rest])
        rows, cols = rowcol(transform, shapely.get_x(pts), shapely.get_y(pts))
        rows, cols = np.asarray(rows), np.asarray(cols)
        inside = (rows >= 0) & (rows < data.shape[0]) & (cols >= 0) & (cols < data.shape[1])
        vals = np.full(len(rest), np.nan)
        vals[inside] = data[rows[inside], cols[inside]]
        maxs[rest] = vals
        means[rest] = vals
    return pd.DataFrame({"max_depth": maxs, "mean_depth": means}, index=geoms.index)


def _overlap_free_layers(geoms: np.ndarray) -> list[np.ndarray]:
    """Greedy colouring: index arrays of groups in which no two geometries overlap."""
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    keep = left != right
    neighbours: dict[int, list[int]] = {}
    for i, j in zip(left[keep], right[keep]):
        neighbours.setdefault(int(i), []).append(int(j))
    colour = np.zeros(len(geoms), dtype=np.int64)
    for i in sorted(neighbours):
        taken = {colour[j] for j in neighbours[i] if j < i}
        colour[i] = next(k for k in range(len(taken) + 1) if k not in taken)
    return [np.flatnonzero(colour == k) for k in range(int(colour.max()) + 1 if len(colour) else 0)]


def zone_hits(zones: gpd.GeoDataFrame, geoms: gpd.GeoSeries) -> pd.Series:
    """For each geometry, the ids of the zones it overlaps (touching only an edge does not count)."""
    g = geoms.to_crs(WGS84).to_numpy()
    tree = shapely.STRtree(zones.geometry.to_numpy())
    left, right = tree.query(g, predicate="intersects")
    zg = zones.geometry.to_numpy()
    real = ~shapely.touches(g[left], zg[right])
    out: list[list[str]] = [[] for _ in range(len(g))]
    zone_ids = zones[ID_COLUMN].astype(str).to_numpy()
    for i, j in zip(left[real], right[real]):
        out[i].append(zone_ids[j])
    return pd.Series(out, index=geoms.index)


def assess(hazard: Hazard, gdf: gpd.GeoDataFrame) -> pd.DataFrame:
    """Columns: affected (bool), and max_depth/mean_depth (raster) or zones (list of zone ids)."""
    if hazard.kind == "raster":
        df = sample_raster(hazard.cog, gdf.geometry)
        df["affected"] = df["max_depth"].fillna(-np.inf) > hazard.threshold
        return df
    hits = zone_hits(hazard.zones, gdf.geometry)
    return pd.DataFrame({"zones": hits, "affected": hits.map(bool)}, index=gdf.index)


def _label(row: pd.Series) -> dict:
    """Name-like fields of a feature, as plain JSON values."""
    return {k: (row[k].item() if hasattr(row[k], "item") else row[k])
            for k in NAME_FIELDS if k in row.index and pd.notna(row[k])}


def _feature(row: pd.Series, res: pd.Series, with_geometry: bool) -> dict:
    props = {"id": str(row[ID_COLUMN]), **_label(row)}
    for k in ("max_depth", "mean_depth"):
        if k in res.index and pd.notna(res[k]):
            props[k] = round(float(res[k]), 3)
    if "zones" in res.index:
        props["zones"] = list(res["zones"])
    geom = mapping(row.geometry) if with_geometry else None
    return {"type": "Feature", "id": props["id"], "properties": props, "geometry": geom}


def _area_of(points: gpd.GeoSeries, areas: gpd.GeoDataFrame) -> pd.Series:
    """Id of the area containing each point (None outside every area)."""
    tree = shapely.STRtree(areas.geometry.to_numpy())
    left, right = tree.query(points.to_numpy(), predicate="within")
    out = pd.Series([None] * len(points), index=points.index, dtype=object)
    out.iloc[left] = areas[ID_COLUMN].astype(str).to_numpy()[right]
    return out


def _read(store: Store, catalog: Catalog, layer: str) -> gpd.GeoDataFrame:
    catalog.layer(layer)
    if layer not in store.layers():
        raise CatalogError(f"layer {layer!r} is not in the store yet; run 'citytwin build'")
    return store.read(layer)


def exposure(catalog: Catalog, store: Store, hazard: Hazard, targets: list[str], areas_layer: str | None,
             with_geometry: bool = False) -> dict:
    """The hazard-exposure result: affected features per target and counts per admin area."""
    areas = _read(store, catalog, areas_layer) if areas_layer else None
    result: dict = {"hazard": {"layer": hazard.layer, "kind": hazard.kind, "threshold": hazard.threshold},
                    "targets": {}}
    per_area: dict[str, dict[str, int]] = {}
    for layer in targets:
        gdf = _read(store, catalog, layer)
        res = assess(hazard, gdf)
        hit = gdf[res["affected"].to_numpy()]
        feats = [_feature(row, res.loc[i], with_geometry) for i, row in hit.iterrows()]
        entry = {"total": len(gdf), "affected": len(hit),
                 "features": {"type": "FeatureCollection", "features": feats}}
        if hazard.kind == "raster" and len(hit):
            entry["max_depth"] = round(float(res.loc[hit.index, "max_depth"].max()), 3)
        result["targets"][layer] = entry
        if areas is not None and len(hit):
            where = _area_of(gpd.GeoSeries(shapely.point_on_surface(hit.geometry.to_numpy()), index=hit.index),
                             areas)
            for area_id, n in where.dropna().value_counts().items():
                per_area.setdefault(str(area_id), {})[layer] = int(n)
    if areas is not None:
        rows = []
        for _, a in areas.iterrows():
            counts = per_area.get(str(a[ID_COLUMN]), {})
            rows.append({"id": str(a[ID_COLUMN]), **_label(a), "counts": {t: counts.get(t, 0) for t in targets}})
        result["areas"] = {"layer": areas_layer, "items": rows}
    return result


def hazard_footprint(hazard: Hazard) -> shapely.Geometry:
    """Where the hazard is, as one lon/lat (multi)polygon: wet cells above the threshold, or the zones."""
    if hazard.kind == "zones":
        return shapely.union_all(hazard.zones.geometry.to_numpy())
    with rasterio.open(hazard.cog) as ds:
        data = ds.read(1, masked=True)
        wet = (data.filled(-np.inf) > hazard.threshold).astype("uint8")
        polys = [shape(geom) for geom, v in rio_features.shapes(wet, mask=wet.astype(bool),
                                                                               transform=ds.transform) if v]
        crs = ds.crs
    if not polys:
        return shapely.Polygon()
    return gpd.GeoSeries([shapely.union_all(polys)], crs=crs).to_crs(WGS84).iloc[0]


def alert_targets(catalog: Catalog, store: Store, hazard: Hazard, buildings_layer: str, areas_layer: str,
                  buffer_m: float = 0.0) -> dict:
    """Admin areas and buildings to warn: buildings the hazard reaches, or within ``buffer_m`` of it."""
    buildings = _read(store, catalog, buildings_layer)
    areas = _read(store, catalog, areas_layer)
    res = assess(hazard, buildings)
    inside = res["affected"].to_numpy()
    metric = buildings.estimate_utm_crs() if len(buildings) else "EPSG:5179"
    foot = gpd.GeoSeries([hazard_footprint(hazard)], crs=WGS84).to_crs(metric).iloc[0]
    near = np.zeros(len(buildings), dtype=bool)
    if buffer_m > 0 and not foot.is_empty:
        dist = shapely.distance(buildings.geometry.to_crs(metric).to_numpy(), foot)
        near = (dist <= buffer_m) & ~inside
    warn = inside | near
    hit = buildings[warn]
    where = _area_of(gpd.GeoSeries(shapely.point_on_surface(hit.geometry.to_numpy()), index=hit.index), areas)
    items = []
    for i, row in hit.iterrows():
        r = res.loc[i]
        item = {"id": str(row[ID_COLUMN]), **_label(row), "reason": "inside" if inside[buildings.index.get_loc(i)]
                else "nearby", "area": where.loc[i]}
        if "max_depth" in r.index and pd.notna(r["max_depth"]):
            item["max_depth"] = round(float(r["max_depth"]), 3)
        items.append(item)
    reach = shapely.buffer(foot, buffer_m) if buffer_m > 0 else foot
    areas_m = areas.to_crs(metric)
    area_rows = []
    for (_, a), geom in zip(areas.iterrows(), areas_m.geometry.to_numpy()):
        aid = str(a[ID_COLUMN])
        n_in = sum(1 for it in items if it["area"] == aid and it["reason"] == "inside")
        n_near = sum(1 for it in items if it["area"] == aid and it["reason"] == "nearby")
        if n_in or n_near or (not reach.is_empty and shapely.intersects(geom, reach)
                              and not shapely.touches(geom, reach)):
            area_rows.append({"id": aid, **_label(a), "buildings_inside": n_in, "buildings_nearby": n_near})
    return {"hazard": {"layer": hazard.layer, "kind": hazard.kind, "threshold": hazard.threshold},
            "buffer_m": buffer_m, "areas": area_rows, "buildings": items}

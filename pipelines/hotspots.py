"""Hotspots: point records (accidents, crime reports) counted per H3 cell or per admin area.

The result is an ordinary polygon layer in the store (kind ``hazard_zones`` by default), so
it is served as Features and vector tiles like any other. Its catalog entry has no source:
``citytwin build`` keeps what is in the store, and ``citytwin hotspots`` refreshes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import shapely

from geo.crs import WGS84
from geo.errors import CatalogError, SourceError
from geo.names import check_layer_name
from pipelines.catalog import add_layer_entry, load_catalog
from pipelines.project import project_store
from pipelines.readers.vector import read_vector
from pipelines.store.base import ID_COLUMN

#: Metric CRS for areas (Korea 2000 / Unified CS); areas outside Korea use their UTM zone.
_KOREA_AREA_CRS = "EPSG:5179"


@dataclass(frozen=True)
class HotspotReport:
    layer: str
    points: int
    counted: int
    cells: int
    by: str
    top: list[tuple[str, int]]
    warnings: list[str] = field(default_factory=list)  # from reading the points (e.g. an accepted CRS)

    def summary(self) -> str:
        top = ", ".join(f"{k} ({n})" for k, n in self.top) or "none"
        return "\n".join([f"layer '{self.layer}': {self.counted} of {self.points} points in {self.cells} {self.by}; "
                          f"busiest: {top}", *(f"  warning: {w}" for w in self.warnings)])


def _points(gdf: gpd.GeoDataFrame, source: str) -> gpd.GeoDataFrame:
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty].to_crs(WGS84)
    kinds = set(gdf.geometry.geom_type)
    if kinds - {"Point", "MultiPoint"}:
        raise SourceError(f"{source}: hotspots need point records, found {', '.join(sorted(kinds))}; "
                          "give incident locations as points")
    gdf = gdf.explode(index_parts=False)
    if gdf.empty:
        raise SourceError(f"{source}: no point with a location to count")
    return gdf


def _area_km2(geoms: gpd.GeoSeries) -> np.ndarray:
    lon, lat = geoms.union_all().centroid.coords[0]
    metric = _KOREA_AREA_CRS if 124 <= lon <= 132 and 33 <= lat <= 39 else geoms.estimate_utm_crs()
    return geoms.to_crs(metric).area.to_numpy() / 1e6


def _ranked(gdf: gpd.GeoDataFrame, total: int) -> gpd.GeoDataFrame:
    gdf["per_km2"] = np.round(gdf["count"] / np.maximum(_area_km2(gdf.geometry), 1e-9), 2)
    gdf["share"] = np.round(gdf["count"] / max(total, 1), 4)
    gdf["rank"] = gdf["count"].rank(method="min", ascending=False).astype("int64")
    return gdf.sort_values(["rank", ID_COLUMN]).reset_index(drop=True)


def by_h3(points: gpd.GeoDataFrame, resolution: int) -> gpd.GeoDataFrame:
    """One hexagon per H3 cell holding at least one point: id (= cell), count, per_km2, share, rank."""
    if not 0 <= resolution <= 15:
        raise SourceError(f"--h3-res {resolution} is out of range; H3 resolutions are 0 (coarsest) to 15")
    lon, lat = points.geometry.x.to_numpy(), points.geometry.y.to_numpy()
    cells = [h3.latlng_to_cell(y, x, resolution) for x, y in zip(lon, lat)]
    counts = pd.Series(cells).value_counts()
    hexes = [shapely.Polygon([(x, y) for y, x in h3.cell_to_boundary(c)]) for c in counts.index]
    gdf = gpd.GeoDataFrame({ID_COLUMN: counts.index.astype(str), "h3_res": resolution,
                            "count": counts.to_numpy().astype("int64")}, geometry=hexes, crs=WGS84)
    return _ranked(gdf, len(points))


def by_areas(points: gpd.GeoDataFrame, areas: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Every area (even those with none) with the number of points inside it."""
    joined = gpd.sjoin(points[["geometry"]], areas[[ID_COLUMN, "geometry"]], predicate="within", how="inner")
    counts = joined.groupby(ID_COLUMN).size()
    keep = [c for c in areas.columns if c in (ID_COLUMN, "code", "name", "name_ko", "name_en", "geometry")]
    out = areas[keep].copy()
    out["count"] = out[ID_COLUMN].map(counts).fillna(0).astype("int64")
    return _ranked(gpd.GeoDataFrame(out, geometry="geometry", crs=WGS84), len(points))


def build_hotspots(project: Path, points_path: Path, layer: str, *, h3_res: int | None = None,
                   by_layer: str | None = None, crs: str | None = None, accept_source_crs: bool = False,
                   encoding: str | None = None, kind: str = "hazard_zones", progress: bool = False) -> HotspotReport:
    """``citytwin hotspots``: count POINTS per H3 cell or per area of BY_LAYER, publish as LAYER."""
    check_layer_name(layer)
    if (h3_res is None) == (by_layer is None):
        raise CatalogError("give exactly one of --h3-res N or --by-layer NAME")
    catalog = load_catalog(project)
    if layer in catalog.layers and catalog.layers[layer].source:
        raise CatalogError(f"layer {layer!r} already has a source in citytwin.yaml; choose another --layer")
    if by_layer is not None:
        catalog.layer(by_layer)
    src = read_vector(Path(points_path), crs=crs, encoding=encoding, accept_source_crs=accept_source_crs,
                      progress=progress)
    points = _points(src.gdf, str(points_path))
    store = project_store(catalog)
    try:
        if h3_res is not None:
            out, by = by_h3(points, h3_res), f"H3 cells (resolution {h3_res})"
        else:
            if by_layer not in store.layers():
                raise CatalogError(f"layer {by_layer!r} is not in the store yet; run 'citytwin build' first")
            areas = store.read(by_layer)
            if not set(areas.geometry.geom_type) <= {"Polygon", "MultiPolygon"}:
                raise CatalogError(f"--by-layer {by_layer!r} must be a polygon layer (e.g. dong or gu)")
            out, by = by_areas(points, areas), f"areas of '{by_layer}'"
        store.publish(layer, out)
        cfg_entry = {"kind": kind, "title": f"Hotspots: {Path(points_path).stem}",
                     "description": f"Point records from {Path(points_path).name} counted per {by}; "
                                    "refresh with 'citytwin hotspots'"}
        add_layer_entry(project, layer, cfg_entry)
        catalog = load_catalog(project)
        cfg = catalog.layers[layer]
        from tiles.pmtiles_build import build_pmtiles

        build_pmtiles(store, layer, catalog.build_path / "tiles" / f"{layer}.pmtiles", cfg.minzoom, cfg.maxzoom,
                      cfg.fields, progress=progress)
    finally:
        store.close()
    counted = int(out["count"].sum())
    top = [(str(i), int(n)) for i, n in zip(out[ID_COLUMN], out["count"]) if n > 0][:5]
    return HotspotReport(layer, len(points), counted, int((out["count"] > 0).sum()), by, top, src.warnings)

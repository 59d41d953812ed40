"""Landmark models as features: each placed model is a point with its name, height, heading
and scale, so a landmark_models collection has items like every other one (OGC API Features
clients list every collection and read its items; a collection without them is an error).

The points come from the catalog's ``models`` entries and are written, at each start, into a
GeoPackage of their own next to the generated pygeoapi configuration (never the project's
store), where the same feature provider as the other layers serves them.
"""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import shapely

from pipelines.catalog import Catalog
from pipelines.store.gpkg import GeoPackageStore

PLACEMENTS_GPKG = "placements.gpkg"


def placement_frame(catalog: Catalog, layer: str) -> gpd.GeoDataFrame:
    """One point per placed model of ``layer`` (kind landmark_models)."""
    models = catalog.layers[layer].models or []
    return gpd.GeoDataFrame(
        {"id": [m.id for m in models], "name": [m.name or m.id for m in models],
         "height": [float(m.height) for m in models], "heading": [float(m.heading) for m in models],
         "scale": [float(m.scale) for m in models]},
        geometry=[shapely.Point(m.lon, m.lat) for m in models], crs="EPSG:4326")


def write_placements(catalog: Catalog, layers: list[str], out_dir: Path) -> Path | None:
    """Write the placements of ``layers`` into ``out_dir``/placements.gpkg (built elsewhere, then
    swapped in by the store); None when no layer places a model."""
    frames = {name: placement_frame(catalog, name) for name in layers}
    frames = {name: gdf for name, gdf in frames.items() if len(gdf)}
    if not frames:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    store = GeoPackageStore(out_dir / PLACEMENTS_GPKG)
    try:
        for name, gdf in frames.items():
            store.publish(name, gdf)
    finally:
        store.close()
    return store.path

"""Ids, heights and published fields: what every layer gets before the store."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo.errors import SourceError
from pipelines.store.base import ID_COLUMN

HEIGHT_NAMES = ("height", "measuredheight", "bld_hgt", "buld_hgt", "hgt", "height_m", "높이")
FLOOR_NAMES = ("floors", "storeys", "storeysaboveground", "grnd_flr", "gro_flo_co", "flr_cnt", "지상층수", "층수")


def _find(columns, wanted: str | None, names: tuple[str, ...], source: str, what: str) -> str | None:
    if wanted:
        if wanted not in columns:
            raise SourceError(f"{source}: {what} field '{wanted}' is not in the file (fields: {', '.join(columns)})")
        return wanted
    lower = {c.lower(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def stable_ids(gdf: gpd.GeoDataFrame, id_field: str | None, source: str,
               wkb: np.ndarray | None = None) -> pd.Series:
    """The source's own id when configured, else a hash of geometry and attributes.

    Re-ingesting an unchanged file gives the same ids; identical duplicate features get
    a '-2', '-3' suffix in file order. ``wkb``: the geometries as WKB when already made
    (by ingest partitions), else made here.
    """
    if id_field:
        if id_field not in gdf.columns:
            raise SourceError(f"{source}: id field '{id_field}' is not in the file (fields: {', '.join(gdf.columns)})")
        ids = gdf[id_field].astype("string")
        if ids.isna().any():
            row = int(np.flatnonzero(ids.isna().to_numpy())[0])
            raise SourceError(f"{source}: feature {row} has no value in id field '{id_field}'; fill it or drop id_field")
    else:
        if wkb is None:
            wkb = shapely.to_wkb(gdf.geometry.to_numpy(), hex=False)
        attrs = gdf.drop(columns=gdf.geometry.name)
        # hash_pandas_object uses a fixed key, so the row hashes are the same on every run
        row_hash = (pd.util.hash_pandas_object(attrs, index=False).to_numpy() if attrs.shape[1]
                    else np.zeros(len(gdf), dtype="uint64"))
        ids = pd.Series(
            [hashlib.sha1((w or b"") + int(h).to_bytes(8, "little")).hexdigest()[:16] for w, h in zip(wkb, row_hash)],
            index=gdf.index, dtype="string",
        )
    dup_rank = ids.groupby(ids).cumcount()
    return ids.where(dup_rank == 0, ids + "-" + (dup_rank + 1).astype(str))


@dataclass
class HeightCounts:
    from_attribute: int = 0
    from_floors: int = 0
    missing: int = 0


def building_heights(gdf: gpd.GeoDataFrame, *, height_field: str | None, floors_field: str | None,
                     storey_height: float, source: str) -> tuple[gpd.GeoDataFrame, HeightCounts]:
    """Add 'height' (m): the height attribute, else floors x storey height, else null."""
    cols = [c for c in gdf.columns if c != gdf.geometry.name]
    hcol = _find(cols, height_field, HEIGHT_NAMES, source, "height")
    fcol = _find(cols, floors_field, FLOOR_NAMES, source, "floors")
    height = pd.to_numeric(gdf[hcol], errors="coerce") if hcol else pd.Series(np.nan, index=gdf.index)
    height = height.where(height > 0)
    floors = pd.to_numeric(gdf[fcol], errors="coerce") if fcol else pd.Series(np.nan, index=gdf.index)
    floors = floors.where(floors > 0)
    from_floors = height.isna() & floors.notna()
    out = gdf.copy()
    out["height"] = height.where(~from_floors, floors * storey_height).astype("float64")
    if fcol:
        out["floors"] = floors.round().astype("Int32")
    out["height_source"] = pd.Series(
        np.where(height.notna(), "attribute", np.where(from_floors, "floors", None)), index=gdf.index, dtype="string"
    )
    if hcol and hcol != "height":
        out = out.drop(columns=hcol)
    if fcol and fcol != "floors":
        out = out.drop(columns=fcol)
    counts = HeightCounts(int(height.notna().sum()), int(from_floors.sum()), int(out["height"].isna().sum()))
    return out, counts


def select_fields(gdf: gpd.GeoDataFrame, fields: list[str] | None, keep: tuple[str, ...], source: str) -> gpd.GeoDataFrame:
    """Keep the id, the geometry, the always-kept columns and the published fields."""
    geom = gdf.geometry.name
    if fields is None:
        return gdf
    missing = [f for f in fields if f not in gdf.columns]
    if missing:
        available = ", ".join(c for c in gdf.columns if c not in (geom, ID_COLUMN))
        raise SourceError(
            f"{source}: published field(s) {', '.join(missing)} not found; available: {available}. "
            "Fix 'fields' in citytwin.yaml."
        )
    order = [ID_COLUMN] + [c for c in keep if c in gdf.columns and c not in fields] + list(fields) + [geom]
    seen, cols = set(), []
    for c in order:
        if c not in seen:
            seen.add(c)
            cols.append(c)
    return gdf[cols]

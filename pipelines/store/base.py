"""The store interface: one small protocol, two implementations (GeoPackage, PostGIS).

Every layer is stored in EPSG:4326 (lon/lat) with a text ``id`` column (stable feature
id) and a geometry column named ``geometry``. ``publish`` replaces a layer atomically:
a reader sees either the old layer or the new one, never a half-written one, and a
failure leaves the old one in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import geopandas as gpd
import numpy as np
import pandas as pd

from geo.errors import StoreError

STORE_CRS = "EPSG:4326"
ID_COLUMN = "id"
GEOMETRY_COLUMN = "geometry"


@dataclass(frozen=True)
class LayerInfo:
    name: str
    count: int
    bounds: tuple[float, float, float, float]  # lon/lat
    geometry_type: str
    fields: dict[str, str] = field(default_factory=dict)  # name -> 'string' | 'number' | 'integer' | 'boolean'


@runtime_checkable
class Store(Protocol):
    """Where published layers live."""

    kind: str  # 'gpkg' or 'postgis'

    def publish(self, name: str, gdf: gpd.GeoDataFrame) -> LayerInfo:
        """Atomically replace (or create) layer ``name`` with ``gdf`` (EPSG:4326, 'id' column)."""

    def read(self, name: str, bbox: tuple[float, float, float, float] | None = None,
             rows: tuple[int, int | None] | None = None) -> gpd.GeoDataFrame:
        """The layer (or the features intersecting a lon/lat bbox) as a GeoDataFrame. ``rows``
        (start, stop): that slice of the whole layer's read, in its order, so slices read one
        after another add up to the whole read."""

    def count(self, name: str, bbox: tuple[float, float, float, float]) -> int:
        """Features whose envelope meets the lon/lat ``bbox`` (from the spatial index; a bbox read returns
        these or fewer)."""

    def layers(self) -> list[str]:
        """Names of the published layers."""

    def info(self, name: str) -> LayerInfo:
        """Count, bounds, geometry type and fields of a layer."""

    def close(self) -> None: ...


def row_slice(rows: tuple[int, int | None], bbox) -> tuple[int, int | None]:
    """``rows`` checked as a (start, stop) slice of a whole-layer read; stop None: to its end."""
    if bbox is not None:
        raise StoreError("a read takes a bbox or a slice of rows, not both")
    start, stop = int(rows[0]), None if rows[1] is None else int(rows[1])
    if start < 0 or (stop is not None and stop < start):
        raise StoreError(f"rows {start}-{stop} are no slice of a layer: use 0 <= start <= stop")
    return start, stop


def field_type(dtype) -> str:
    """Map a pandas dtype to the JSON-schema-ish type names used by the API."""
    kind = getattr(dtype, "kind", "O")
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return "integer"
    if kind == "f":
        return "number"
    return "string"


def check_publishable(name: str, gdf: gpd.GeoDataFrame) -> None:
    """What every store refuses, checked the same way before any of them writes.

    PostgreSQL refuses repeated ids (primary key) and NUL characters in text by itself, but
    GeoPackage would keep the repeats and silently cut the text at the NUL; both stores now
    refuse them up front, naming the feature and the field.
    """
    if ID_COLUMN not in gdf.columns:
        raise StoreError(f"layer {name!r}: no {ID_COLUMN!r} column; every feature needs a stable id")
    ids = gdf[ID_COLUMN]
    if ids.isna().any():
        raise StoreError(f"layer {name!r}: feature #{int(np.flatnonzero(ids.isna().to_numpy())[0])} has no id; "
                         "fill the id field, or leave id_field unset so ingest makes ids")
    as_text = ids.astype(str)
    repeated = as_text[as_text.duplicated(keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        raise StoreError(
            f"layer {name!r}: feature ids must be unique, but id {first!r} is used by "
            f"{int((as_text == first).sum())} features ({repeated.nunique()} ids repeat in all); pick an id "
            "field whose values are unique, or leave id_field unset so ingest makes ids; nothing was published"
        )
    geometry = gdf.geometry.name if isinstance(gdf, gpd.GeoDataFrame) else None
    for col in gdf.columns:
        if col == geometry or getattr(gdf[col].dtype, "kind", "O") != "O":
            continue
        texts = gdf[col].map(lambda v: isinstance(v, str) and "\x00" in v)
        if texts.any():
            where = int(np.flatnonzero(texts.to_numpy(dtype=bool))[0])
            raise StoreError(
                f"layer {name!r}: field {col!r} of feature id {as_text.iloc[where]!r} holds a NUL character "
                "(\\0), which the stores cannot keep (GeoPackage would cut the text there); remove it from "
                "the source, or check the file's encoding; nothing was published"
            )


# pyogrio's dtype (read_info) of a DATE field; read_dataframe turns it into a date-time at midnight.
OGR_DATE_DTYPE = "datetime64[D]"


def as_dates(gdf: gpd.GeoDataFrame, fields, dtypes) -> gpd.GeoDataFrame:
    """DATE fields (by pyogrio's read_info ``fields``/``dtypes``) as ``datetime.date`` values.

    pyogrio reads a date as a date-time at midnight, which the stores would publish as a
    date-time; date objects keep it a date on both stores (see ``is_date_column``)."""
    for name, dtype in zip(fields, dtypes):
        if dtype == OGR_DATE_DTYPE and name in gdf.columns and gdf[name].dtype.kind == "M":
            col = gdf[name]
            gdf[name] = pd.Series([None if pd.isna(v) else v.date() for v in col], index=col.index, dtype=object)
    return gdf


def is_date_column(series: pd.Series) -> bool:
    """A column of ``datetime.date`` values (and missing ones), as ``as_dates`` makes."""
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) == "date"

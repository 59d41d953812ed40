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

    def read(self, name: str, bbox: tuple[float, float, float, float] | None = None) -> gpd.GeoDataFrame:
        """The layer (or the features intersecting a lon/lat bbox) as a GeoDataFrame."""

    def layers(self) -> list[str]:
        """Names of the published layers."""

    def info(self, name: str) -> LayerInfo:
        """Count, bounds, geometry type and fields of a layer."""

    def close(self) -> None: ...


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

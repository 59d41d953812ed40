"""Which items requests the Features fast path answers, and what they ask for.

A request is the fast path's when pygeoapi would answer it with a GeoJSON page: every
parameter is one the fast path knows and holds a value pygeoapi accepts. Anything else
(an unknown sort key or property, a CRS pygeoapi refuses, a filter that does not fit the
layer, another format) is left to pygeoapi, so its answers and errors stay the only ones.
Names are checked against the layer's columns, exactly the fields pygeoapi's provider offers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from api.cql2.parse import FilterError
from api.features_crs import UnknownCRS, bbox_in_storage, output_transform
from api.features_sql import LayerColumns, Where, compiled_filter
from pipelines.store.base import GEOMETRY_COLUMN, ID_COLUMN
from pipelines.store.postgis import HIDDEN_COLUMNS

HANDLED = frozenset({"f", "bbox", "bbox-crs", "limit", "offset", "sortby", "properties", "filter", "filter-crs",
                     "crs"})
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"  # pygeoapi's default for bbox-crs, filter-crs, crs


@dataclass(frozen=True)
class Collection:
    """What pygeoapi's configuration says of one PostGIS feature collection."""

    title: str
    table: str
    crs: tuple[str, ...]  # offered for crs and bbox-crs
    storage_crs: str


@dataclass(frozen=True)
class Plan:
    where: Where
    sortby: list[tuple[str, bool]]  # (column, descending)
    drop: list[str]  # columns left out of the properties
    limit: int
    offset: int
    transform: tuple[str, str] | None  # (storage CRS, output CRS) when geometries move
    content_crs: str


def plan(params: dict[str, str], collection: Collection, columns: LayerColumns, default_limit: int,
         max_limit: int) -> Plan | None:
    """The page ``params`` ask for, or None when pygeoapi should answer them."""
    if set(params) - HANDLED:
        return None
    content_crs = params.get("crs") or collection.storage_crs
    if content_crs not in collection.crs or ("bbox-crs" in params and "bbox" not in params):
        return None
    sortby = _sortby(params.get("sortby"), columns)
    drop = _dropped(params.get("properties"), columns)
    if sortby is None or drop is None:
        return None
    try:
        limit = int(params.get("limit", default_limit))
        offset = int(params.get("offset", 0))
        bbox = [float(v) for v in params["bbox"].split(",")] if "bbox" in params else None
        transform = output_transform(content_crs, collection.storage_crs)
        box = _box(bbox, params.get("bbox-crs"), collection)
        filter_sql, filter_params = None, ()
        if "filter" in params:
            filter_sql, filter_params = compiled_filter(columns, params["filter"], params.get("filter-crs", CRS84),
                                                        collection.storage_crs)
    except (ValueError, UnknownCRS, FilterError):  # pygeoapi's own 400 says what is wrong
        return None
    if limit < 1 or offset < 0 or (bbox is None) != (box is None):
        return None
    return Plan(Where(box, filter_sql, filter_params), sortby, drop, min(limit, max_limit), offset, transform,
                content_crs)


def _box(bbox: list[float] | None, bbox_crs: str | None, collection: Collection) -> tuple | None:
    if bbox is None or len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or bbox[1] > bbox[3]:
        return None
    if bbox_crs is not None and bbox_crs not in collection.crs:
        return None
    return bbox_in_storage(bbox, bbox_crs or CRS84, collection.storage_crs)


def _sortby(value: str | None, columns: LayerColumns) -> list[tuple[str, bool]] | None:
    """(column, descending) pairs, or None for an entry that is not '[+-]column'."""
    if value is None:
        return []
    out = []
    for entry in value.split(","):
        name = entry[1:] if entry[:1] in ("+", "-") else entry
        if name not in columns.names:
            return None
        out.append((name, entry.startswith("-")))
    return out


def _dropped(value: str | None, columns: LayerColumns) -> list[str] | None:
    """The columns ``properties`` leaves out (the id, geometry and the store's hidden ones always),
    or None for an unknown one."""
    always = [GEOMETRY_COLUMN, ID_COLUMN, *HIDDEN_COLUMNS]
    if value is None:
        return always
    wanted = value.split(",")
    if any(name not in columns.names for name in wanted):
        return None
    return always + [name for name in columns.names if name not in wanted]

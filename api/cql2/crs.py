"""Geometry literals of a filter moved from its ``filter-crs`` into the storage CRS."""
from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from pygeoapi.util import get_crs_from_uri
from pyproj import Transformer
from shapely.geometry import mapping, shape

from api.cql2.parse import Filter, FilterError
from geo.crs import authority_transformer


def in_storage_crs(parsed: Filter, filter_crs_uri: str, storage_crs_uri: str | None) -> Filter:
    if not storage_crs_uri or filter_crs_uri == storage_crs_uri:
        return parsed
    try:
        source, target = get_crs_from_uri(filter_crs_uri), get_crs_from_uri(storage_crs_uri)
    except Exception:  # pygeoapi raises several kinds for a URI it cannot read
        raise FilterError(f"filter-crs {filter_crs_uri[:80]!r} is not a CRS this server knows; use "
                          "http://www.opengis.net/def/crs/OGC/1.3/CRS84 or an EPSG URI") from None
    if source == target:
        return parsed
    return Filter(_moved(parsed.tree, authority_transformer(source.to_wkt(), target.to_wkt())))


def _moved(node: Any, tr: Transformer) -> Any:
    if isinstance(node, list):
        return [_moved(n, tr) for n in node]
    if not isinstance(node, dict):
        return node
    if "bbox" in node and isinstance(node["bbox"], list) and len(node["bbox"]) == 4:
        x0, y0, x1, y1 = tr.transform_bounds(*node["bbox"])
        return {"bbox": [x0, y0, x1, y1]}
    if "type" in node and "coordinates" in node or node.get("type") == "GeometryCollection":
        geometry = shapely.transform(shape(node), lambda c: _xy(tr, c))
        return mapping(geometry)
    return {k: _moved(v, tr) for k, v in node.items()}


def _xy(tr: Transformer, coords: np.ndarray) -> np.ndarray:
    x, y = tr.transform(coords[:, 0], coords[:, 1])
    return np.column_stack([x, y])

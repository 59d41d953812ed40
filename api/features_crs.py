"""Coordinate reference systems of the Features fast path, computed as pygeoapi computes them.

OGC API Features Part 2: ``bbox-crs`` moves the two corners of a bbox into the storage CRS
(pygeoapi.util.transform_bbox), and ``crs`` writes geometries in another CRS, in its
authority axis order (pygeoapi's ``crs_transform``: pyproj from the CRSs' WKT, not always_xy).
The same pyproj operations on the same doubles give the same coordinates as pygeoapi's.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import shapely
from pygeoapi.util import get_crs_from_uri
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

_local = threading.local()  # pyproj transformers are not shared between threads


class UnknownCRS(ValueError):
    """A CRS URI pygeoapi cannot read: pygeoapi answers the request with its own 400."""


@lru_cache(maxsize=64)
def _crs(uri: str) -> CRS:
    try:
        return get_crs_from_uri(uri)
    except CRSError:
        raise UnknownCRS(uri) from None


def _transformer(source_uri: str, target_uri: str, from_wkt: bool) -> Transformer:
    cache: dict = _local.__dict__.setdefault("transformers", {})
    key = (source_uri, target_uri, from_wkt)
    if key not in cache:
        source, target = _crs(source_uri), _crs(target_uri)
        if from_wkt:  # as crs_transform builds it
            source, target = CRS.from_wkt(source.to_wkt()), CRS.from_wkt(target.to_wkt())
        cache[key] = Transformer.from_crs(source, target, always_xy=False)
    return cache[key]


def bbox_in_storage(bbox: Sequence[float], bbox_crs: str, storage_crs: str) -> tuple[float, float, float, float]:
    """The bbox's two corners moved into ``storage_crs`` (no envelope of the edges, as pygeoapi)."""
    tr = _transformer(bbox_crs, storage_crs, from_wkt=False)
    x0, y0 = tr.transform(bbox[0], bbox[1])
    x1, y1 = tr.transform(bbox[2], bbox[3])
    return float(x0), float(y0), float(x1), float(y1)


def output_transform(crs: str, storage_crs: str) -> tuple[str, str] | None:
    """(source, target) when geometries must be moved into ``crs``; None when it is the storage CRS."""
    if str(_crs(storage_crs)) == str(_crs(crs)):
        return None
    return storage_crs, crs


def geojson_in(wkbs: list[bytes | None], transform: tuple[str, str]) -> list[str]:
    """Each WKB geometry as GeoJSON text in the target CRS (``null`` for none)."""
    tr = _transformer(*transform, from_wkt=True)

    def move(coords: np.ndarray) -> np.ndarray:
        return np.column_stack(tr.transform(*coords.T))  # heights go through the transform, as in pygeoapi

    geoms = shapely.transform(shapely.from_wkb(wkbs), move, include_z=None)
    return ["null" if text is None else text for text in shapely.to_geojson(geoms)]

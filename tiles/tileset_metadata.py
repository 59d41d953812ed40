"""OGC Tile Set Metadata (OGC API - Tiles, 2DTMS) for a vector tile set in WebMercatorQuad.

Written as a plain dict: pygeoapi's pydantic model spells the link key ``type_`` and takes
one tileMatrixSetLimits entry where the standard has a list, and GDAL's OGCAPI driver finds
no tile link in what it writes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tiles.source import TileSetInfo

WEB_MERCATOR_QUAD = "WebMercatorQuad"
WEB_MERCATOR_QUAD_URI = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
WEB_MERCATOR_CRS = "http://www.opengis.net/def/crs/EPSG/0/3857"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
MAX_LAT = 85.0511287798066  # the latitude at which WebMercatorQuad's square ends


def _tile_x(lon: float, n: int) -> int:
    return min(n - 1, max(0, math.floor((lon + 180.0) / 360.0 * n)))


def _tile_y(lat: float, n: int) -> int:
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    merc = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return min(n - 1, max(0, math.floor((1 - merc / math.pi) / 2 * n)))


def tile_matrix_limits(bounds: tuple[float, float, float, float], minzoom: int, maxzoom: int) -> list[dict]:
    """Rows and columns per zoom of the tiles that cover ``bounds`` (lon/lat), rows from the top."""
    west, south, east, north = bounds
    out = []
    for z in range(minzoom, maxzoom + 1):
        n = 1 << z
        out.append({"tileMatrix": str(z), "minTileRow": _tile_y(north, n), "maxTileRow": _tile_y(south, n),
                    "minTileCol": _tile_x(west, n), "maxTileCol": _tile_x(east, n)})
    return out


@dataclass(frozen=True)
class Grid:
    """A tile matrix set as a tile set names it: id, URI, CRS, and the levels that hold the layer."""

    id: str
    uri: str
    crs: str
    limits: list[dict]


def web_mercator_grid(info: TileSetInfo) -> Grid:
    return Grid(WEB_MERCATOR_QUAD, WEB_MERCATOR_QUAD_URI, WEB_MERCATOR_CRS,
                tile_matrix_limits(info.bounds, info.minzoom, info.maxzoom))


def tileset_metadata(info: TileSetInfo, grid: Grid, title: str, description: str, tiles_url: str, tms_url: str,
                     tilejson_url: str, mvt_type: str) -> dict:
    """The tile set's metadata; ``tiles_url`` holds {tileMatrix}, {tileRow} and {tileCol}."""
    west, south, east, north = (float(b) for b in info.bounds)
    levels = [lim["tileMatrix"] for lim in grid.limits]
    doc = {
        "title": title,
        "dataType": "vector",
        "crs": grid.crs,
        "tileMatrixSetURI": grid.uri,
        "mediaTypes": [mvt_type],
        "tileMatrixSetLimits": grid.limits,
        "boundingBox": {"lowerLeft": [west, south], "upperRight": [east, north], "crs": CRS84},
        "layers": [{"id": v["id"], "dataType": "vector", "minTileMatrix": levels[0],
                    "maxTileMatrix": levels[-1], "propertiesSchema": _properties(v)}
                   for v in info.vector_layers],
        "links": [
            {"href": tms_url, "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme",
             "type": "application/json", "title": f"{grid.id} tile matrix set definition"},
            {"href": tiles_url, "rel": "item", "type": mvt_type, "templated": True,
             "title": f"{grid.id} vector tiles"},
            {"href": tilejson_url, "rel": "describedby", "type": "application/json", "title": "TileJSON"},
        ],
    }
    if description:
        doc["description"] = description
    if info.etag_seed:
        doc["version"] = info.etag_seed
    return doc


def _properties(vector_layer: dict) -> dict:
    # TileJSON field types are free text ('String', 'Number'); JSON Schema wants its own names.
    kinds = {"string": "string", "number": "number", "boolean": "boolean", "integer": "integer"}
    props = {name: {"type": kinds.get(str(kind).lower(), "string")}
             for name, kind in vector_layer.get("fields", {}).items()}
    return {"type": "object", "properties": props}

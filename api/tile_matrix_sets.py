"""Tile matrix sets: the two our tiles use (WebMercatorQuad, WorldCRS84Quad), in a shape every client reads.

pygeoapi answers an unknown id with a 400; here it is a JSON 404.

The definition is the OGC TMS 2.0 document pygeoapi serves plus the TMS 1.0 members
(``type``, ``identifier``, ``supportedCRS``, ``boundingBox``, ``tileMatrix``) of the same
grid: GDAL up to 3.6 reads only 1.0 ("Invalid tiling matrix set name" otherwise), later GDALs
and the standard read 2.0, and each ignores the other's members.
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.errors import error

Handler = Callable[[Request], Awaitable[Response]]
OFFERED = ("WebMercatorQuad", "WorldCRS84Quad")
HALF_WORLD_M = 20037508.342789244  # half the equator of the WGS 84 sphere used by EPSG:3857


def not_offered(tms: str) -> JSONResponse:
    return error(404, "NotFound", f"tile matrix set {tms[:80]!r} is not offered; tiles here are in "
                                  f"{' and '.join(OFFERED)} only (see /TileMatrixSets)")


def with_tms1(doc: dict) -> dict:
    """``doc`` (TMS 2.0) with the TMS 1.0 description of the same grid added."""
    crs = doc.get("crs")
    lower, upper = (([-180.0, -90.0], [180.0, 90.0]) if "CRS84" in str(crs)
                    else ([-HALF_WORLD_M, -HALF_WORLD_M], [HALF_WORLD_M, HALF_WORLD_M]))
    out = dict(doc)
    out.update({
        "type": "TileMatrixSetType",
        "identifier": doc.get("id"),
        "supportedCRS": crs,
        "boundingBox": {"type": "BoundingBoxType", "crs": crs, "lowerCorner": lower,
                        "upperCorner": upper},
        "tileMatrix": [{"type": "TileMatrixType", "identifier": m["id"], "scaleDenominator": m["scaleDenominator"],
                        "topLeftCorner": m["pointOfOrigin"], "tileWidth": m["tileWidth"],
                        "tileHeight": m["tileHeight"], "matrixWidth": m["matrixWidth"],
                        "matrixHeight": m["matrixHeight"]} for m in doc.get("tileMatrices", [])],
    })
    return out


def tile_matrix_set_route(pygeoapi_tms: Handler) -> Handler:
    async def tile_matrix_set(request: Request) -> Response:
        tms = request.path_params["tileMatrixSetId"]
        if tms not in OFFERED:
            return not_offered(tms)
        resp = await pygeoapi_tms(request)
        if resp.status_code != 200 or not resp.headers.get("content-type", "").startswith("application/json"):
            return resp  # HTML: pygeoapi's page
        doc = with_tms1(json.loads(resp.body))
        return JSONResponse(doc, headers={"Cache-Control": "public, max-age=3600"})

    return tile_matrix_set


def tile_matrix_sets_route(pygeoapi_list: Handler) -> Handler:
    async def tile_matrix_sets(request: Request) -> Response:
        resp = await pygeoapi_list(request)
        if resp.status_code != 200 or not resp.headers.get("content-type", "").startswith("application/json"):
            return resp
        doc = json.loads(resp.body)
        doc["tileMatrixSets"] = [t for t in doc.get("tileMatrixSets", []) if t.get("id") in OFFERED]
        return JSONResponse(doc)

    return tile_matrix_sets
